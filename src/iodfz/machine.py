"""What CPU this is, for benchmark reports and for choices that depend on it.

Speed numbers move with the hardware far more than with the code (the same build ran the
default level at 1.4 MB/s on kodak on an AVX-512/AMX Xeon and at well under half that on an
AVX2-only EPYC), so every benchmark prints the machine it ran on.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path


@cache
def _cpuinfo_field(*keys: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of ``keys`` (None where
    there is no such line or no /proc)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(keys):
            return line.split(":", 1)[1].strip()
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    return frozenset((_cpuinfo_field("flags", "Features") or "").split())


def cpu_name() -> str:
    import platform  # here: every command asks for the core count, only benchmarks this

    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def vector_units() -> str:
    """The instruction sets that set the flow's speed: AMX, AVX-512 (with VNNI / BF16), AVX2."""
    flags = cpu_flags()
    found = [
        name
        for name, flag in (
            ("AMX", "amx_tile"),
            ("AVX-512", "avx512f"),
            ("VNNI", "avx512_vnni"),
            ("BF16", "avx512_bf16"),
            ("AVX2", "avx2"),
            ("NEON", "asimd"),
        )
        if flag in flags
    ]
    return " ".join(found) or "unknown"


def native_bf16() -> bool:
    """bf16 arithmetic in hardware (AVX512-BF16 or AMX); without it torch emulates bf16 on
    the CPU, about 10× slower than fp32 (measured on an AVX2-only EPYC)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def available_cores() -> int:
    """Cores this process may run on (its affinity), not every core of the machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def describe() -> dict[str, object]:
    """The machine, for a benchmark's table caption and JSON."""
    return {"cpu": cpu_name(), "cores": available_cores(), "vector_units": vector_units()}


def summary() -> str:
    """E.g. "AMD EPYC, 2 cores, AVX2"."""
    m = describe()
    return f"{m['cpu']}, {m['cores']} cores, {m['vector_units']}"


def caption() -> str:
    return f"machine: {summary()}"
