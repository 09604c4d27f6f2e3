"""Every file of ../shared/data round-trips byte-exactly through the iodfz CLI.

Compresses each folder with `iodfz compress -r --output-dir`, decompresses the result into a
second tree and compares every file with its original. `--sample N` checks N files per
folder (what CI does); the default checks all of them.

    python scripts/check_data_roundtrip.py [--sample 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sample", type=int, default=0, help="files per folder (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    folders = sorted({p.parent for p in args.data.rglob("*") if p.is_file()})
    failures = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        src, packed, unpacked = Path(tmp, "src"), Path(tmp, "packed"), Path(tmp, "unpacked")
        for folder in folders:
            files = sorted(p for p in folder.iterdir() if p.is_file())
            for path in files[: args.sample or None]:
                dst = src / path.relative_to(args.data)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dst)
                total += 1
        iodfz = [sys.executable, "-m", "iodfz"]
        threads = ["-T", str(args.threads), "-q"]
        subprocess.run(
            [*iodfz, "compress", "-r", *threads, "--output-dir", str(packed), str(src)], check=False
        )
        subprocess.run(
            [*iodfz, "decompress", "-r", *threads, "--output-dir", str(unpacked), str(packed)],
            check=False,
        )
        restored_files = {str(p): p for p in unpacked.rglob("*") if p.is_file()}
        for original in src.rglob("*"):
            if original.is_file():
                tail = str(original.relative_to(src))
                restored = next((p for k, p in restored_files.items() if k.endswith(tail)), None)
                if restored is None or not filecmp.cmp(original, restored, shallow=False):
                    print(f"MISMATCH {original.relative_to(src)}")
                    failures += 1
    print(f"{total - failures}/{total} files round-trip byte-exactly")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
