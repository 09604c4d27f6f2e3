"""The checkerboard context (docs/INTEGER.md): training and engine split the positions alike, a
context grown onto a trained model starts as that model, and the pixel codec's two passes per
level decode — alone, in batches of tiles, and in lockstep."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from iodfz.codec import pixels as pixel_codec
from iodfz.engine import flow
from iodfz.engine.model import Model, ModelError, load, save
from iodfz.engine.reference import NumpyBackend

torch = pytest.importorskip("torch")

from iodfz.engine.export import export_model  # noqa: E402
from iodfz.flow import model as flow_model  # noqa: E402

SMALL = flow_model.FlowConfig(
    levels=3, couplings=2, width=16, prior_width=8, colour="ycocg-r", wavelet="legall53"
)


def _random_flow(cfg: flow_model.FlowConfig) -> flow_model.IntegerFlow:
    torch.manual_seed(1)
    net = flow_model.IntegerFlow(cfg)
    for conv_net in net.nets():
        torch.nn.init.normal_(conv_net.conv_out.weight, std=0.05)
        torch.nn.init.normal_(conv_net.conv_out.bias, std=1.0)
    return net


@pytest.fixture(scope="module")
def context_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    cfg = dataclasses.replace(SMALL, context="checkerboard")
    calibration = np.random.default_rng(0).integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    path = tmp_path_factory.mktemp("model") / "ctx.iodfm"
    save(export_model(_random_flow(cfg), calibration), path)
    return load(path)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 4)])
def test_training_and_engine_take_the_same_first_pass(shape: tuple[int, int]) -> None:
    trained = flow_model.checkerboard(*shape, torch.device("cpu"))[0, 0].bool().numpy()
    np.testing.assert_array_equal(trained, flow.checkerboard(*shape))


@pytest.mark.parametrize("quantized", [False, True])
def test_a_context_grown_onto_a_model_starts_as_that_model(quantized: bool) -> None:
    plain = _random_flow(SMALL)
    grown = flow_model.IntegerFlow(dataclasses.replace(SMALL, context="checkerboard"))
    assert flow_model.load_grown(grown, plain.state_dict()) > 0
    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    plain.set_quantized(quantized)
    grown.set_quantized(quantized)
    with torch.no_grad():
        plain(x)  # calibrates the activation steps of both alike
        grown.load_state_dict(plain.state_dict(), strict=False)
        torch.testing.assert_close(grown(x), plain(x), rtol=0, atol=0)


def test_pixel_codec_round_trips_through_both_passes(context_model: Model) -> None:
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (40, 72, 3), dtype=np.uint8)
    rgb[:16] = rgb[:16] // 32 * 32  # a flatter band
    backend = NumpyBackend()
    streams = pixel_codec.encode(context_model, backend, rgb, tile=16)
    back = pixel_codec.decode(context_model, backend, streams, 40, 72, tile=16)
    np.testing.assert_array_equal(back, rgb)


def test_lockstep_streams_equal_streams_alone(context_model: Model) -> None:
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (24, 16, 3), dtype=np.uint8) for _ in range(3)]
    backend = NumpyBackend()
    together = pixel_codec.encode_many(context_model, backend, images)
    alone = [pixel_codec.encode(context_model, backend, rgb) for rgb in images]
    assert together == alone
    decoded = pixel_codec.decode_many(context_model, backend, [s[0] for s in alone], 24, 16)
    for got, rgb in zip(decoded, images, strict=True):
        np.testing.assert_array_equal(got, rgb)


def test_the_second_pass_is_decoded_with_the_first_in_place(context_model: Model) -> None:
    """A stream coded without the context does not decode as one coded with it."""
    rgb = np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    plain = dataclasses.replace(context_model, contexts=[], config={**context_model.config})
    plain.config["context"] = "none"
    backend = NumpyBackend()
    streams = pixel_codec.encode(plain, backend, rgb)
    assert streams != pixel_codec.encode(context_model, backend, rgb)
    try:
        back = pixel_codec.decode(context_model, backend, streams, 16, 16)
    except ValueError:  # the coder notices the mismatch
        return
    assert not np.array_equal(back, rgb)


def test_a_model_file_without_its_context_networks_is_refused(
    context_model: Model, tmp_path: Path
) -> None:
    broken = dataclasses.replace(context_model, contexts=context_model.contexts[:1])
    with pytest.raises(ModelError, match="context networks"):
        save(broken, tmp_path / "broken.iodfm")
    unknown = dataclasses.replace(context_model, config={**context_model.config})
    unknown.config["context"] = "raster-from-the-future"
    with pytest.raises(ModelError, match="unknown split context"):
        unknown.check()
