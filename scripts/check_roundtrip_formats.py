"""Parse and rebuild every file under a folder with iodfz.formats; report what round-trips.

For each file: its sniffed format, whether parse handled it (byte-exact, pixel-exact or not),
the side-info size and the time taken. A file fails when parse raises, or when an exact result
does not rebuild to the original bytes. Exit status 1 if any file failed.

    .venv/bin/python scripts/check_roundtrip_formats.py DIR [--pixels] [--quiet]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from iodfz.formats import parse, rebuild, sniff


def check(path: Path, allow_pixel_exact: bool) -> tuple[str, str, int, float]:
    """(format, outcome, side bytes, seconds) for one file."""
    data = path.read_bytes()
    fmt = sniff(data[:32]) or "-"
    start = time.perf_counter()
    try:
        got = parse(data, allow_pixel_exact=allow_pixel_exact)
        if got is None:
            outcome = "not handled"
        elif not got.exact:
            outcome = "pixel-exact"
        elif rebuild(got.fmt, got.pixels, got.side) == data:
            outcome = "exact"
        else:
            outcome = "FAIL: rebuild differs"
    except Exception as exc:  # the point of this script is to report any exception
        got, outcome = None, f"FAIL: {type(exc).__name__}: {exc}"
    return fmt, outcome, len(got.side) if got else 0, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--pixels", action="store_true", help="allow pixel-exact PNG results")
    ap.add_argument("--quiet", action="store_true", help="print only the summary")
    args = ap.parse_args()
    summary: Counter[tuple[str, str]] = Counter()
    failed = False
    for path in sorted(p for p in args.folder.rglob("*") if p.is_file()):
        fmt, outcome, side, seconds = check(path, args.pixels)
        summary[fmt, outcome.split(":")[0]] += 1
        failed |= outcome.startswith("FAIL")
        if not args.quiet:
            print(f"{fmt:>4}  {outcome:<14} side {side:>8} B  {seconds:6.3f}s  {path}")
    for (fmt, outcome), count in sorted(summary.items()):
        print(f"{fmt:>4}  {outcome:<14} {count}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
