"""Write the golden containers of tests/golden/ (run once; the files are then frozen).

Usage: ``python tests/golden/generate.py OUT_DIR`` with the iodfz to freeze on PYTHONPATH.
Every input is generated here from a fixed seed, so nothing from ../shared/data is committed.
``manifest.json`` lists, per container, the SHA-256 and length of what it must decode to and
the metadata its header must carry. tests/test_golden.py checks every future iodfz against it.
The ``v2-neural-*`` files are this script's ``neural-*`` output at the commit that introduced
format version 2, renamed (the others are from the version 1 writer).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from iodfz import api
from iodfz.codec import predictive
from iodfz.codecs import Options
from iodfz.container import CODEC_STORED, ContainerWriter, Header, frame_digest

MTIME_NS = 1_700_000_000_123_456_789


def photo(h: int, w: int, channels: int, seed: int) -> np.ndarray:
    """Smooth random field plus a little noise: an image the flow codes well."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(h, w))
    base = np.fft.irfft2(amp * np.exp(2j * np.pi * rng.random(amp.shape)), s=(h, w))
    base = (base - base.mean()) / base.std()
    planes = [120 + 45 * base + 12 * c + rng.normal(0, 1.0, (h, w)) for c in range(channels)]
    return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


def half_chroma(h: int, w: int, seed: int) -> np.ndarray:
    """``photo`` with its chroma kept at half resolution and repeated (as JPEG's 4:2:0 and
    Photo CD keep it): the predictive coder sends correction weights per parity for it."""
    rgb = photo(h, w, 3, seed).astype(np.int64)
    luma = rgb.sum(2, keepdims=True) // 3
    chroma = np.repeat(np.repeat((rgb - luma)[::2, ::2], 2, axis=0), 2, axis=1)[:h, :w]
    return np.clip(luma + chroma, 0, 255).astype(np.uint8)


def quadratic(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth quadratic surface with sparse +1 noise: statistics unlike a photo's, so that
    the predictive coder fits parameters of its own even to a small image."""
    i, j = np.mgrid[:h, :w]
    base = (i * i + 3 * j * j + 5 * i * j).astype(float)
    base = base / base.max() * 250
    rgb = np.stack([base, base * 0.7 + 40, 250 - base * 0.9], -1).astype(np.uint8)
    bumps = np.random.default_rng(seed).random(rgb.shape) < 0.1
    return np.clip(rgb.astype(int) + bumps, 0, 255).astype(np.uint8)


@contextlib.contextmanager
def transform(forced: int | None) -> Iterator[None]:
    """The predictive coder's colour transform ``forced`` on every image (None: its own
    choice) while the block runs."""
    chosen = predictive.encoder_transform
    if forced is not None:
        predictive.encoder_transform = lambda coder, height, width: forced
    try:
        yield
    finally:
        predictive.encoder_transform = chosen


def with_alpha(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` plus an alpha plane: opaque with a half-transparent block."""
    alpha = np.full((*pixels.shape[:2], 1), 255, np.uint8)
    alpha[4:12, 4:12] = 128
    return np.concatenate([pixels, alpha], axis=2)


def image_file(pixels: np.ndarray, fmt: str) -> bytes:
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(buf, fmt)
    return buf.getvalue()


def text(n: int) -> bytes:
    words = [b"lossless", b"integer", b"flow", b"container", b"frame", b"digest", b"zstd"]
    rng = np.random.default_rng(7)
    out = b" ".join(words[i] for i in rng.integers(0, len(words), n // 6))
    return out[:n]


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict] = {}

    def put(file: str, container: bytes, content: bytes, **expect: object) -> None:
        (out_dir / file).write_bytes(container)
        manifest[file] = {
            "sha256": hashlib.sha256(content).hexdigest(),
            "length": len(content),
            **expect,
        }

    def compress(data: bytes, options: Options | None = None, **meta: object) -> tuple[bytes, int]:
        out = io.BytesIO()
        result = api.compress(io.BytesIO(data), out, options, **meta)  # type: ignore[arg-type]
        return out.getvalue(), result.codec

    file_meta = {"name": b"a.bin", "mode": 0o640, "mtime_ns": MTIME_NS}
    head = {"name": "a.bin", "mode": "0640", "mtime_ns": MTIME_NS}

    # codec 1, one zstd frame, file metadata; the same from stdin (no metadata, no length)
    data = text(5000)
    c, codec = compress(data, length=len(data), **file_meta)  # type: ignore[arg-type]
    put("zstd-file.iodf", c, data, codec=codec, frame_codecs={"zstd": 1}, **head)
    c, codec = compress(data)
    put("zstd-stdin.iodf", c, data, codec=codec, frame_codecs={"zstd": 1})
    # codec 1, one stored frame (incompressible)
    noise = np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    c, codec = compress(noise, length=len(noise), **file_meta)  # type: ignore[arg-type]
    put("zstd-stored-frame.iodf", c, noise, codec=codec, frame_codecs={"stored": 1}, **head)
    # codec 1, several frames, zstd and stored mixed (end record with content digest)
    noise2 = np.random.default_rng(4).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    mixed = text(2048) + noise2 + text(1200)
    out = io.BytesIO()
    result = api.compress(io.BytesIO(mixed), out, None, frame_size=2048)
    put(
        "zstd-multiframe.iodf",
        out.getvalue(),
        mixed,
        codec=result.codec,
        frame_codecs={"stored": 2, "zstd": 2},  # checked below
    )
    # empty input: no frame at all
    c, codec = compress(b"", length=0, **file_meta)  # type: ignore[arg-type]
    put("empty.iodf", c, b"", codec=codec, frame_codecs={}, **head)
    # container codec 0 (readers accept it; this writer does not choose it)
    out = io.BytesIO()
    writer = ContainerWriter(out, Header(CODEC_STORED, original_length=len(noise)))
    writer.write_frame(CODEC_STORED, len(noise), frame_digest(noise), noise)
    writer.finish()
    put("stored.iodf", out.getvalue(), noise, codec=CODEC_STORED, frame_codecs={"stored": 1})

    # codec 2 with each shipped model (level 1: iodf-w64-fast, level 3: iodf-w64)
    images = {
        "ppm-rgb-32": image_file(photo(32, 32, 3, 1), "PPM"),
        "png-rgb-40x24": image_file(photo(40, 24, 3, 2), "PNG"),
        "pgm-gray-40x51": image_file(np.repeat(photo(40, 17, 1, 3), 3, axis=1), "PPM"),
        "png-rgba-24": image_file(with_alpha(photo(24, 24, 3, 4)), "PNG"),
        "bmp-rgb-16x40": image_file(photo(16, 40, 3, 5), "BMP"),
        "png-la-32x48": image_file(with_alpha(np.repeat(photo(32, 16, 1, 6), 3, axis=1)), "PNG"),
        "tiff-rgb-24": image_file(photo(24, 24, 3, 7), "TIFF"),
    }
    for level in (1, 3):
        for key, data in images.items():
            name = f"{key}.{key.split('-')[0]}".encode()
            meta = {"name": name, "mode": 0o644, "mtime_ns": MTIME_NS, "length": len(data)}
            c, codec = compress(data, Options(level=level), **meta)  # type: ignore[arg-type]
            assert codec == 2, (key, level)
            put(
                f"neural-l{level}-{key}.iodf",
                c,
                data,
                codec=codec,
                frame_codecs={"neural-image": 1},
                name=name.decode(),
                mode="0644",
                mtime_ns=MTIME_NS,
            )
        data = images["ppm-rgb-32"]
        c, codec = compress(data, Options(level=level))
        assert codec == 2
        put(f"neural-l{level}-stdin.iodf", c, data, codec=codec, frame_codecs={"neural-image": 1})
    # codec 2, the predictive coders, each an image large enough for parameters of its own and
    # a small one with the shipped default parameters (for version 2 not a photo: its photos
    # of that size take the defaults too): ``v2-predictive-*`` by
    # iodf-predictive-1 (when it was the default level's coder above 128×128), then
    # ``v2-predictive2-*`` by iodf-predictive-2 (the default level's coder for every image),
    # then ``v2-predictive3-*`` by iodf-predictive-3 (the same with texture biases), then
    # ``v2-predictive4-*`` by iodf-predictive-4: weights that correct the predictions with
    # parameters of its own and with the defaults, and a small image without them, then
    # ``v2-predictive5-*`` by iodf-predictive-5: subtract green (a large image, corrected),
    # YCoCg-R (a small one), and the two transforms only the max level picks, forced here
    # (``transform``) so that each is pinned on an image of the same kind; then an image with
    # chroma at half resolution (correction weights per parity; frozen before parameter parts
    # were packed), and one more whose parameter part is packed (a zstd frame)
    for file, name, pixels in (
        ("v2-predictive-ppm-rgb-144x160.iodf", "predictive.ppm", photo(144, 160, 3, 8)),
        ("v2-predictive-defaults-ppm-rgb-40x48.iodf", "defaults.ppm", photo(40, 48, 3, 9)),
        ("v2-predictive2-own-ppm-rgb-96x100.iodf", "own.ppm", quadratic(96, 100, 10)),
        ("v2-predictive2-defaults-ppm-rgb-40x48.iodf", "defaults2.ppm", photo(40, 48, 3, 11)),
        ("v2-predictive3-own-ppm-rgb-96x100.iodf", "own3.ppm", quadratic(96, 100, 12)),
        ("v2-predictive3-defaults-ppm-rgb-40x48.iodf", "defaults3.ppm", photo(40, 48, 3, 13)),
        ("v2-predictive4-own-ppm-rgb-128x128.iodf", "own4.ppm", quadratic(128, 128, 16)),
        ("v2-predictive4-defaults-ppm-rgb-96x100.iodf", "defaults4.ppm", photo(96, 100, 3, 14)),
        ("v2-predictive4-plain-ppm-rgb-40x48.iodf", "plain4.ppm", photo(40, 48, 3, 15)),
        ("v2-predictive5-green-ppm-rgb-128x128.iodf", "green5.ppm", quadratic(128, 128, 17)),
        ("v2-predictive5-ycocg-ppm-rgb-40x48.iodf", "ycocg5.ppm", photo(40, 48, 3, 18)),
        ("v2-predictive5-red-ppm-rgb-100x96.iodf", "red5.ppm", photo(100, 96, 3, 19)),
        ("v2-predictive5-chroma-ppm-rgb-100x96.iodf", "chroma5.ppm", photo(100, 96, 3, 20)),
        ("v2-predictive5-parity-ppm-rgb-136x160.iodf", "parity5.ppm", half_chroma(136, 160, 21)),
        ("v2-predictive5-packed-ppm-rgb-136x160.iodf", "packed5.ppm", half_chroma(136, 160, 22)),
    ):
        data = image_file(pixels, "PPM")
        meta = {"name": name.encode(), "mode": 0o644, "mtime_ns": MTIME_NS, "length": len(data)}
        forced = {"red5.ppm": predictive.SUBTRACT_RED, "chroma5.ppm": predictive.GREEN_CHROMA}
        with transform(forced.get(name)):
            c, codec = compress(data, Options(level=3), **meta)  # type: ignore[arg-type]
        expect = {"name": name, "mode": "0644", "mtime_ns": MTIME_NS}
        put(file, c, data, codec=codec, frame_codecs={"neural-image": 1}, **expect)
    for file, expect in manifest.items():  # the frame codecs claimed above are the real ones
        container = io.BytesIO((out_dir / file).read_bytes())
        assert api.info(container).to_dict()["frame_codecs"] == expect["frame_codecs"], file
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
