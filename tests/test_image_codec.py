"""The neural image path end to end: files in, the very same files out (or the same pixels
with --pixels), through the container; fallback to zstd whenever the flow does not win."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from iodfz import api, zoo
from iodfz.codecs import Options
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


def test_missing_model_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert "neural-image" in out and "64x64x3 8-bit" in out and "byte-exact pnm" in out


def test_unusable_engine_falls_back_to_zstd_with_a_warning(monkeypatch, capsys) -> None:
    from iodfz.codec import image
    from iodfz.engine.backends import BackendUnavailable

    def broken(model):
        raise BackendUnavailable("differs from the test vectors (top)")

    monkeypatch.setattr(image, "backend_for", broken)
    data = encode_file(photo_like(64, 64), "PPM")
    codec, _, back = roundtrip(data)
    assert codec != CODEC_IMAGE and back == data
    assert "neural image path unusable" in capsys.readouterr().err
