"""The fixed integer input transforms (docs/INTEGER.md): exact inverses, one definition for
training and engine, and a whole flow with them that round-trips and keeps its test vectors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from iodfz.engine import flow, transforms
from iodfz.engine.model import Model, ModelError, load, save
from iodfz.engine.reference import NumpyBackend


def test_ycocg_r_inverts_rgb_values() -> None:
    grid = np.array([*range(0, 256, 5), 254, 255])
    r, g, b = (a.ravel() for a in np.meshgrid(grid, grid, grid, indexing="ij"))
    y, co, cg = transforms.ycocg_r(r, g, b)
    assert y.min() == 0 and y.max() == 255
    assert co.min() == -255 and co.max() == 255 and cg.min() == -255 and cg.max() == 255
    back = transforms.ycocg_r_inverse(y, co, cg)
    assert all(np.array_equal(u, w) for u, w in zip(back, (r, g, b), strict=True))


def test_haar_inverts_and_gives_the_floor_mean() -> None:
    rng = np.random.default_rng(1)
    block = [rng.integers(-600, 600, 100_000) for _ in range(4)]
    ll, hl, lh, hh = transforms.haar(*block)
    assert np.all((sum(block) / 4 - ll >= 0) & (sum(block) / 4 - ll <= 1))
    back = transforms.haar_inverse(ll, hl, lh, hh)
    assert all(np.array_equal(u, w) for u, w in zip(back, block, strict=True))


class _Config:
    def __init__(self, colour: str, wavelet: str) -> None:
        self.config = {"colour": colour, "wavelet": wavelet}


def test_legall53_inverts_on_tiles_of_every_even_shape() -> None:
    rng = np.random.default_rng(5)
    for h, w in [(2, 2), (2, 8), (6, 4), (16, 10)]:
        x = rng.integers(-600, 600, (3, 2, h, w))
        bands = transforms.legall53(x)
        assert all(band.shape == (3, 2, h // 2, w // 2) for band in bands)
        assert np.array_equal(transforms.legall53_inverse(*bands), x)


def test_legall53_high_bands_vanish_on_a_ramp_and_low_band_keeps_it() -> None:
    ramp = np.add.outer(np.arange(16) * 3, np.arange(16) * 5)
    ll, hl, lh, hh = transforms.legall53(ramp)
    assert not hl[:, :-1].any() and not lh[:-1].any() and not hh[:-1, :-1].any()
    # the last row and column see the mirror
    assert np.array_equal(ll[:-1, :-1], ramp[0:-2:2, 0:-2:2])


@pytest.mark.parametrize("wavelet", transforms.WAVELETS)
@pytest.mark.parametrize("colour", transforms.COLOUR_TRANSFORMS)
def test_input_map_inverts(colour: str, wavelet: str) -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    model = _Config(colour, wavelet)
    z = flow.input_map(model, x)  # type: ignore[arg-type]
    assert np.array_equal(flow.output_map(model, z), x)  # type: ignore[arg-type]
    assert np.array_equal(flow.wavelet_unsqueeze(flow.wavelet_squeeze(z, wavelet), wavelet), z)


torch = pytest.importorskip("torch")

from iodfz.engine.export import export_model  # noqa: E402
from iodfz.flow import model as flow_model  # noqa: E402


@pytest.mark.parametrize("wavelet", transforms.WAVELETS)
def test_training_and_engine_apply_the_same_map(wavelet: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 16, 12, 3), dtype=np.uint8)
    engine = flow.wavelet_squeeze(flow.input_map(_Config("ycocg-r", wavelet), x), wavelet)  # type: ignore[arg-type]
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    trained = flow_model.wavelet_squeeze(flow_model.input_map(xt, "ycocg-r"), wavelet)
    assert np.array_equal(trained.permute(0, 2, 3, 1).numpy().astype(np.int64), engine)


TRANSFORMED = {
    "haar": {"wavelet": "haar"},
    "legall53": {"wavelet": "legall53"},
    "pyramid": {"wavelet": "legall53", "wavelet_levels": 2, "split": "pyramid"},
}


@pytest.fixture(scope="module", params=list(TRANSFORMED))
def transformed_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Model:
    cfg = flow_model.FlowConfig(
        levels=3,
        couplings=2,
        width=16,
        prior_width=8,
        colour="ycocg-r",
        **TRANSFORMED[request.param],
    )
    torch.manual_seed(0)
    net = flow_model.IntegerFlow(cfg)
    for conv_net in net.nets():
        torch.nn.init.normal_(conv_net.conv_out.weight, std=0.05)
        torch.nn.init.normal_(conv_net.conv_out.bias, std=1.0)
    calibration = np.random.default_rng(0).integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    path = tmp_path_factory.mktemp("model") / "t.iodfm"
    save(export_model(net, calibration), path)
    return load(path)


def test_flow_with_transforms_round_trips(transformed_model: Model) -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (2, 16, 24, 3), dtype=np.uint8)
    x[0, :8] = 255  # extremes of the colour transform
    x[1, :8] = 0
    backend = NumpyBackend()
    splits, top = flow.forward(transformed_model, backend, x)
    by_level = {i: s.values for i, s in enumerate(splits)}
    y = flow.inverse(transformed_model, backend, top, lambda level, *_: by_level[level].copy())
    assert np.array_equal(y, x)


def test_unknown_transform_is_refused(transformed_model: Model, tmp_path) -> None:
    transformed_model.config["colour"] = "ycbcr-from-the-future"
    with pytest.raises(ModelError, match="unknown input transform"):
        save(transformed_model, tmp_path / "bad.iodfm")
    transformed_model.config["colour"] = "ycocg-r"


Squeeze = Callable[[Any, str], Any]


def test_training_and_engine_put_the_wavelet_at_the_same_levels(
    transformed_model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: dict[str, list[str]] = {"engine": [], "training": []}

    def recording(side: str, squeeze_with: Squeeze) -> Squeeze:
        def squeeze(z: Any, wavelet: str) -> Any:
            used[side].append(wavelet)
            return squeeze_with(z, wavelet)

        return squeeze

    monkeypatch.setattr(flow, "wavelet_squeeze", recording("engine", flow.wavelet_squeeze))
    monkeypatch.setattr(
        flow_model, "wavelet_squeeze", recording("training", flow_model.wavelet_squeeze)
    )
    x = np.random.default_rng(5).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    flow.forward(transformed_model, NumpyBackend(), x)
    trained = flow_model.IntegerFlow(flow_model.FlowConfig.from_dict(transformed_model.config))
    with torch.no_grad():
        trained(torch.from_numpy(x).permute(0, 3, 1, 2))
    first = transformed_model.config.get("wavelet_levels", 1)
    assert used["engine"] == used["training"]
    assert used["engine"] == [transformed_model.config["wavelet"]] * first + ["none"] * (3 - first)


def test_a_model_with_a_bad_wavelet_levels_is_refused(transformed_model: Model) -> None:
    config = dict(transformed_model.config)
    try:
        for bad in (0, 4, "2", 1.5):
            transformed_model.config["wavelet_levels"] = bad
            with pytest.raises(ModelError, match="wavelet_levels"):
                transformed_model.check()
        del transformed_model.config["wavelet_levels"]
        transformed_model.check()  # absent: the first level only
    finally:
        transformed_model.config.clear()
        transformed_model.config.update(config)
