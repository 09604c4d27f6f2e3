"""Image benchmark: iodfz side by side with PNG, WebP lossless and JPEG-XL lossless.

Every codec gets the same pixels. iodfz gets them as a binary PPM, so its figure is the
neural codec's (container overhead included) and, like the others', leaves out what the
original file carried besides pixels (ICC profiles, text chunks). Speeds are MB/s of raw
pixels, encode and decode, single process, measured in the same run. The byte-exact column
says for how many originals the formats layer reproduces the exact file (PNG: its deflate
stream). The classic codecs come from imagecodecs (the ``bench`` extra), skipped if missing.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from iodfz import api, formats
from iodfz.codecs import Options

IMAGE_SUFFIXES = {".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff"}


@dataclass
class Row:
    codec: str
    bits: float = 0.0
    subpixels: int = 0
    encode_s: float = 0.0
    decode_s: float = 0.0
    files: int = 0
    notes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        raw_mb = self.subpixels / 1e6
        return {
            "codec": self.codec,
            "files": self.files,
            "bpsp": round(self.bits / max(1, self.subpixels), 4),
            "encode_mb_s": round(raw_mb / self.encode_s, 3) if self.encode_s else None,
            "decode_mb_s": round(raw_mb / self.decode_s, 3) if self.decode_s else None,
            **self.notes,
        }


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _classic_codecs() -> dict[str, tuple[Callable, Callable]]:
    try:
        import imagecodecs as ic
    except ImportError:
        return {}
    return {
        "PNG (zlib 9)": (lambda a: ic.png_encode(a, level=9), ic.png_decode),
        "WebP lossless (m6)": (
            lambda a: ic.webp_encode(a, lossless=True, method=6, level=100),
            ic.webp_decode,
        ),
        "JPEG-XL lossless (e7)": (
            lambda a: ic.jpegxl_encode(a, lossless=True, effort=7),
            ic.jpegxl_decode,
        ),
    }


def _iodfz(pixels: np.ndarray, level: int) -> tuple[int, float, float, str]:
    h, w, _ = pixels.shape
    data = b"P6\n%d %d\n255\n" % (w, h) + pixels.tobytes()
    out = io.BytesIO()
    options = Options(level=level)
    result, enc_s = _timed(lambda: api.compress(io.BytesIO(data), out, options))
    back = io.BytesIO()
    _, dec_s = _timed(lambda: api.decompress(io.BytesIO(out.getvalue()), back))
    if back.getvalue() != data:
        raise AssertionError("iodfz round trip changed the file")
    return result.compressed_size, enc_s, dec_s, "neural" if result.codec == 2 else "zstd"


def bench_folder(folder: Path, levels: list[int], limit: int | None = None) -> list[dict]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    rows = {f"iodfz -{lv}": Row(f"iodfz -{lv}") for lv in levels}
    classic = _classic_codecs()
    rows.update({name: Row(name) for name in classic})
    exact = 0
    warm = np.zeros((32, 32, 3), np.uint8)
    for lv in levels:  # untimed: loading the model and checking its test vectors, once
        _iodfz(warm, lv)
    for path in files:
        data = path.read_bytes()
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        parsed = formats.parse(data)
        exact += parsed is not None
        for lv in levels:
            size, enc_s, dec_s, used = _iodfz(pixels, lv)
            row = rows[f"iodfz -{lv}"]
            row.notes[used] = row.notes.get(used, 0) + 1
            _add(row, size, pixels.size, enc_s, dec_s)
        for name, (encode, decode) in classic.items():
            blob, enc_s = _timed(partial(encode, pixels))
            back, dec_s = _timed(partial(decode, blob))
            if not np.array_equal(np.asarray(back).reshape(pixels.shape), pixels):
                raise AssertionError(f"{name} is not lossless on {path.name}")
            _add(rows[name], len(blob), pixels.size, enc_s, dec_s)
    out = [r.as_dict() for r in rows.values()]
    for r in out:
        if r["codec"].startswith("iodfz"):
            r["byte_exact_inputs"] = f"{exact}/{len(files)}"
    return out


def _add(row: Row, size: int, subpixels: int, enc_s: float, dec_s: float) -> None:
    row.bits += 8 * size
    row.subpixels += subpixels
    row.encode_s += enc_s
    row.decode_s += dec_s
    row.files += 1


def plot_rows(results: dict[str, list[dict]], path: Path) -> None:
    """bpsp against encode MB/s, one panel per image set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (title, rows) in zip(axes[0], results.items(), strict=True):
        for r in rows:
            ax.scatter(r["encode_mb_s"], r["bpsp"], label=r["codec"])
        ax.set_xscale("log")
        ax.set_xlabel("encode MB/s (raw pixels)")
        ax.set_ylabel("bits per sub-pixel")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# Runs the CLI and writes its own peak RSS (VmHWM, kB) to $HWM_FILE at exit. wait4's
# ru_maxrss would not do: Linux carries the forking parent's high-water mark over into the
# child, so a parent that loaded torch or a model would be measured instead.
_PEAK_RSS_WRAPPER = """
import atexit, os, runpy, sys
def report():
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM")).split()[1]
    with open(os.environ["HWM_FILE"], "w") as f:
        f.write(hwm)
atexit.register(report)
sys.argv = ["iodfz", *sys.argv[1:]]
runpy.run_module("iodfz", run_name="__main__")
"""


def run_cli_peak_rss(
    args: list[str], stdin: int | None = None, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """Run ``iodfz ARGS`` in a subprocess (Linux); (its peak RSS in MiB, wall seconds).
    Raises CalledProcessError if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        hwm_file = os.path.join(tmp, "hwm")
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", _PEAK_RSS_WRAPPER, *args],
            env={**(env or os.environ), "HWM_FILE": hwm_file},
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        seconds = time.perf_counter() - t
        with open(hwm_file) as f:
            return int(f.read()) / 1024, seconds
