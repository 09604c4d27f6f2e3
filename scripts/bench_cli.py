"""The ratio and speed bar as a user meets it: a set's pixels as binary PPM files, compressed
and decompressed by ONE `iodfz` command each (all files in one call), whole `.iodf` files,
every file checked byte-exact; JPEG-XL lossless e7 (imagecodecs) on the same pixels, timed in
the same run, beside it. Besides wall-clock MB/s, the CPU seconds (user + system) each call
took: on a shared machine they move less than the wall clock. With ``--repeat N`` each call
runs N times, interleaved with JPEG-XL's, and the table gives medians (this machine's speed
swings by a quarter from one call to the next).

    python scripts/bench_cli.py [--sets kodak dev/imagenet32 dev/imagenet64 kodak/odd-sizes]
        [--level 3 ...] [--repeat N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from iodfz import machine

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "kodak": DATA / "kodak",
    "dev/imagenet32": DATA / "dev" / "imagenet32",
    "dev/imagenet64": DATA / "dev" / "imagenet64",
    "kodak/odd-sizes": DATA / "kodak",
}


def load_set(name: str) -> list[np.ndarray]:
    """A set's RGB images. ``kodak/odd-sizes``: one crop of each Kodak image, of a size drawn
    from [160, 512) × [160, 768) (seeded by the image's index) — photos of every size, most
    of them not multiples of 32 (the flow's tiles are), unlike the three public sets."""
    files = sorted(SETS[name].glob("*.png"))
    images = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    if name != "kodak/odd-sizes":
        return images
    crops = []
    for i, a in enumerate(images):
        rng = np.random.default_rng(i)
        h, w = int(rng.integers(160, min(512, a.shape[0]))), int(rng.integers(160, 768))
        h, w = min(h, a.shape[0]), min(w, a.shape[1])
        y, x = int(rng.integers(0, a.shape[0] - h + 1)), int(rng.integers(0, a.shape[1] - w + 1))
        crops.append(np.ascontiguousarray(a[y : y + h, x : x + w]))
    return crops


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# What the installed ``iodfz`` command runs (its console script), with this interpreter, so
# that PYTHONPATH picks the tree under test: ``python -m iodfz`` would add runpy's imports
# (~15 ms a call), which a user of the command never pays.
COMMAND = [sys.executable, "-c", "import sys; from iodfz.cli import main; sys.exit(main())"]


def iodfz(*args: str) -> tuple[float, float]:
    """Run the CLI; (wall, CPU) seconds. Raises CalledProcessError if it fails."""
    t, cpu = time.perf_counter(), _children_cpu()
    subprocess.run([*COMMAND, *args], check=True)
    return time.perf_counter() - t, _children_cpu() - cpu


def bench_set(name: str, levels: list[int], repeat: int = 1) -> list[dict]:
    """Each level's calls, then JPEG-XL's, ``repeat`` times over (interleaved, so that both
    meet the machine's swings alike); each row gives the median of its runs."""
    images = load_set(name)
    subpixels = sum(a.size for a in images)
    try:
        import imagecodecs as ic
    except ImportError:
        ic = None
    runs: dict[str, tuple[list[tuple[float, float]], list[tuple[float, float]]]] = {}
    sizes: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ppms = []
        for i, a in enumerate(images):
            path = Path(tmp) / f"{i:03d}.ppm"
            path.write_bytes(b"P6\n%d %d\n255\n" % (a.shape[1], a.shape[0]) + a.tobytes())
            ppms.append(path)
        originals = {p: p.read_bytes() for p in ppms}
        for _ in range(repeat):
            for level in levels:
                label = f"iodfz --level {level}"
                enc = iodfz("compress", "-q", "-f", f"--level={level}", *map(str, ppms))
                packed = [p.with_name(p.name + ".iodf") for p in ppms]
                sizes[label] = sum(p.stat().st_size for p in packed)
                for p in ppms:
                    p.unlink()
                dec = iodfz("decompress", "-q", "-f", *map(str, packed))
                if any(p.read_bytes() != data for p, data in originals.items()):
                    raise SystemExit(f"bench_cli: {name}: a file did not come back byte-exact")
                runs.setdefault(label, ([], []))[0].append(enc)
                runs[label][1].append(dec)
            if ic is not None:
                label = "JPEG-XL e7 (in process)"
                sizes[label], enc, dec = _jpegxl(ic, images)
                runs.setdefault(label, ([], []))[0].append(enc)
                runs[label][1].append(dec)
    return [
        _row(label, sizes[label], subpixels, enc, dec, len(images))
        for label, (enc, dec) in runs.items()
    ]


def _jpegxl(
    ic: Any, images: list[np.ndarray]
) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """JPEG-XL lossless e7 of every image, each checked: (bytes, encode and decode (wall,
    CPU) seconds)."""
    size = 0.0
    enc, dec = [0.0, 0.0], [0.0, 0.0]
    for a in images:
        t, cpu = time.perf_counter(), time.process_time()
        blob = ic.jpegxl_encode(a, lossless=True, effort=7)
        enc[0] += time.perf_counter() - t
        enc[1] += time.process_time() - cpu
        t, cpu = time.perf_counter(), time.process_time()
        back = ic.jpegxl_decode(blob)
        dec[0] += time.perf_counter() - t
        dec[1] += time.process_time() - cpu
        if not np.array_equal(np.asarray(back).reshape(a.shape), a):
            raise SystemExit("bench_cli: JPEG-XL was not lossless")
        size += len(blob)
    return size, (enc[0], enc[1]), (dec[0], dec[1])


#: The row keys the table shows, after the set and codec (the JSON has every run too).
_TABLE_KEYS = (
    "files",
    "bpsp",
    "encode_mb_s",
    "decode_mb_s",
    "encode_cpu_s",
    "decode_cpu_s",
    "runs",
)


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The median wall and the median CPU seconds of some runs."""
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def _row(
    codec: str,
    size: float,
    subpixels: int,
    enc_runs: Sequence[tuple[float, float]],
    dec_runs: Sequence[tuple[float, float]],
    files: int,
) -> dict:
    """A table row from the (wall, CPU) seconds of each run's encoding and decoding: their
    medians, and (in the JSON only) every run's wall-clock MB/s, to show the spread."""
    mb = subpixels / 1e6
    enc, dec = _median(list(enc_runs)), _median(list(dec_runs))
    return {
        "codec": codec,
        "files": files,
        "bpsp": round(8 * size / subpixels, 4),
        "encode_mb_s": round(mb / enc[0], 3),
        "decode_mb_s": round(mb / dec[0], 3),
        "encode_cpu_s": round(enc[1], 3),
        "decode_cpu_s": round(dec[1], 3),
        "runs": len(enc_runs),
        "encode_mb_s_runs": [round(mb / wall, 3) for wall, _ in enc_runs],
        "decode_mb_s_runs": [round(mb / wall, 3) for wall, _ in dec_runs],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--level", type=int, nargs="+", default=[3], dest="levels")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs of each call; the table gives their median"
    )
    args = ap.parse_args()
    results = {}
    for name in args.sets:
        if not SETS[name].is_dir():
            print(f"{name}: {SETS[name]} not found, skipped")
            continue
        results[name] = bench_set(name, args.levels, args.repeat)
    runs = "" if args.repeat == 1 else f", median of {args.repeat} runs"
    table = Table(title=f"through the CLI, one call per set and direction{runs} (MB/s of pixels)")
    columns = ("encode MB/s", "decode MB/s", "encode CPU s", "decode CPU s", "runs")
    for col in ("set", "codec", "files", "bpsp", *columns):
        table.add_column(col, justify="left" if col in ("set", "codec") else "right")
    for name, rows in results.items():
        for r in rows:
            table.add_row(name, r["codec"], *(str(r[k]) for k in _TABLE_KEYS))
    table.caption = machine.caption()
    Console(width=max(130, Console().width)).print(table)
    if args.json:
        out = {"machine": machine.describe(), "sets": results}
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
