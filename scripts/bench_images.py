"""The full image benchmark: iodfz next to PNG, WebP and JPEG-XL lossless on kodak,
dev/imagenet32 and dev/imagenet64 (../shared/data), measured in the same run; a table per
set, the published JPEG-XL figures of ../shared/data/README.md beside them, JSON and a plot.

    python scripts/bench_images.py [--limit N] [--levels 1 3] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from iodfz import machine, zoo
from iodfz.bench import bench_folder, plot_rows
from iodfz.cli_extra import rows_table

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "kodak": DATA / "kodak",
    "dev/imagenet32": DATA / "dev" / "imagenet32",
    "dev/imagenet64": DATA / "dev" / "imagenet64",
}
# ../shared/data/README.md (libjxl via imagecodecs 2026.3.6), bits per sub-pixel
JPEG_XL_E7 = {"kodak": 2.902, "dev/imagenet32": 4.597, "dev/imagenet64": 4.113}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--limit", type=int, default=0, help="first N images of each set (0: all)")
    ap.add_argument("--levels", type=int, nargs="+", help="default: one per shipped model")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--plot", type=Path, help="bpsp vs encode MB/s plot (PNG)")
    args = ap.parse_args()
    console = Console()
    results = {}
    for name in args.sets:
        folder = SETS[name]
        if not folder.is_dir():
            console.print(f"{name}: {folder} not found, skipped")
            continue
        rows = bench_folder(folder, args.levels or zoo.first_levels(), args.limit or None)
        results[name] = rows
        console.print(
            rows_table(f"{name} (JPEG-XL e7 in data/README.md: {JPEG_XL_E7[name]})", rows)
        )
    console.print(machine.caption())
    if args.json:
        out = {"machine": machine.describe(), "sets": results}
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if args.plot and results:
        plot_rows(results, args.plot)


if __name__ == "__main__":
    main()
