"""scripts/train.py's stage boundaries: fractions count from where a call starts or resumes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train.py"


def _train_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fractions_are_of_the_steps_this_call_trains() -> None:
    train = _train_module()
    assert train.stage_step(0.5, 0, 10_000) == 5_000  # from scratch: a share of all steps
    # continuing a checkpoint at 44 500 with 5 000 steps to go: QAT at 85 % of those 5 000
    assert train.stage_step(0.85, 44_500, 49_500) == 48_750
    assert train.stage_step(48_000, 44_500, 49_500) == 48_000  # a step count stays a step


def test_a_resumed_budget_keeps_its_float_and_decay_stages() -> None:
    train = _train_module()
    args = type("Args", (), {"gates_from": 1e9, "decay_from": 0.3, "qat_from": 0.85})()
    args.steps, args.lr = 49_500, 1e-3
    train.resolve_schedule(args, 44_500)
    assert (args.decay_step, args.qat_step, args.gates_step) == (46_000, 48_750, 10**9)
    assert train.learning_rate(args, 44_500) == pytest.approx(1e-3)  # not already in QAT
