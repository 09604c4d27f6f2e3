"""The predictive coders (docs/INTEGER.md "Predictive coder", FORMAT.md 3.5): every image back
exactly, damage refused, and the image codec routing images to the current one. Their rules are
pinned by golden containers (tests/golden/v2-predictive-*, tests/test_golden.py)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_image_codec import encode_file, half_resolution_chroma, photo_like

from iodfz import api, varint, zoo
from iodfz.codec import correction, predictive, zframe
from iodfz.codec import image as image_codec
from iodfz.codecs import Options
from iodfz.coder import CoderError

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
#: Every coder, and version 5 once more with each colour transform it does not give by default
ENCODERS = [
    *predictive.CODERS,
    *(dataclasses.replace(predictive.V5, colours=(t,)) for t in range(predictive.TRANSFORMS)),
]


def _encoder_id(coder: predictive.PredictiveCoder) -> str:
    return coder.name + "".join(f"-colour{t}" for t in coder.colours)


def _shapes() -> list[tuple[int, int]]:
    return [(8, 8), (8, 300), (300, 9), (256, 256), (257, 255), (512, 300)]


@pytest.mark.parametrize("coder", predictive.CODERS, ids=lambda c: c.name)
@pytest.mark.parametrize("shape", _shapes())
def test_images_come_back_exactly(
    shape: tuple[int, int], coder: predictive.PredictiveCoder
) -> None:
    rgb = photo_like(*shape, seed=sum(shape))
    parts = predictive.encode(rgb, coder)
    assert len(parts) == predictive.batch_count(*shape)
    assert np.array_equal(predictive.decode(parts, *shape, coder), rgb)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: np.zeros((40, 50, 3), np.uint8),
        lambda rng: np.full((40, 50, 3), 255, np.uint8),
        lambda rng: rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),  # noise: escapes
        lambda rng: (
            (np.indices((40, 50)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, -1)
        ),  # the largest residuals
        lambda rng: np.stack(
            [np.full((40, 50), 255), np.zeros((40, 50)), np.full((40, 50), 255)], -1
        ).astype(np.uint8),  # chroma at its extremes
    ],
)
@pytest.mark.parametrize("coder", ENCODERS, ids=_encoder_id)
def test_extreme_images_come_back_exactly(make, coder: predictive.PredictiveCoder) -> None:
    rgb = make(np.random.default_rng(0))
    assert np.array_equal(predictive.decode(predictive.encode(rgb, coder), 40, 50, coder), rgb)


@pytest.mark.parametrize("transform", range(predictive.TRANSFORMS))
def test_each_colour_transform_is_exact_on_every_pixel(transform: int) -> None:
    values = np.arange(256, dtype=np.uint8)
    rgb = np.stack(np.meshgrid(values, values, values, indexing="ij"), -1).reshape(-1, 3)
    planes = predictive.to_planes(rgb, transform)
    assert np.array_equal(predictive.to_rgb(planes, transform), rgb)
    for plane, (low, high) in zip(planes, predictive.PLANE_RANGES, strict=True):
        assert low <= plane.min() and plane.max() <= high


def test_each_coder_id_is_the_hash_of_its_name() -> None:
    for version, coder in enumerate(reversed(predictive.CODERS), 1):
        label = b"iodfz predictive coder %d (docs/INTEGER.md)" % version
        assert coder.model_id == hashlib.sha256(label).hexdigest()
    assert predictive.CODER is predictive.V5 and predictive.encoding_coder() is predictive.V5
    assert (
        predictive.V1.contexts == 208 and predictive.V2.contexts == predictive.V3.contexts == 1664
    )


def test_without_its_texture_biases_the_newest_coder_steps_aside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rgb = photo_like(64, 72, seed=4)
    parts = predictive.encode(rgb)
    real = predictive.shipped
    monkeypatch.setattr(predictive, "shipped", lambda c: None if c.texture_bias else real(c))
    assert predictive.encoding_coder() is predictive.V2
    with pytest.raises(predictive.PredictiveError, match=predictive.V3.defaults_file):
        predictive.decode(parts, 64, 72)
    own = predictive.encode(photo_like(300, 280, seed=2), predictive.V2)
    assert np.array_equal(
        predictive.decode(own, 300, 280, predictive.V2), photo_like(300, 280, seed=2)
    )


def test_altered_texture_biases_or_tables_are_not_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    card = json.loads((zoo.model_dirs()[0] / predictive.V3.defaults_file).read_text())
    raw = bytearray(zlib.decompress(base64.b64decode(card["biases"])))
    raw[12345] ^= 1
    card["biases"] = base64.b64encode(zlib.compress(bytes(raw))).decode()
    (tmp_path / predictive.V3.defaults_file).write_text(json.dumps(card))
    monkeypatch.setattr(zoo, "model_dirs", lambda: [tmp_path])
    assert predictive.shipped(predictive.V3) is None
    card["biases"] = base64.b64encode(zlib.compress(bytes(raw[:-1]))).decode()  # one short
    (tmp_path / predictive.V3.defaults_file).write_text(json.dumps(card))
    assert predictive.shipped(predictive.V3) is None
    card = json.loads((zoo.model_dirs()[0] / predictive.V3.defaults_file).read_text())
    freq = np.frombuffer(zlib.decompress(base64.b64decode(card["tables"])), "<u2").copy()
    freq[0] += 1  # still a valid table (one unit moved), not the pinned one
    freq[1] -= 1
    card["tables"] = base64.b64encode(zlib.compress(freq.tobytes())).decode()
    (tmp_path / predictive.V3.defaults_file).write_text(json.dumps(card))
    assert predictive.shipped(predictive.V3) is None
    with pytest.raises(predictive.PredictiveError, match=predictive.V3.defaults_file):
        predictive.coding_tables(predictive.V3)


@pytest.mark.skipif(not KODAK.is_dir(), reason="../shared/data/kodak not present")
def test_the_texture_biases_pay_on_photos() -> None:
    """Version 3's one change, the shipped texture biases, makes real photos smaller."""
    from PIL import Image

    sizes = {predictive.V2.name: 0, predictive.V3.name: 0}
    for k in (3, 13, 23):
        rgb = np.asarray(Image.open(KODAK / f"kodim{k:02d}.png").convert("RGB"))
        for coder in (predictive.V2, predictive.V3):
            sizes[coder.name] += sum(len(p) for p in predictive.encode(rgb[:192, :256], coder))
    assert sizes[predictive.V3.name] < 0.995 * sizes[predictive.V2.name]


def test_the_eighths_and_the_new_contexts_pay_on_small_photos() -> None:
    rgbs = [photo_like(32, 32, seed=s) for s in range(6)]
    sizes = {
        coder.name: sum(len(predictive.encode(rgb, coder)[0]) for rgb in rgbs)
        for coder in predictive.CODERS
    }
    assert sizes["iodf-predictive-2"] < sizes["iodf-predictive-1"]


def test_fitted_parameters_code_no_worse_than_others() -> None:
    rng = np.random.default_rng(1)
    coder = predictive.V2
    samples = np.round(rng.logistic(100.6, 3.0, 5000)).astype(np.int64)
    pred = np.full(5000, 8 * 100 + 3)  # 100 3/8
    params = predictive.fit(coder, predictive.histograms(coder, samples, pred, np.full(5000, 7)))
    assert (np.delete(params, 7, axis=0) == 0).all()  # contexts without samples
    bits = predictive._scale_bits(predictive.logistic_tables())

    def cost(s: int, m: int) -> float:
        total = 3 + m
        return float(bits[s, total & 7, samples - 100 - (total >> 3) + 1023].sum())

    best = cost(*params[7])
    assert all(best <= cost(s, m) for s in range(64) for m in (-8, 0, 5, 8))


def test_damaged_parts_are_refused() -> None:
    rgb = photo_like(300, 40, seed=3)  # two batches (tile rows of 256 and 44)
    parts = predictive.encode(rgb)
    with pytest.raises(predictive.PredictiveError):
        predictive.decode(parts[:1], 300, 40)  # a stream missing
    with pytest.raises(predictive.PredictiveError):
        predictive.decode([parts[0][:5], parts[1]], 300, 40)  # parameter part cut
    bitmap = bytes([1]) + bytes(predictive.V2.contexts // 8 - 1)  # context 0 only
    for own in (bitmap + bytes([64, 0]), bitmap + bytes([3, 0x80])):  # scale 64, mean −128
        with pytest.raises(predictive.PredictiveError):
            predictive.decode(
                [bytes([predictive.MODE_OWN]) + own + parts[0][7:], parts[1]], 300, 40
            )
    with pytest.raises((CoderError, predictive.PredictiveError)):
        predictive.decode([parts[0], parts[1][:-3]], 300, 40)
    outcomes = set()
    for i in range(0, len(parts[1]), max(1, len(parts[1]) // 40)):
        damaged = bytearray(parts[1])
        damaged[i] ^= 0x5A
        try:
            decoded = predictive.decode([parts[0], bytes(damaged)], 300, 40)
        except (CoderError, predictive.PredictiveError):
            outcomes.add("refused")
        else:
            outcomes.add("same" if np.array_equal(decoded, rgb) else "different")
    assert "refused" in outcomes  # the rANS end check catches damage on its own


needs_models = pytest.mark.skipif(not zoo.cards(), reason="no model installed in models/")


def _model_of(data: bytes, level: int) -> str:
    encoded = image_codec.NeuralImageCodec().try_compress(data, level, Options())
    assert encoded is not None
    sections, payload, produced = encoded
    assert produced == data
    model_id = sections.model_id()
    assert model_id is not None
    back = image_codec.NeuralImageCodec().decompress(sections, payload)
    assert back == data
    return model_id.hex()


@needs_models
def test_the_default_level_codes_large_images_predictively_and_small_ones_by_the_smaller() -> None:
    large = encode_file(photo_like(130, 140, seed=7), "PPM")
    assert predictive.CODER.model_id.startswith(_model_of(large, 3))
    for seed in range(4):
        rgb = photo_like(64, 64, seed=seed)
        encoded = image_codec.NeuralImageCodec().try_compress(encode_file(rgb, "PPM"), 3, Options())
        assert encoded is not None
        alone = sum(map(len, predictive.encode(rgb)))
        assert len(encoded[1]) <= alone + 4  # + the parts' lengths


@needs_models
def test_the_max_level_keeps_the_smaller_of_flow_and_predictive() -> None:
    data = encode_file(photo_like(130, 140, seed=9), "PPM")
    codec = image_codec.NeuralImageCodec()
    at_max = codec.try_compress(data, 9, Options())
    at_default = codec.try_compress(data, 3, Options())
    assert at_max is not None and at_default is not None
    assert len(at_max[1]) <= len(at_default[1])


@needs_models
def test_a_container_names_the_predictive_coder() -> None:
    data = encode_file(photo_like(130, 140, seed=7), "PPM")
    out = io.BytesIO()
    api.compress(io.BytesIO(data), out, Options(level=3))
    back = io.BytesIO()
    api.decompress(io.BytesIO(out.getvalue()), back)
    assert back.getvalue() == data
    for coder in predictive.CODERS:
        card = api.model_card(coder.model_id[:4])
        assert card is not None and card["name"] == coder.name


def test_small_images_use_the_shipped_defaults_and_large_ones_may_fit_their_own() -> None:
    assert all(predictive.default_params(coder) is not None for coder in predictive.CODERS)
    small = predictive.encode(photo_like(32, 32, seed=2))
    assert len(small) == 1 and small[0][0] == predictive.MODE_DEFAULTS
    large = predictive.encode(photo_like(300, 280, seed=2))
    mode = large[0][0] & predictive.MODE_CORRECTED - 1
    assert mode in (predictive.MODE_DEFAULTS, predictive.MODE_OWN)


def test_version_4_corrects_the_predictions_of_large_images_where_that_pays() -> None:
    """A large image sends correction weights when they pay (smaller than version 3 by more
    than their 408 bytes), decodes byte-exact alone and beside others; a small one never
    sends them."""
    rgb = photo_like(300, 280, seed=2)
    v4, v3 = predictive.encode(rgb, predictive.V4), predictive.encode(rgb, predictive.V3)
    assert v4[0][0] & predictive.MODE_CORRECTED
    assert sum(map(len, v4)) + correction.block_bytes(False) < sum(map(len, v3))
    assert np.array_equal(predictive.decode(v4, 300, 280, predictive.V4), rgb)
    small = photo_like(32, 32, seed=2)
    assert not predictive.encode(small, predictive.V4)[0][0] & predictive.MODE_CORRECTED
    shapes = [(300, 280), (32, 32), (64, 530), (300, 280)]
    rgbs = [rgb, small, photo_like(64, 530, seed=4), photo_like(300, 280, seed=5)]
    parts = predictive.encode_many(rgbs, predictive.V4)
    back = predictive.decode_many(parts, shapes, predictive.V4)
    assert all(np.array_equal(a, b) for a, b in zip(rgbs, back, strict=True))


def test_a_damaged_correction_block_is_refused() -> None:
    rgb = photo_like(300, 280, seed=2)
    first = predictive.encode(rgb, predictive.V4)[0]
    defaults = predictive.default_params(predictive.V4)
    _, weights, _, stream = predictive.split_params(predictive.V4, first, defaults)
    assert weights is not None and weights.shape == (correction.TABLE, correction.WEIGHTS)
    size = correction.block_bytes(False)
    head = len(first) - len(stream) - size  # the mode's own part
    with pytest.raises(predictive.PredictiveError, match="cut short"):
        predictive.split_params(predictive.V4, first[: head + size - 1], defaults)
    lowest = first[:head] + b"\x00\x80" + first[head + 2 :]  # a weight of -2^15
    with pytest.raises(predictive.PredictiveError, match="out of range"):
        predictive.split_params(predictive.V4, lowest, defaults)
    with pytest.raises(predictive.PredictiveError, match="bad parameter part"):
        predictive.split_params(predictive.V3, first, defaults)  # version 3 has no such mode


def test_version_5_names_its_colour_transform_and_the_max_level_tries_each() -> None:
    """The mode byte's bits 2 and 3 name the transform: subtract-green for a large image,
    YCoCg-R for a small one by default; the max level's encoder keeps each image's smallest
    of the four, alone and in a batch; a mode byte beyond them is damage."""
    large, small = photo_like(300, 280, seed=2), photo_like(32, 32, seed=2)

    def transform_of(parts: list[bytes]) -> int:
        return parts[0][0] >> predictive.TRANSFORM_SHIFT & 3

    assert transform_of(predictive.encode(large)) == predictive.SUBTRACT_GREEN
    assert transform_of(predictive.encode(small)) == predictive.YCOCG
    sizes = []
    for transform in range(predictive.TRANSFORMS):
        parts = predictive.encode(large, dataclasses.replace(predictive.V5, colours=(transform,)))
        assert transform_of(parts) == transform
        assert np.array_equal(predictive.decode(parts, 300, 280), large)
        sizes.append(sum(map(len, parts)))
    assert len(set(sizes)) > 1  # the transforms code differently
    every = predictive.every_transform(predictive.V5)
    done: list[float] = []
    best = predictive.encode(large, every, progress=done.append)
    assert sum(map(len, best)) == min(sizes)
    assert len(done) >= predictive.TRANSFORMS and done == sorted(done) and done[-1] == 1.0
    rgbs = [large, small, photo_like(64, 530, seed=4)]
    many = predictive.encode_many(rgbs, every)
    assert many == [predictive.encode(rgb, every) for rgb in rgbs]
    back = predictive.decode_many(many, [rgb.shape[:2] for rgb in rgbs])
    assert all(np.array_equal(a, b) for a, b in zip(rgbs, back, strict=True))
    first = predictive.encode(small)[0]
    for bad in (64, predictive.MODE_PARITY):  # beyond the bits; parity without weights
        with pytest.raises(predictive.PredictiveError, match="bad parameter part"):
            predictive.decode([bytes([first[0] | bad]) + first[1:]], 32, 32)
    with pytest.raises(predictive.PredictiveError, match="bad parameter part"):
        predictive.decode(predictive.encode(large), 300, 280, predictive.V4)  # no transforms


def test_the_max_levels_try_every_colour_transform() -> None:
    """Large images from level 9, every image at level 19; the default level one transform."""

    def colours(level: int, height: int, width: int) -> list[tuple[int, ...]]:
        coders = image_codec._coders_for(level, height, width)
        return [c.colours for c in coders if isinstance(c, predictive.PredictiveCoder)]

    every = tuple(range(predictive.TRANSFORMS))
    assert colours(3, 512, 768) == [()] and colours(3, 32, 32) == [()]
    assert colours(9, 512, 768) == [every] and colours(9, 32, 32) == [()]
    assert colours(19, 32, 32) == [every]


def test_version_5_sends_chroma_weights_per_parity_where_they_pay() -> None:
    """An image whose chroma is interpolated gets weights per parity of its chroma samples
    (its parameter part says so), and comes back exactly alone and beside others; one whose
    chroma is not keeps one set per group; a parity block cut short is refused."""
    subsampled, plain = half_resolution_chroma(300, 280, seed=3), photo_like(300, 280, seed=3)
    parts = predictive.encode(subsampled)
    assert parts[0][0] & predictive.MODE_PARITY and parts[0][0] & predictive.MODE_CORRECTED
    assert not predictive.encode(plain)[0][0] & predictive.MODE_PARITY
    assert np.array_equal(predictive.decode(parts, 300, 280), subsampled)
    rgbs = [subsampled, plain, half_resolution_chroma(257, 311, seed=5), photo_like(20, 30)]
    many = predictive.encode_many(rgbs)
    assert many[0] == parts
    back = predictive.decode_many(many, [rgb.shape[:2] for rgb in rgbs])
    assert all(np.array_equal(a, b) for a, b in zip(rgbs, back, strict=True))
    defaults = predictive.default_params(predictive.V5)
    _, weights, _, _ = predictive.split_params(predictive.V5, parts[0], defaults)
    assert weights is not None and weights.shape == (correction.TABLE, correction.WEIGHTS)


def test_version_5_packs_long_parameter_parts_and_refuses_damaged_ones() -> None:
    """A parameter part of its own and weights goes as a zstd frame (MODE_PACKED) when that is
    shorter, and gives what the plain one would; a frame cut short, damaged, too long or
    holding more than the parameter part is refused, and so is a short defaults part."""
    first = predictive.encode(half_resolution_chroma(200, 180, seed=7))[0]
    mode = first[0]
    assert mode & predictive.MODE_PACKED
    defaults = predictive.default_params(predictive.V5)
    params, weights, transform, stream = predictive.split_params(predictive.V5, first, defaults)
    size, at = varint.decode(first, 1)
    body = zframe.unpack(first[at : at + size], 1 << 20)
    plain = bytes([mode & ~predictive.MODE_PACKED]) + body + stream
    again = predictive.split_params(predictive.V5, plain, defaults)
    assert np.array_equal(again[0], params) and np.array_equal(again[1], weights)
    assert again[2:] == (transform, stream) and len(first) < len(plain)

    def refused(part: bytes, why: str) -> None:
        with pytest.raises(predictive.PredictiveError, match=why):
            predictive.split_params(predictive.V5, part, defaults)

    refused(first[: at + size - 1], "cut short")
    refused(first[:1] + b"\xff", "cut short")
    damaged = bytearray(first)
    damaged[at + 3] ^= 0x55
    with pytest.raises(predictive.PredictiveError):
        predictive.split_params(predictive.V5, bytes(damaged), defaults)
    for extra in (body + b"\0", body + bytes(6000)):  # more than the part, or than any part
        frame = zframe.pack(extra)
        refused(first[:1] + varint.encode(len(frame)) + frame + stream, "bad parameter part|large")
    refused(bytes([predictive.MODE_DEFAULTS]) + bytes(3), "bad parameter part")


def test_the_correction_has_a_weight_set_per_scale_shift_group() -> None:
    assert correction.GROUPS == predictive.SHIFT_COUNT
    assert predictive.V4.shift_groups.max() == correction.GROUPS - 1


def test_the_correction_curve_is_odd_increasing_and_small() -> None:
    d = np.arange(-correction.MAX_INPUT, correction.MAX_INPUT + 1)
    c = correction.compress(d)
    assert np.array_equal(c, -c[::-1]) and (np.diff(c) >= 0).all() and c.max() == 159
    assert np.array_equal(c[correction.MAX_INPUT : correction.MAX_INPUT + 33], np.arange(33))
    assert correction.compress(np.array([10**6]))[0] == 159  # beyond the table: its end


def test_a_damaged_parameter_part_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = predictive.encode(photo_like(32, 32, seed=2))
    for bad in (b"", b"\x02abc", b"\x01\x00\x00", b"\x00" + bytes(10)):
        with pytest.raises(predictive.PredictiveError):
            predictive.decode([bad], 32, 32)
    monkeypatch.setattr(predictive, "default_params", lambda coder: None)  # not installed
    with pytest.raises(predictive.PredictiveError, match=predictive.CODER.defaults_file):
        predictive.decode(parts, 32, 32)


def test_batches_of_small_images_give_the_bytes_made_alone() -> None:
    rgbs = [photo_like(24, 40, seed=s) for s in range(5)]
    many = predictive.encode_many(rgbs)
    assert many == [predictive.encode(rgb) for rgb in rgbs]
    damaged = [list(p) for p in many]
    damaged[2][0] = damaged[2][0][:-2]
    back = predictive.decode_many(damaged, [(24, 40)] * 5)
    assert back[2] is None
    for k in (0, 1, 3, 4):
        assert np.array_equal(back[k], rgbs[k])


def test_images_of_different_shapes_encode_together() -> None:
    """Their batches push in one step loop (rows of lanes side by side, a round at a time),
    each image's streams the very ones it has alone, in the order given."""
    shapes = [(300, 270), (24, 40), (40, 530), (24, 40), (257, 31), (5, 9)]
    rgbs = [photo_like(h, w, seed=s) for s, (h, w) in enumerate(shapes)]
    many = predictive.encode_many(rgbs)
    assert many == [predictive.encode(rgb) for rgb in rgbs]
    back = predictive.decode_many(many, shapes)
    for rgb, got in zip(rgbs, back, strict=True):
        assert np.array_equal(got, rgb)


def test_batches_of_large_images_give_the_bytes_made_alone() -> None:
    """Images of several tiles and batches (a partial tile at the right and bottom edges,
    decoded in one sweep) go through in lockstep too, each image's streams the same."""
    rgbs = [photo_like(300, 270, seed=s) for s in range(3)]
    many = predictive.encode_many(rgbs)
    assert many == [predictive.encode(rgb) for rgb in rgbs]
    assert len(many[0]) == predictive.batch_count(300, 270) > 1
    damaged = [list(p) for p in many]
    damaged[1][-1] = damaged[1][-1][:-3]
    back = predictive.decode_many(damaged, [(300, 270)] * 3)
    assert back[1] is None
    for k in (0, 2):
        assert np.array_equal(back[k], rgbs[k])


@pytest.mark.parametrize(
    ("shapes", "one_stream_each"),
    [
        ([(300, 270), (40, 530), (257, 31), (40, 530), (5, 9)], False),  # a lockstep unit too
        ([(300, 270), (40, 530), (257, 31), (5, 9)], True),
    ],
)
def test_images_of_different_shapes_decode_in_one_sweep(
    shapes: list[tuple[int, int]], one_stream_each: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images of several shapes decode in one sweep; a sweep whose units are one stream each
    (photos of as many sizes) pops a plane's samples of every stream in one call. A damaged
    stream of an image alone in its unit fails its sweep: those come back None."""
    rgbs = [photo_like(h, w, seed=s) for s, (h, w) in enumerate(shapes)]
    parts = [predictive.encode(rgb) for rgb in rgbs]
    calls = []
    pop_streams = predictive._Sources.pop_streams

    def counted(self: predictive._Sources, *args: np.ndarray) -> np.ndarray:
        calls.append(1)
        return pop_streams(self, *args)

    monkeypatch.setattr(predictive._Sources, "pop_streams", counted)
    back = predictive.decode_many(parts, shapes)
    assert bool(calls) == one_stream_each
    for rgb, got in zip(rgbs, back, strict=True):
        assert np.array_equal(got, rgb)
    damaged = [list(p) for p in parts]
    damaged[2][0] = damaged[2][0][: len(damaged[2][0]) // 2]
    back = predictive.decode_many(damaged, shapes)
    assert back[2] is None
    for k, got in enumerate(back):
        assert got is None or np.array_equal(got, rgbs[k]), k


def test_damaged_streams_of_large_declared_images_stop_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Streams that run out (short, hostile) fail their sweep at once instead of being
    decoded to the end of the size their headers declare."""
    parts = [predictive.encode(photo_like(64, 64, seed=s)) for s in range(3)]
    short = [[p[0][:40]] + [b"\x00" * 8] * (predictive.batch_count(1024, 1024) - 1) for p in parts]
    steps = []
    coding = predictive._coding
    monkeypatch.setattr(predictive, "_coding", lambda *a: steps.append(1) or coding(*a))
    assert predictive.decode_many(short, [(1024, 1024)] * 3) == [None] * 3
    assert len(steps) < 100  # a whole sweep of 256×256 tiles is 766 × 3 pops
    # images of different shapes: their batches pop from one ragged decoder, which stops too
    shapes = [(1024, 1000), (1000, 1024), (999, 999)]
    short = [
        [p[0][:40]] + [b"\x00" * 8] * (predictive.batch_count(*s) - 1)
        for p, s in zip(parts, shapes, strict=True)
    ]
    steps.clear()
    assert predictive.decode_many(short, shapes) == [None] * 3
    assert len(steps) < 100


def test_shifts_pack_two_to_a_byte() -> None:
    shifts = np.array([-8, 7, 0, -1, 3, -5, 1, 2, -2, 6, 5, -3])
    packed = predictive.pack_shifts(shifts)
    assert len(packed) == 6
    assert np.array_equal(predictive.unpack_shifts(packed), shifts)


def test_the_defaults_follow_the_model_folders(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Read once per state of the files, not once per process: a process that looked in a
    folder without them finds them again when its folders change back."""
    assert predictive.default_params(predictive.CODER) is not None
    with monkeypatch.context() as patch:
        patch.setattr(zoo, "model_dirs", lambda: [tmp_path])
        assert predictive.default_params(predictive.CODER) is None
    assert predictive.default_params(predictive.CODER) is not None


def test_integer_square_roots_are_exact() -> None:
    n = np.concatenate([np.arange(100_000), [2**52 - 1, 2**50, 2**50 - 1, 10**14 - 1]])
    assert predictive._isqrt(n).tolist() == [math.isqrt(int(v)) for v in n]


def test_the_version_4_goldens_cover_its_parameter_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/golden/v2-predictive4-*: corrected with parameters of its own (mode 2) and with
    the defaults (mode 3), and a small image without weights (mode 1)."""
    seen: set[tuple[str, int]] = set()
    split = predictive.split_params

    def spy(coder: predictive.PredictiveCoder, first: bytes, defaults: object) -> object:
        seen.add((coder.name, first[0]))
        return split(coder, first, defaults)  # type: ignore[arg-type]

    monkeypatch.setattr(predictive, "split_params", spy)
    golden = Path(__file__).parent / "golden"
    for path in sorted(golden.glob("v2-predictive4-*.iodf")):
        api.decompress(io.BytesIO(path.read_bytes()), io.BytesIO())
    assert seen == {("iodf-predictive-4", mode) for mode in (1, 2, 3)}
