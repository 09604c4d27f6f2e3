"""How many PNGs the formats layer reproduces byte-exactly, per encoder, and how fast.

Takes the images in a folder of PNGs (default: the kodak set), writes them with several PNG
encoders (the originals as they are, Pillow at several levels, libpng via imagecodecs, optipng
when installed) and parses each result. Prints one row per encoder: files, fraction reproduced
byte-exactly, median/max CPU time of the deflate-parameter search, median CPU time of a parse
and the most common deflate parameters found (CPU time, not wall time, so that a busy machine
does not inflate the figures; the search itself is bounded by work, see ``png.SEARCH_WORK``).
``--json`` prints the rows as JSON instead.

    .venv/bin/python scripts/png_reproduce_rate.py [--data DIR] [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from iodfz.formats import parse, png

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
STRATEGIES = {0: "default", 1: "filtered", 2: "huffman", 3: "rle", 4: "fixed"}

Encoder = Callable[[Path, np.ndarray], bytes]


def _pillow(level: int) -> Encoder:
    def encode(_: Path, pixels: np.ndarray) -> bytes:
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "PNG", compress_level=level)
        return out.getvalue()

    return encode


def _imagecodecs(level: int | None) -> Encoder:
    import imagecodecs

    return lambda _, pixels: imagecodecs.png_encode(pixels, level=level)


def _optipng(level: int) -> Encoder:
    def encode(_: Path, pixels: np.ndarray) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "image.png"
            Image.fromarray(pixels).save(path, compress_level=1)
            subprocess.run(["optipng", "-quiet", f"-o{level}", str(path)], check=True)
            return path.read_bytes()

    return encode


def encoders() -> Iterator[tuple[str, Encoder]]:
    yield "original files", lambda path, _: path.read_bytes()
    for level in (1, 6, 9):
        yield f"Pillow compress_level={level}", _pillow(level)
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        pass
    else:
        for ic_level in (None, 1, 9):
            yield f"imagecodecs.png_encode level={ic_level}", _imagecodecs(ic_level)
    if shutil.which("optipng"):
        for level in (1, 2):
            yield f"optipng -o{level}", _optipng(level)


def _idat(data: bytes) -> bytes:
    pos, parts = 8, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            parts.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return b"".join(parts)


def measure(name: str, encode: Encoder, files: list[Path]) -> dict[str, object]:
    exact, search_s, parse_s, params = 0, [], [], Counter()
    for path in files:
        data = encode(path, np.asarray(Image.open(path)))
        z = _idat(data)
        start = time.process_time()
        found = png.search_params(zlib.decompress(z), z)
        search_s.append(time.process_time() - start)
        start = time.process_time()
        got = parse(data)
        parse_s.append(time.process_time() - start)
        exact += got is not None and got.exact
        if found:
            level, mem_level, strategy, wbits = found
            params[f"level {level} mem {mem_level} {STRATEGIES[strategy]} wbits {wbits}"] += 1
    return {
        "encoder": name,
        "files": len(files),
        "exact_fraction": exact / len(files),
        "search_median_s": statistics.median(search_s),
        "search_max_s": max(search_s),
        "parse_median_s": statistics.median(parse_s),
        "params": params.most_common(1)[0][0] if params else "-",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of PNGs")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N files")
    ap.add_argument("--json", action="store_true", help="print JSON rows")
    args = ap.parse_args()
    files = sorted(args.data.glob("*.png"))[: args.limit or None]
    if not files:
        raise SystemExit(f"no PNG files in {args.data}")
    rows = [measure(name, encode, files) for name, encode in encoders()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'encoder':<36} {'files':>5} {'exact':>6} {'search med':>10} {'max':>6} {'parse med':>9}"
        "  (CPU seconds)"
    )
    for r in rows:
        print(
            f"{r['encoder']:<36} {r['files']:>5} {r['exact_fraction']:>6.0%} "
            f"{r['search_median_s']:>9.3f}s {r['search_max_s']:>5.2f}s {r['parse_median_s']:>8.3f}s"
            f"  {r['params']}"
        )


if __name__ == "__main__":
    main()
