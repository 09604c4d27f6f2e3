"""Peak memory of compressing and decompressing a large image through the CLI.

Generates a photo-like PPM (default 6000×4000 = 24 megapixels), runs `iodfz compress` and
`iodfz decompress` on it in subprocesses that report their own peak RSS (VmHWM), checks the
round trip and prints peak MiB and MB/s for both.

    python scripts/check_memory.py [--width 6000 --height 4000] [--limit-mib 2048]
"""

from __future__ import annotations

import argparse
import filecmp
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from iodfz.bench import run_cli_peak_rss


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random shapes plus noise, built tile-free in bounded memory."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 12, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 18, w, dtype=np.float32)[None, :]
    out = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        a, b, p = rng.uniform(0.5, 2.0, 3)
        plane = 120 + 60 * np.sin(a * y + p) * np.cos(b * x) + 15 * np.sin(3 * a * x * y / 20)
        plane += rng.normal(0, 1.5, (h, w)).astype(np.float32)
        out[..., c] = np.clip(plane, 0, 255)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--limit-mib", type=float, default=2048)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "big.ppm")
        pixels = photo_like(args.height, args.width)
        src.write_bytes(b"P6\n%d %d\n255\n" % (args.width, args.height) + pixels.tobytes())
        del pixels
        raw_mb = src.stat().st_size / 1e6
        peak_c, sec_c = run_cli_peak_rss(["compress", "-q", "-f", str(src)])
        packed = Path(f"{src}.iodf")
        peak_d, sec_d = run_cli_peak_rss(
            ["decompress", "-q", "-f", "-o", str(Path(tmp, "back.ppm")), str(packed)]
        )
        same = filecmp.cmp(src, Path(tmp, "back.ppm"), shallow=False)
        iodfz_info = [sys.executable, "-m", "iodfz", "info", str(packed)]
        info = subprocess.run(iodfz_info, capture_output=True, text=True, check=False)
        print(info.stdout.strip())
        verdict = "ok" if same else "FAILED"
        print(f"{args.width}x{args.height}:")
        print(f"  compress   peak {peak_c:.0f} MiB, {raw_mb / sec_c:.2f} MB/s")
        print(
            f"  decompress peak {peak_d:.0f} MiB, {raw_mb / sec_d:.2f} MB/s; round trip {verdict}"
        )
        return 0 if same and max(peak_c, peak_d) < args.limit_mib else 1


if __name__ == "__main__":
    sys.exit(main())
