"""Build the training pack (iodfz.flow.data) from ../shared/data/train.

    python scripts/pack_data.py --out runs/pack --max-regions 12000

Recipe 2 packs were ≈ 60 MiB; recipe 3 adds ≈ 3 800 smooth regions (≈ 82 MiB in all). The
device tool carries 64 MiB a call: for a GPU machine, lower --max-regions (≈ 8 000 fit).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iodfz.flow.data import SHARED, build_pack, save_pack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("runs/pack"))
    ap.add_argument("--max-regions", type=int, default=12000)
    args = ap.parse_args()
    pack = build_pack(SHARED, args.max_regions)
    save_pack(pack, args.out)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    counts = {k: len(v) for k, v in pack.items()}
    print(f"{args.out}: {counts}, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
