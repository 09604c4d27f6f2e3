"""scripts/bench_smooth.py: its entropy column and its images are what its table says."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("bench_smooth")


def empirical_entropy(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 4.0])
def test_grain_entropy_is_the_entropy_of_rounded_gaussian_samples(
    bench: ModuleType, sigma: float
) -> None:
    samples = np.round(np.random.default_rng(0).normal(0.0, sigma, 2_000_000))
    assert bench.grain_entropy(sigma) == pytest.approx(empirical_entropy(samples), abs=0.005)


def test_flat_background_is_grey_plus_grain_and_smooth_is_not(bench: ModuleType) -> None:
    flat = bench.smooth_image(0.0, background="flat")
    assert flat.shape == (bench.SIDE, bench.SIDE, 3) and np.all(flat == 128)
    grainy = bench.smooth_image(1.0, background="flat").astype(np.float64)
    assert abs(grainy.mean() - 128) < 0.05 and 0.95 < grainy.std() < 1.05
    assert np.ptp(bench.smooth_image(0.0)) > 100
