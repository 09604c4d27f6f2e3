"""A model grown from a checkpoint (more couplings, more blocks) starts as the same function;
one grown by a level keeps what it had learnt."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from iodfz.flow.model import FlowConfig, IntegerFlow, load_grown  # noqa: E402

SMALL = FlowConfig(levels=2, couplings=2, width=16, blocks=1, prior_width=8, prior_blocks=1)


def trained_looking(cfg: FlowConfig) -> IntegerFlow:
    """A flow whose every conv is random (a fresh one's output convs are zero)."""
    torch.manual_seed(0)
    model = IntegerFlow(cfg)
    for net in model.nets():
        torch.nn.init.normal_(net.conv_out.weight, std=0.05)
        torch.nn.init.normal_(net.conv_out.bias, std=1.0)
    return model.eval()


@pytest.mark.parametrize(
    "growth", [{"couplings": 3}, {"couplings": 4}, {"blocks": 2, "prior_blocks": 3}]
)
def test_a_grown_model_codes_exactly_as_the_one_it_grew_from(growth: dict) -> None:
    small = trained_looking(SMALL)
    grown = IntegerFlow(FlowConfig.from_dict({**SMALL.to_dict(), **growth})).eval()
    assert load_grown(grown, small.state_dict()) > 0
    x = torch.randint(0, 256, (3, 3, 16, 16)).float()
    with torch.no_grad():
        assert torch.equal(small(x), grown(x))


def test_a_smaller_model_does_not_take_a_larger_checkpoint() -> None:
    larger = IntegerFlow(FlowConfig.from_dict({**SMALL.to_dict(), "couplings": 3}))
    with pytest.raises(ValueError, match="does not fit"):
        load_grown(IntegerFlow(SMALL), larger.state_dict())


def test_a_model_grown_by_a_level_keeps_every_trained_coupling() -> None:
    small = trained_looking(SMALL)
    grown = IntegerFlow(FlowConfig.from_dict({**SMALL.to_dict(), "levels": 3}))
    assert load_grown(grown, small.state_dict()) > 0
    kept = grown.state_dict()
    for key, value in small.state_dict().items():
        if not key.startswith("top."):
            assert torch.equal(kept[key], value), key
    assert kept["top.means"].shape != small.state_dict()["top.means"].shape


def kept_channels(model: IntegerFlow, level: int) -> list[int]:
    """The squeeze-order channels that ``level``'s split keeps (the couplings only translate,
    so a channel keeps its identity through them)."""
    ids = torch.arange(len(model.levels[level][0].perm))
    for coupling in model.levels[level]:
        ids = ids[coupling.perm]
    return ids[: len(ids) // 2].tolist()


def test_a_lowpass_split_keeps_the_low_pass_bands_and_changes_nothing_else() -> None:
    base = {**SMALL.to_dict(), "levels": 3, "colour": "ycocg-r", "wavelet": "legall53"}
    lowpass = IntegerFlow(FlowConfig.from_dict({**base, "split": "lowpass"}))
    random = IntegerFlow(FlowConfig.from_dict(base))
    # level 0: Y, Co, Cg low-pass (slot 0 of 4c + slot), then luma's three detail bands
    assert kept_channels(lowpass, 0) == [0, 4, 8, 1, 2, 3]
    # level 1: the four phases of the three kept low-pass bands
    assert sorted(kept_channels(lowpass, 1)) == list(range(12))
    for level in range(3):
        for i, (a, b) in enumerate(zip(lowpass.levels[level], random.levels[level], strict=True)):
            last_arranged = level < 2 and i == len(lowpass.levels[level]) - 1
            assert torch.equal(a.perm, b.perm) != last_arranged


def test_a_pyramid_split_keeps_the_low_pass_bands_one_scale_further() -> None:
    base = {**SMALL.to_dict(), "levels": 5, "colour": "ycocg-r", "wavelet": "legall53"}
    pyramid = IntegerFlow(FlowConfig.from_dict({**base, "wavelet_levels": 2, "split": "pyramid"}))
    assert kept_channels(pyramid, 0) == [0, 4, 8, 1, 2, 3]
    # level 1: each kept low-pass band's four bands, the three LL first, then luma's details
    assert kept_channels(pyramid, 1) == [0, 4, 8, 1, 2, 3, 5, 6, 7, 9, 10, 11]
    # level 2: the phases of the second scale's LL and luma details; level 3: of its LL
    assert kept_channels(pyramid, 2) == list(range(24))
    assert kept_channels(pyramid, 3) == list(range(48))


def test_a_checkpoint_of_another_split_continues_with_the_new_split() -> None:
    base = {**SMALL.to_dict(), "levels": 5, "colour": "ycocg-r", "wavelet": "legall53"}
    lowpass = trained_looking(FlowConfig.from_dict({**base, "split": "lowpass"}))
    pyramid = IntegerFlow(FlowConfig.from_dict({**base, "wavelet_levels": 2, "split": "pyramid"}))
    assert load_grown(pyramid, lowpass.state_dict()) == 0
    assert kept_channels(pyramid, 1) == [0, 4, 8, 1, 2, 3, 5, 6, 7, 9, 10, 11]
    assert kept_channels(pyramid, 3) == list(range(48))
    again = IntegerFlow(FlowConfig.from_dict({**base, "split": "lowpass"}))
    load_grown(again, lowpass.state_dict())  # the same split: every permutation as trained
    for key, value in lowpass.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_an_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        FlowConfig(split="checkerboard")


@pytest.mark.parametrize(
    "config",
    [
        {"split": "pyramid", "wavelet": "legall53"},  # one wavelet level only
        {"split": "pyramid", "wavelet_levels": 2},  # no wavelet
        {"wavelet": "legall53", "wavelet_levels": 0},
        {"wavelet": "legall53", "wavelet_levels": 4},  # more than the levels
    ],
)
def test_a_pyramid_split_needs_two_wavelet_levels(config: dict) -> None:
    with pytest.raises(ValueError, match="wavelet"):
        FlowConfig(levels=3, **config)
