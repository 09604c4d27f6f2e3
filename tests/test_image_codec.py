"""The neural image path end to end: files in, the very same files out (or the same pixels
with --pixels), through the container; fallback to zstd whenever the flow does not win."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from iodfz import api, zoo
from iodfz.codec import predictive
from iodfz.codecs import FLOW_FROM, Options
from iodfz.container import CODEC_IMAGE, CODEC_STORED, CODEC_ZSTD
from iodfz.errors import IodfError

pytestmark = pytest.mark.skipif(not zoo.cards(), reason="no model installed in models/")


def photo_like(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """1/f noise, the spectrum of natural images, shared by the channels, plus a little
    sensor noise: what the flow is good at."""
    rng = np.random.default_rng(seed)
    freq = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :])
    amplitude = 1.0 / np.maximum(freq, 1.0 / max(h, w))

    def field() -> np.ndarray:
        phase = np.exp(2j * np.pi * rng.random(amplitude.shape))
        f = np.fft.irfft2(amplitude * phase, s=(h, w))
        return (f - f.mean()) / max(f.std(), 1e-9)

    base = field()
    planes = [
        120 + 45 * base + 8 * field() + 10 * c + rng.normal(0, 0.5, (h, w)) for c in range(channels)
    ]
    return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


def half_resolution_chroma(h: int, w: int, seed: int = 0) -> np.ndarray:
    """``photo_like`` with its chroma kept at half resolution (as JPEG's 4:2:0 and Photo CD
    keep it) and brought back by repeating each sample."""
    rgb = photo_like(h, w, seed=seed).astype(np.int64)
    luma = rgb.sum(2, keepdims=True) // 3
    half = (rgb - luma)[::2, ::2]
    chroma = np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)[:h, :w]
    return np.clip(luma + chroma, 0, 255).astype(np.uint8)


def encode_file(pixels: np.ndarray, fmt: str, **kw: object) -> bytes:
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(buf, fmt, **kw)
    return buf.getvalue()


def roundtrip(data: bytes, pixels: bool = False) -> tuple[int, bytes, bytes]:
    out = io.BytesIO()
    result = api.compress(io.BytesIO(data), out, Options(pixels=pixels))
    back = io.BytesIO()
    api.decompress(io.BytesIO(out.getvalue()), back)
    return result.codec, out.getvalue(), back.getvalue()


@pytest.mark.parametrize("size", [(8, 8), (9, 13), (33, 31), (67, 131), (131, 67)])
@pytest.mark.parametrize("fmt", ["PNG", "PPM", "BMP", "TIFF"])
def test_rgb_files_round_trip_byte_exact(size: tuple[int, int], fmt: str) -> None:
    data = encode_file(photo_like(*size), fmt)
    codec, _, back = roundtrip(data)
    assert back == data
    assert codec in (CODEC_IMAGE, CODEC_ZSTD, CODEC_STORED)


def test_a_photo_like_image_goes_through_the_flow() -> None:
    data = encode_file(photo_like(96, 128), "PPM")
    codec, container, back = roundtrip(data)
    assert back == data
    assert codec == CODEC_IMAGE
    assert len(container) < len(zlib.compress(data, 9))


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_gray_and_alpha_images_round_trip(channels: int) -> None:
    pixels = photo_like(40, 50, channels)
    data = encode_file(pixels, "PNG")
    assert roundtrip(data)[2] == data


@pytest.mark.parametrize("size", [(1, 1), (7, 300), (2, 2)])
def test_images_too_small_for_the_flow_go_to_zstd(size: tuple[int, int]) -> None:
    data = encode_file(photo_like(*size), "PNG")
    codec, _, back = roundtrip(data)
    assert back == data
    assert codec != CODEC_IMAGE


def test_16_bit_and_palette_images_round_trip() -> None:
    wide = (photo_like(20, 30, 1).astype(np.uint16) * 257)[..., 0]
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, "PNG")
    palette = Image.fromarray(photo_like(24, 24)).convert("P", palette=Image.ADAPTIVE)
    buf2 = io.BytesIO()
    palette.save(buf2, "PNG")
    for data in (buf.getvalue(), buf2.getvalue()):
        assert roundtrip(data)[2] == data


def test_noise_and_flat_graphics_fall_back_to_zstd() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    flat = np.zeros((64, 64, 3), np.uint8)
    flat[16:48, 16:48] = (200, 30, 90)
    for pixels in (noise, flat):
        data = encode_file(pixels, "PPM")
        codec, _, back = roundtrip(data)
        assert back == data
        assert codec != CODEC_IMAGE


def png_with_foreign_deflate(pixels: np.ndarray) -> bytes:
    """A valid PNG whose IDAT was deflated by libdeflate (level 12), which zlib does not
    reproduce."""
    imagecodecs = pytest.importorskip("imagecodecs")
    h, w, _ = pixels.shape
    raw = b"".join(
        b"\2"
        + (pixels[y].astype(np.int16) - (pixels[y - 1] if y else 0)).astype(np.uint8).tobytes()
        for y in range(h)
    )
    idat = imagecodecs.deflate_encode(raw, level=12)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload).to_bytes(4, "big")
        return len(payload).to_bytes(4, "big") + kind + payload + crc

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_pixels_option_trades_byte_exactness_for_the_neural_ratio() -> None:
    pixels = photo_like(64, 64)
    data = png_with_foreign_deflate(pixels)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)
    codec, _, back = roundtrip(data)
    assert codec != CODEC_IMAGE and back == data  # default: byte-exact through zstd
    codec, container, back = roundtrip(data, pixels=True)
    assert codec == CODEC_IMAGE
    assert back != data
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(back))), pixels)
    assert api.info(io.BytesIO(container)).to_dict()["guarantee"] == "pixel-exact png (re-encoded)"
    codec, container, _ = roundtrip(encode_file(pixels, "PNG"), pixels=True)
    assert codec == CODEC_IMAGE
    assert api.info(io.BytesIO(container)).to_dict()["guarantee"] == "byte-exact png"


def test_damaged_neural_payload_is_a_clean_error() -> None:
    data = encode_file(photo_like(64, 64), "PPM")
    codec, container, _ = roundtrip(data)
    assert codec == CODEC_IMAGE
    damaged = bytearray(container)
    damaged[len(damaged) // 2] ^= 0x10
    with pytest.raises(IodfError):
        api.decompress(io.BytesIO(bytes(damaged)), io.BytesIO())


def test_missing_model_is_named(monkeypatch: pytest.MonkeyPatch, flow_only: None) -> None:
    data = encode_file(photo_like(64, 64), "PPM")
    codec, container, _ = roundtrip(data)
    assert codec == CODEC_IMAGE
    model_id = api.info(io.BytesIO(container)).header.sections.model_id().hex()
    monkeypatch.setattr(zoo, "cards", lambda: ())
    zoo.load_by_id.cache_clear()
    with pytest.raises(IodfError, match=f"needs model {model_id[:16]}"):
        api.decompress(io.BytesIO(container), io.BytesIO())
    zoo.load_by_id.cache_clear()


def test_cli_info_shows_shape_model_and_guarantee(tmp_path, run_iodfz) -> None:
    path = tmp_path / "photo.ppm"
    path.write_bytes(encode_file(photo_like(64, 64), "PPM"))
    assert run_iodfz("compress", "-q", path).returncode == 0
    done = run_iodfz("info", f"{path}.iodf")
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "neural-image" in out and "64x64x3" in out and "byte-exact pnm" in out


def test_unusable_engine_falls_back_to_the_predictive_coder_with_a_warning(
    monkeypatch, capsys
) -> None:
    from iodfz.codec import image
    from iodfz.engine import backends
    from iodfz.engine.backends import BackendUnavailable

    def broken(model):
        raise BackendUnavailable("differs from the test vectors (top)")

    monkeypatch.setattr(backends, "backend_for", broken)  # the codec imports it when needed
    data = encode_file(photo_like(64, 64), "PPM")
    encoded = image.CODEC.try_compress(data, FLOW_FROM, Options())
    assert encoded is not None
    assert predictive.CODER.model_id.startswith(encoded[0].model_id().hex())
    codec, _, back = roundtrip(data)
    assert codec == CODEC_IMAGE and back == data
    assert "neural image path unusable" in capsys.readouterr().err


def test_the_max_levels_keep_the_model_that_codes_smallest(monkeypatch) -> None:
    from iodfz.codec import image

    level = 19  # the top level: every model serves it
    models = zoo.models_for(level)
    if len(models) < 2:
        pytest.skip("fewer than two models serve the max levels")
    data = encode_file(photo_like(64, 96), "PPM")
    both = image.CODEC.try_compress(data, level, Options(level=level))
    alone = []
    for model in models:
        monkeypatch.setattr(zoo, "models_for", lambda *_, model=model: [model])
        alone.append(image.CODEC.try_compress(data, level, Options(level=level)))
    assert both is not None and None not in alone
    assert len(both[1]) == min(len(r[1]) for r in alone)
    assert len({len(r[1]) for r in alone}) > 1  # the models differ, so the choice matters


# --------------------------------------------------------------------------- version 2


def ppm(pixels: np.ndarray) -> bytes:
    h, w, _ = pixels.shape
    return b"P6\n%d %d\n255\n" % (w, h) + pixels.tobytes()


def compress_path(path) -> bytes:  # type: ignore[no-untyped-def]
    out = io.BytesIO()
    with open(path, "rb") as f:
        assert api.compress(f, out, Options(), **api.file_metadata(f, path)).codec == CODEC_IMAGE
    return out.getvalue()


def stream_bytes(container: bytes) -> int:
    """Bytes of the rANS streams in a version 2 container (its last payload parts)."""
    from iodfz.codec import image
    from iodfz.container import ContainerReader

    reader = ContainerReader(io.BytesIO(container))
    (frame,) = reader.frames()
    sections = reader.header.sections
    flags, _, tile = image._unpack_format(sections.require(0x0100))
    shape = sections.shape()
    coder = next(image._coders(sections.model_id().hex()))
    plan = coder.batch_count(shape.height, shape.width, tile)
    present = (not flags & image.FLAG_SIDE_NONE) + (shape.channels in (2, 4))
    parts = image._unpack_compact(bytes(frame.payload), present + plan)
    return sum(map(len, parts[present:]))


def test_small_ppm_costs_at_most_30_bytes_beside_its_streams_and_name(tmp_path) -> None:
    path = tmp_path / "a.ppm"
    path.write_bytes(ppm(photo_like(32, 32)))
    container = compress_path(path)
    assert container[4] == 2  # version 2, compact
    overhead = len(container) - stream_bytes(container) - len(b"a.ppm")
    assert overhead <= 30, overhead
    info = api.decompress(io.BytesIO(container), back := io.BytesIO())
    assert back.getvalue() == path.read_bytes()
    assert info.header.name == b"a.ppm" and info.header.mode == path.stat().st_mode & 0o777
    assert info.header.mtime_ns == path.stat().st_mtime_ns


@pytest.mark.parametrize("name", [b"x" * 14, b"y" * 15, b"z" * 300])
def test_version_2_names_of_every_length_class(name: bytes) -> None:
    data = ppm(photo_like(16, 16))
    out = io.BytesIO()
    api.compress(io.BytesIO(data), out, Options(), name=name, mode=0o755, mtime_ns=-1)
    header = api.info(io.BytesIO(out.getvalue())).header
    assert (header.name, header.mode, header.mtime_ns) == (name, 0o755, -1)
    assert api.info(io.BytesIO(out.getvalue())).original_size == len(data)


def test_version_2_every_byte_flip_and_truncation_is_detected() -> None:
    data = encode_file(photo_like(16, 24), "PNG")
    out = io.BytesIO()
    api.compress(io.BytesIO(data), out, Options(), name=b"a.png", mode=0o600, mtime_ns=5)
    blob = out.getvalue()
    assert blob[4] == 2
    for pos in range(len(blob)):
        for mask in (0x01, 0x80):
            damaged = bytearray(blob)
            damaged[pos] ^= mask
            with pytest.raises(IodfError):
                api.info(io.BytesIO(bytes(damaged)))
    for cut in range(len(blob)):
        with pytest.raises(IodfError):
            api.info(io.BytesIO(blob[:cut]))
    with pytest.raises(IodfError):
        api.info(io.BytesIO(blob + b"\0"))


def recrc(blob: bytes | bytearray) -> bytes:
    """A version 2 container with its CRC recomputed: damage now reaches the decoder."""
    return bytes(blob[:-4]) + zlib.crc32(blob[:-4]).to_bytes(4, "little")


def _payload_span(blob: bytes) -> tuple[int, int]:
    from iodfz.container import ContainerReader

    reader = ContainerReader(io.BytesIO(blob))
    (frame,) = reader.frames()
    end = len(blob) - 10
    return end - len(frame.payload), end


@pytest.mark.parametrize(
    "fmt", ["PPM", "PNG-RGBA", "BMP", "PPM-predictive", "PPM-corrected", "PPM-parity"]
)
def test_damage_that_reaches_the_decoder_is_never_accepted(fmt: str) -> None:
    """Flip payload bits (side data, alpha, stream heads, words, escapes) and recompute the
    CRC: the container checks pass, so the decoders themselves see the damage. Every case
    must be a clean error (rANS checks, zstd, formats, or the content digest) or give back
    the very same file (a zstd frame header has bits that do not change its output)."""
    if fmt == "PNG-RGBA":
        data = encode_file(photo_like(32, 32, 4), "PNG")
    elif fmt == "PPM-predictive":  # above 128×128: the predictive coder, parameters its own
        data = encode_file(photo_like(150, 140), "PPM")
    elif fmt == "PPM-corrected":  # the predictive coder sends correction weights for this one
        data = encode_file(photo_like(160, 150), "PPM")
    elif fmt == "PPM-parity":  # ... and weights per parity (1 728 bytes) for this one
        data = encode_file(half_resolution_chroma(160, 150), "PPM")
    else:
        data = encode_file(photo_like(32, 32), fmt)
    out = io.BytesIO()
    assert api.compress(io.BytesIO(data), out, Options()).codec == CODEC_IMAGE
    blob = out.getvalue()
    start, end = _payload_span(blob)
    positions = sorted({*range(start, min(end, start + 12)), *range(max(start, end - 6), end)})
    positions += list(range(start, end, max(1, (end - start) // 12)))
    if fmt == "PPM-corrected":  # the parameter part and its 576 bytes of weights only
        positions = list(range(start, start + 800, 41))
    if fmt == "PPM-parity":  # the parameter part, its mode byte's bits, its 1 728 bytes of weights
        positions = list(range(start, start + 8)) + list(range(start, start + 2200, 67))
    for i, pos in enumerate(positions):
        damaged = bytearray(blob)
        damaged[pos] ^= 0x40 if i % 2 else 0x01
        back = io.BytesIO()
        try:
            api.decompress(io.BytesIO(recrc(damaged)), back)
        except IodfError:
            continue
        assert back.getvalue() == data, pos
    # the digest itself damaged (CRC recomputed): refused after decoding
    damaged = bytearray(blob)
    damaged[-5] ^= 1
    with pytest.raises(IodfError, match="checksum mismatch"):
        api.decompress(io.BytesIO(recrc(damaged)), io.BytesIO())


def test_models_sharing_the_id_prefix_are_tried_in_turn(monkeypatch) -> None:
    from iodfz.codec import image

    data = ppm(photo_like(16, 16))
    out = io.BytesIO()
    api.compress(io.BytesIO(data), out, Options(level=3))  # the predictive coder
    right = list(
        image._coders(api.info(io.BytesIO(out.getvalue())).header.sections.model_id().hex())
    )
    wrong = zoo.for_level(FLOW_FROM)
    assert wrong is not None and wrong.model_id != right[0].model_id
    coders = [image.FlowCoder(wrong), *right]
    monkeypatch.setattr(image, "_coders", lambda prefix: iter(coders))
    back = io.BytesIO()
    api.decompress(io.BytesIO(out.getvalue()), back)
    assert back.getvalue() == data


def test_writer_and_reader_share_one_size_limit(monkeypatch) -> None:
    from iodfz import limits

    data = ppm(photo_like(32, 32))
    out = io.BytesIO()
    api.compress(io.BytesIO(data), out, Options())
    monkeypatch.setattr(limits, "MAX_PIXELS", 32 * 32 * 3 - 1)
    again = io.BytesIO()
    assert api.compress(io.BytesIO(data), again, Options()).codec != CODEC_IMAGE
    with pytest.raises(IodfError, match="too large"):
        api.decompress(io.BytesIO(out.getvalue()), io.BytesIO())


def _bomb() -> bytes:
    """One magicless zstd frame (the side data form) of 2**28 zero bytes."""
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(
        1, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_content_size=False
    )
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    zeros = bytes(1 << 22)
    return b"".join(cobj.compress(zeros) for _ in range(1 << 6)) + cobj.flush()


def test_side_data_bomb_is_refused_quickly_in_bounded_memory() -> None:
    """A valid container whose side data inflates to 2**28 bytes: refused once past the side
    bound of the image's shape, never inflated whole."""
    import time
    import tracemalloc

    from iodfz.container import (
        ContainerReader,
        ContainerWriter,
        Header,
        Sections,
        read_uint,
        uint_bytes,
    )

    data = encode_file(photo_like(32, 32), "PNG")
    out = io.BytesIO()
    api.compress(io.BytesIO(data), out, Options())
    reader = ContainerReader(io.BytesIO(out.getvalue()))
    (frame,) = reader.frames()
    sections = reader.header.sections
    fmt = bytearray(sections.get(0x0100))
    side_len, pos = read_uint(frame.payload, 0, "test")
    bomb = _bomb()
    payload = uint_bytes(len(bomb)) + bomb + bytes(frame.payload[pos + side_len :])
    fmt[0] |= 2
    forged = Sections([(1, sections.get(1)), (2, sections.get(2)), (0x0100, bytes(fmt))])
    blob = io.BytesIO()
    writer = ContainerWriter(blob, Header(2, sections=forged))
    writer.write_frame(2, frame.raw_len, bytes(16), payload)
    writer.finish()
    tracemalloc.start()
    began = time.perf_counter()
    try:
        with pytest.raises(IodfError, match="side data too large"):
            api.decompress(io.BytesIO(blob.getvalue()), io.BytesIO())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20, peak
    assert time.perf_counter() - began < 30


def test_batch_count_matches_the_batches_it_counts() -> None:
    from iodfz.codec import tiling

    for h, w, tile in [(8, 8, 8), (264, 40, 8), (1000, 2048, 16), (2056, 300, 256), (24, 8, 4096)]:
        assert tiling.batch_count(h, w, tile) == len(list(tiling.batches(h, w, tile)))


def test_a_header_declaring_millions_of_tiles_is_refused_before_listing_them() -> None:
    from iodfz.codec import image

    sections = compact_sections(height=8000, width=8000, tile=8)
    with pytest.raises(IodfError, match="too short"):
        image.CODEC.decompress(sections, b"\0" * 100)


def compact_sections(height: int, width: int, tile: int):  # type: ignore[no-untyped-def]
    from iodfz.container import CompactImage, ImageShape

    model_id = bytes.fromhex(zoo.cards()[0]["model_id"])[:2]
    return CompactImage(0, 2, tile, ImageShape(height, width, 3, 8), model_id).sections()


def test_a_predictive_coding_never_loads_the_flows_engine() -> None:
    """The predictive path (every default-level image) imports none of the flow's modules:
    they cost a short command ~8 ms, and load only when a flow codes (``codec/tiling.py``
    holds the rules both share)."""
    import subprocess
    import sys

    code = """
import io, sys
import numpy as np
from iodfz import api
from iodfz.codecs import Options
from iodfz.container import CODEC_IMAGE
y, x = np.mgrid[:40, :48]  # a ramp with noise: the image path beats zstd on it
noise = np.random.default_rng(0).integers(0, 8, (40, 48, 3))
rgb = ((x + 2 * y)[..., None] * [1, 2, 3] // 2 + noise).astype(np.uint8)
ppm = b"P6\\n48 40\\n255\\n" + rgb.tobytes()
packed = io.BytesIO()
result = api.compress(io.BytesIO(ppm), packed, Options(level=3))
back = io.BytesIO()
api.decompress(io.BytesIO(packed.getvalue()), back)
assert back.getvalue() == ppm and result.codec == CODEC_IMAGE, result
print(sorted(m for m in sys.modules if m.startswith(("iodfz.engine", "iodfz.codec.pixels"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['iodfz.engine',", "'iodfz.engine.tables']"], out.stdout
