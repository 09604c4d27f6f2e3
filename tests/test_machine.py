"""iodfz.machine: the CPU description benchmarks print and the bf16 choice of training."""

from __future__ import annotations

import os

import pytest

from iodfz import machine


@pytest.mark.parametrize(
    ("flags", "units", "bf16"),
    [
        ({"avx2", "fma"}, "AVX2", False),
        ({"avx2", "avx512f", "avx512_vnni"}, "AVX-512 VNNI AVX2", False),
        ({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, "AMX AVX-512 BF16 AVX2", True),
        ({"asimd"}, "NEON", False),
        (set(), "unknown", False),
    ],
)
def test_vector_units_and_bf16_follow_the_flags(monkeypatch, flags, units, bf16) -> None:
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset(flags))
    assert machine.vector_units() == units
    assert machine.native_bf16() is bf16


def test_cores_are_those_this_process_may_use() -> None:
    cores = machine.available_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert cores == len(os.sched_getaffinity(0))


def test_caption_names_cpu_cores_and_units() -> None:
    described = machine.describe()
    assert set(described) == {"cpu", "cores", "vector_units"}
    assert machine.caption() == (
        f"machine: {described['cpu']}, {described['cores']} cores, {described['vector_units']}"
    )
