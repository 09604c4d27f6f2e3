"""Benchmark the iodfz zstd path against the zstandard library at the same level.

Generates a mixed file (text, binaries from /usr/bin, random bytes, zeros; fixed seed) in a
temporary directory, then times compression and decompression with both, best of ``--repeat``
runs: in memory by default, file to file with ``--files``. Both use the same level and number
of threads (zstandard's multi-threaded streaming compressor vs iodfz's frame-parallel one).
iodfz does more work than bare zstd (SHA-256 of all data, CRC-32 of every record), so the
interesting number is how close it gets.

    python scripts/bench_zstd.py [--size-mb 100] [--level 3] [--threads 0] [--files] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import zstandard
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from iodfz import api, machine
from iodfz.codecs import Options

MiB = 1 << 20
_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "this",
    "be",
    "it",
    "are",
    "an",
    "or",
    "which",
    "file",
    "data",
    "compress",
    "stream",
    "frame",
    "header",
    "length",
    "checksum",
    "model",
    "image",
    "pixel",
    "neural",
    "integer",
    "flow",
    "entropy",
    "coder",
    "table",
    "symbol",
    "probability",
    "bound",
    "memory",
    "thread",
    "level",
    "ratio",
    "throughput",
    "benchmark",
]


def make_mixed(path: Path, size: int, seed: int = 1234) -> None:
    """Write ``size`` bytes: 1 MiB blocks of text, binaries, random and zeros, shuffled."""
    rng = random.Random(seed)
    blocks = size // MiB
    kinds = ["text", "binary", "random", "zeros"] * (blocks // 4 + 1)
    kinds = kinds[:blocks]
    rng.shuffle(kinds)
    binaries = _binary_source()
    with open(path, "wb") as f:
        for kind in kinds:
            if kind == "text":
                words = rng.choices(_WORDS, k=MiB // 5)
                block = " ".join(words).encode()[:MiB].ljust(MiB, b"\n")
            elif kind == "binary":
                block = next(binaries)
            elif kind == "random":
                block = rng.randbytes(MiB)
            else:
                block = bytes(MiB)
            f.write(block)
        f.write(bytes(size - blocks * MiB))


def _binary_source():  # type: ignore[no-untyped-def]
    """Endless 1 MiB blocks cut from the files in /usr/bin, in name order."""
    paths = sorted(p for p in Path("/usr/bin").iterdir() if p.is_file() and not p.is_symlink())
    buffer = b""
    while True:
        for p in paths:
            try:
                buffer += p.read_bytes()
            except OSError:
                continue
            while len(buffer) >= MiB:
                yield buffer[:MiB]
                buffer = buffer[MiB:]
        if not buffer and not paths:
            raise RuntimeError("no readable files in /usr/bin")


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class _Sink:
    """Discards what is written (decompression output in memory mode)."""

    def write(self, data: bytes) -> int:
        return len(data)


def run(size_mb: int, level: int, threads: int, repeat: int, files: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="iodfz-bench-") as tmp:
        d = Path(tmp)
        src = d / "mixed.bin"
        make_mixed(src, size_mb * MiB)
        data = src.read_bytes()
        options = Options(level=level, threads=threads)
        zthreads = -1 if threads == 0 else threads
        packed: dict[str, bytes] = {}

        # Memory mode times the codecs alone (input in RAM, output to a BytesIO or a sink):
        # on a shared machine, file writes add noise larger than the differences measured.
        def iodfz_c() -> None:
            if files:
                api.compress_file(src, d / "a.iodf", options, force=True)
            else:
                out = io.BytesIO()
                api.compress(io.BytesIO(data), out, options)
                packed["iodfz"] = out.getvalue()

        def iodfz_d() -> None:
            if files:
                api.decompress_file(d / "a.iodf", d / "a.out", force=True, threads=threads)
            else:
                api.decompress(io.BytesIO(packed["iodfz"]), _Sink(), threads=threads)  # type: ignore[arg-type]

        def zstd_c() -> None:
            cctx = zstandard.ZstdCompressor(level=level, threads=zthreads)
            if files:
                with open(src, "rb") as fin, open(d / "a.zst", "wb") as fout:
                    cctx.copy_stream(fin, fout)
            else:
                out = io.BytesIO()
                cctx.copy_stream(io.BytesIO(data), out)
                packed["zstd"] = out.getvalue()

        def zstd_d() -> None:
            dctx = zstandard.ZstdDecompressor()
            if files:
                with open(d / "a.zst", "rb") as fin, open(d / "z.out", "wb") as fout:
                    dctx.copy_stream(fin, fout)
            else:
                dctx.copy_stream(io.BytesIO(packed["zstd"]), _Sink())

        # Interleave the two tools so that background load affects both alike.
        timings: dict[str, list[float]] = {k: [] for k in ("ic", "zc", "id", "zd")}
        for _ in range(repeat):
            timings["ic"].append(timed(iodfz_c))
            timings["zc"].append(timed(zstd_c))
            timings["id"].append(timed(iodfz_d))
            timings["zd"].append(timed(zstd_d))
        if files:
            packed = {"iodfz": (d / "a.iodf").read_bytes(), "zstd": (d / "a.zst").read_bytes()}
            assert (d / "a.out").read_bytes() == data == (d / "z.out").read_bytes()
        else:
            out = io.BytesIO()
            api.decompress(io.BytesIO(packed["iodfz"]), out)
            back = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(packed["zstd"])).read()
            assert out.getvalue() == data == back
        size = len(data)
    results: dict[str, dict[str, float]] = {}
    for tool, c, dd in (("iodfz", "ic", "id"), ("zstd", "zc", "zd")):
        results[tool] = {
            "compress_MBps": size / min(timings[c]) / 1e6,
            "decompress_MBps": size / min(timings[dd]) / 1e6,
            "compressed_bytes": len(packed[tool]),
            "ratio": size / len(packed[tool]),
        }
    rel = {
        key: results["iodfz"][key] / results["zstd"][key]
        for key in ("compress_MBps", "decompress_MBps", "ratio")
    }
    return {
        "input_bytes": size,
        "mode": "files" if files else "memory",
        "level": level,
        "threads": threads,
        "machine": machine.describe(),
        "load_average": os.getloadavg()[0],
        "repeat": repeat,
        "zstandard_version": zstandard.__version__,
        "results": results,
        "iodfz_relative_to_zstd": rel,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="zstd threads (0: all cores)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", action="store_true", help="time file to file, not in memory")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    report = run(args.size_mb, args.level, args.threads, args.repeat, args.files)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    table = Table(
        title=f"{report['input_bytes'] / 1e6:.0f} MB mixed file, {report['mode']}, level "
        f"{args.level}, threads {args.threads or 'all'} ({report['cpus']} CPUs, load "
        f"{report['load_average']:.1f}), best of {args.repeat}"
    )
    for column in ("tool", "compress MB/s", "decompress MB/s", "ratio", "size"):
        table.add_column(column, justify="left" if column == "tool" else "right")
    results = report["results"]
    assert isinstance(results, dict)
    for tool, r in results.items():
        table.add_row(
            tool,
            f"{r['compress_MBps']:.0f}",
            f"{r['decompress_MBps']:.0f}",
            f"{r['ratio']:.4f}",
            f"{r['compressed_bytes']:,}",
        )
    rel = report["iodfz_relative_to_zstd"]
    assert isinstance(rel, dict)
    table.add_row(
        "iodfz / zstd",
        f"{rel['compress_MBps']:.1%}",
        f"{rel['decompress_MBps']:.1%}",
        f"{rel['ratio']:.2%}",
        "",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
