"""Smooth content with grain: where full-resolution photos cost iodfz most against JPEG-XL.

Synthetic 256×256 RGB images, smooth sinusoids (or, with `--background flat`, a flat grey
128) plus Gaussian grain of standard deviation σ (seeded, rounded, clamped), compressed by the
`iodfz` CLI (whole `.iodf` files, checked byte-exact) and by JPEG-XL lossless e7
(imagecodecs); beside them the entropy of the rounded grain alone, which no codec can beat by
much on these images (on a flat background it is what an ideal codec spends). Needs no data.

    python scripts/bench_smooth.py [--sigma 0 1 2 4] [--background smooth flat] \
        [--level 3 ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from iodfz import machine
from iodfz.container import ImageShape, pnm_header

SIDE = 256


def smooth_image(sigma: float, seed: int = 0, background: str = "smooth") -> np.ndarray:
    """(SIDE, SIDE, 3) uint8: three smooth sinusoid planes (or flat grey 128) plus rounded
    N(0, σ²) grain."""
    if background == "flat":
        planes = np.full((SIDE, SIDE, 3), 128.0)
    else:
        y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
        planes = np.stack(
            [
                100 + 60 * np.sin(x / 40) + 30 * np.cos(y / 55),
                120 + 50 * np.sin((x + y) / 70),
                90 + 40 * np.cos(x / 35 - y / 80),
            ],
            axis=-1,
        )
    grain = np.random.default_rng(seed).normal(0.0, sigma, planes.shape) if sigma else 0.0
    return np.clip(np.round(planes + grain), 0, 255).astype(np.uint8)


def grain_entropy(sigma: float) -> float:
    """Bits per sample of N(0, σ²) rounded to integers (0 for no grain): each integer k has
    the probability of [k - ½, k + ½)."""
    if sigma == 0:
        return 0.0
    k = np.arange(-int(12 * sigma) - 1, int(12 * sigma) + 2)
    cdf = np.array([0.5 * (1 + math.erf(e / (sigma * math.sqrt(2)))) for e in k - 0.5])
    p = np.diff(np.append(cdf, 1.0))
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def iodfz_bpsp(image: np.ndarray, level: int, folder: Path) -> float:
    path = folder / "smooth.ppm"
    data = pnm_header(ImageShape(SIDE, SIDE, 3, 8)) + image.tobytes()
    path.write_bytes(data)
    packed = path.with_name(path.name + ".iodf")
    run = [sys.executable, "-m", "iodfz"]
    subprocess.run([*run, "compress", "-q", "-f", f"--level={level}", str(path)], check=True)
    back = subprocess.run([*run, "decompress", "-c", str(packed)], check=True, capture_output=True)
    if back.stdout != data:
        raise SystemExit("bench_smooth: iodfz did not give the file back byte-exact")
    return 8 * packed.stat().st_size / image.size


def jpegxl_bpsp(image: np.ndarray) -> float | None:
    try:
        import imagecodecs as ic
    except ImportError:
        return None
    blob = ic.jpegxl_encode(image, lossless=True, effort=7)
    if not np.array_equal(np.asarray(ic.jpegxl_decode(blob)).reshape(image.shape), image):
        raise SystemExit("bench_smooth: JPEG-XL was not lossless")
    return 8 * len(blob) / image.size


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sigma", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0])
    ap.add_argument(
        "--background", nargs="+", choices=["smooth", "flat"], default=["smooth", "flat"]
    )
    ap.add_argument("--level", type=int, nargs="+", default=[3], dest="levels")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for background in args.background:
            for sigma in args.sigma:
                image = smooth_image(sigma, background=background)
                row: dict = {
                    "background": background,
                    "sigma": sigma,
                    "grain_entropy": round(grain_entropy(sigma), 3),
                }
                for level in args.levels:
                    bpsp = iodfz_bpsp(image, level, Path(tmp))
                    row[f"iodfz --level {level}"] = round(bpsp, 3)
                jxl = jpegxl_bpsp(image)
                row["JPEG-XL e7"] = None if jxl is None else round(jxl, 3)
                rows.append(row)
    table = Table(title=f"{SIDE}×{SIDE} RGB backgrounds + grain σ, bits per sub-pixel")
    for col in rows[0]:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*("—" if v is None else str(v) for v in row.values()))
    table.caption = machine.caption()
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine.describe(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
