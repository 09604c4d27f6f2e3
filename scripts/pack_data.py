"""Build the training pack (iodfz.flow.data) from ../shared/data/train, or a smaller copy of a
pack that travels to a GPU machine.

    python scripts/pack_data.py --out runs/pack --max-regions 12000
    python scripts/pack_data.py --from runs/pack4 --out build/gpu-pack --max-regions 5000 \
        --max-smooth 1500 --max-whole 1500

Recipe 3 packs (12 000 regions and 3 774 smooth regions) were 87 MiB; recipe 4 adds 15
thumbnails per photo at 32 and 64 px. The device tool carries 64 MiB a call, the checkpoint
included: ``--from`` keeps at most --max-regions regions, --max-smooth smooth ones and
--max-whole thumbnails of each size, evenly over the photos, without touching ../shared.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iodfz.flow.data import SHARED, build_pack, load_pack, save_pack, subset_pack

CARRY_MIB = 64


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("runs/pack"))
    ap.add_argument("--max-regions", type=int, default=12000)
    ap.add_argument("--from", type=Path, dest="source", help="subset this pack instead")
    ap.add_argument("--max-smooth", type=int, default=4000, help="with --from")
    ap.add_argument(
        "--max-whole", type=int, default=3000, help="with --from: thumbnails of each size"
    )
    args = ap.parse_args()
    if args.source:
        pack = subset_pack(
            load_pack(args.source), args.max_regions, args.max_smooth, args.max_whole
        )
    else:
        pack = build_pack(SHARED, args.max_regions)
    save_pack(pack, args.out)
    size = sum(f.stat().st_size for f in args.out.iterdir()) / 2**20
    counts = {k: len(v) for k, v in pack.items() if k != "region_weights"}
    print(f"{args.out}: {counts}, {size:.1f} MiB")
    if size > CARRY_MIB:
        print(f"(over the device tool's {CARRY_MIB} MiB carry: lower --max-regions)")


if __name__ == "__main__":
    main()
