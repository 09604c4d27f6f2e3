"""Files across backends and end-to-end speed: every container a backend writes must be
byte-identical to the numpy reference's, and decode with the other backend; MB/s of raw pixels
through ``api.compress`` / ``api.decompress`` (after one untimed warm-up per backend).

    python scripts/check_backends.py FOLDER... [--backends numpy torch-cuda-int8 ...]
        [--limit N] [--level 4] [--json FILE]

Images are fed as PPM (their pixels), so every one takes the neural path. Meant for a lent GPU
machine (scripts/gpu_session.sh) but runs anywhere: unavailable backends are listed as such.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from iodfz import api, zoo
from iodfz.codecs import FLOW_FROM, Options
from iodfz.engine.backends import BACKEND_NAMES, BackendUnavailable, backend_for


def ppm(path: Path) -> bytes:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    return b"P6\n%d %d\n255\n" % (rgb.shape[1], rgb.shape[0]) + rgb.tobytes()


def compress(data: bytes, level: int) -> bytes:
    out = io.BytesIO()
    api.compress(io.BytesIO(data), out, Options(level=level))
    return out.getvalue()


def decompress(blob: bytes) -> bytes:
    out = io.BytesIO()
    api.decompress(io.BytesIO(blob), out)
    return out.getvalue()


def use(name: str) -> None:
    os.environ["IODFZ_BACKEND"] = name


def check(name: str, images: list[bytes], reference: list[bytes], level: int) -> dict:
    """One backend against the numpy reference's containers ``reference``."""
    use(name)
    try:
        backend_for(zoo.for_level(level))
    except BackendUnavailable as exc:
        return {"backend": name, "available": False, "reason": str(exc)}
    compress(images[0], level)  # warm-up: model load, test vectors, engine build
    mine, t_c, t_d, decoded = [], 0.0, 0.0, 0
    for data, theirs in zip(images, reference, strict=True):
        t = time.perf_counter()
        mine.append(compress(data, level))
        t_c += time.perf_counter() - t
        t = time.perf_counter()
        decoded += decompress(theirs) == data  # the reference's file, decoded here
        t_d += time.perf_counter() - t
    use("numpy")
    crosswise = sum(decompress(m) == d for m, d in zip(mine, images, strict=True))
    mb = sum(len(d) for d in images) / 1e6
    return {
        "backend": name,
        "available": True,
        "files": len(images),
        "identical_to_numpy": sum(m == r for m, r in zip(mine, reference, strict=True)),
        "numpy_files_decoded": decoded,
        "decoded_by_numpy": crosswise,
        "compress_mb_s": round(mb / t_c, 3),
        "decompress_mb_s": round(mb / t_d, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--backends", nargs="+", default=list(BACKEND_NAMES))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--level", type=int, default=FLOW_FROM)  # images through a flow
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    report = []
    for folder in args.folders:
        paths = sorted(folder.glob("*.png"))[: args.limit or None]
        images = [ppm(p) for p in paths]
        use("numpy")
        reference = [compress(d, args.level) for d in images]
        rows = [check(name, images, reference, args.level) for name in args.backends]
        report.append({"folder": str(folder), "level": args.level, "rows": rows})
        for r in rows:
            print(folder.name, json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
