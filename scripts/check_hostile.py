"""Hostile input, interrupted runs and full disks through the ``iodfz`` command line.

Each check runs the real CLI in subprocesses on files it makes itself (nothing from the
repository or ../shared/data) and counts outcomes: a clean failure is exit status 1 with one
``iodfz: FILE: reason`` line and no traceback; wrong data, a traceback, a hang, a temporary
file left behind or a touched input are each counted as a defect. Peak memory is the child's
own (``wait4``), so every run is measured whether it succeeds or not.

    python scripts/check_hostile.py [--runs 20] [--json out.json] [--update docs/RELIABILITY.md]

``--update`` rewrites the figures between the ``check_hostile`` markers of that file; the
exit status is 1 if any defect was found.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
TEMP_SUFFIX = ".iodfz-tmp"
BEGIN, END = "<!-- check_hostile:begin -->", "<!-- check_hostile:end -->"
MiB = 1 << 20


@dataclass
class Run:
    returncode: int
    stderr: str
    peak_mib: float
    seconds: float
    stdout: bytes = b""


def iodfz(
    *args: str | os.PathLike[str],
    stdin: int | None = None,
    timeout: float = 300,
    preexec: Callable[[], None] | None = None,
    feed: Callable[[int], None] | None = None,
) -> Run:
    """Run the CLI; ``feed(fd)`` writes its stdin from a thread. Peak RSS from ``wait4``."""
    read = write = None
    if feed is not None:
        read, write = os.pipe()
        stdin = read
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "iodfz", *map(str, args)],
        env=ENV,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec,
    )
    thread = None
    if feed is not None:
        os.close(read)  # type: ignore[arg-type]
        thread = threading.Thread(target=feed, args=(write,))
        thread.start()
    out, err = _communicate(proc, timeout)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if thread is not None:
        thread.join()
    seconds = time.perf_counter() - start
    return Run(proc.returncode, err.decode(errors="replace"), usage.ru_maxrss / 1024, seconds, out)


def _communicate(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bytes]:
    """Read both pipes to the end without reaping the child (``wait4`` does that)."""
    chunks: dict[int, list[bytes]] = {1: [], 2: []}

    def drain(stream, key: int) -> None:  # type: ignore[no-untyped-def]
        while data := stream.read(65536):
            chunks[key].append(data)

    readers = [
        threading.Thread(target=drain, args=(proc.stdout, 1)),
        threading.Thread(target=drain, args=(proc.stderr, 2)),
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + timeout
    for reader in readers:
        reader.join(max(0.0, deadline - time.monotonic()))
    if any(reader.is_alive() for reader in readers):
        proc.kill()
        for reader in readers:
            reader.join()
        chunks[2].append(b"\nHANG: killed after the timeout")
    return b"".join(chunks[1]), b"".join(chunks[2])


def clean_failure(run: Run) -> bool:
    lines = run.stderr.strip().splitlines()
    return (
        run.returncode == 1
        and len(lines) >= 1
        and all(line.startswith("iodfz: ") for line in lines)
        and "Traceback" not in run.stderr
    )


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


# --------------------------------------------------------------------------- inputs


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    planes = [120 + 60 * np.sin(y / (9 + 3 * c)) * np.cos(x / 13) for c in range(3)]
    pixels = np.stack(planes, axis=2) + rng.normal(0, 2, (h, w, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def ppm(pixels: np.ndarray) -> bytes:
    h, w, _ = pixels.shape
    return b"P6\n%d %d\n255\n" % (w, h) + pixels.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_zero_bomb(side: int) -> bytes:
    """A tiny PNG declaring ``side``² RGB pixels, all zero (IDAT deflated in one go)."""
    z = zlib.compressobj(9)
    row = bytes(1 + 3 * side)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def zeros_after(head: bytes, total: int) -> Callable[[int], None]:
    def feed(fd: int) -> None:
        block = bytes(MiB)
        with open(fd, "wb") as w:
            w.write(head)
            left = total - len(head)
            while left > 0:
                w.write(block[: min(left, MiB)])
                left -= MiB

    return feed


# --------------------------------------------------------------------------- checks


def check_damage(tmp: Path, runs: int, rng: random.Random) -> dict:
    """Flip a byte or cut the file, for a zstd and a neural container: ``test`` and
    ``decompress -c`` must fail cleanly or give the original bytes."""
    sources = {
        "text.txt": b"".join(b"line %d of a text\n" % i for i in range(20000)),
        "photo.ppm": ppm(photo(64, 96)),
    }
    outcomes: Counter[str] = Counter()
    peak = 0.0
    for name, data in sources.items():
        src = tmp / name
        src.write_bytes(data)
        iodfz("compress", "-f", "-q", src)
        blob = (tmp / f"{name}.iodf").read_bytes()
        for i in range(runs):
            damaged = bytearray(blob)
            if i % 3 == 2:
                damaged = damaged[: rng.randrange(len(blob))]
            else:
                damaged[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
            path = tmp / f"damaged{i}.iodf"
            path.write_bytes(bytes(damaged))
            for command in (("test",), ("decompress", "-c")):
                run = iodfz(*command, path, timeout=120)
                peak = max(peak, run.peak_mib)
                if run.returncode == 0:
                    same = command[0] == "test" or run.stdout == data
                    outcomes["decoded exactly" if same else "WRONG DATA"] += 1
                else:
                    outcomes["clean error" if clean_failure(run) else "UNCLEAN"] += 1
    return {"cases": 2 * 2 * runs, "outcomes": dict(outcomes), "peak_mib": round(peak)}


def check_streams(tmp: Path, size: int) -> dict:
    """Streams that start like an image but go on for ``size`` bytes of zeros."""
    png_head = b"\x89PNG\r\n\x1a\n" + png_chunk(
        b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)
    )
    heads = {
        "BMP header": b"BM" + bytes(40),
        "P5 header": b"P5 100 100 255\n",
        "PNG header": png_head,
        "TIFF header": b"II*\x00" + bytes(8),
        "no header": b"",
    }
    rows = {}
    for label, head in heads.items():
        run = iodfz("compress", "-c", feed=zeros_after(head, size))
        ok = run.returncode == 0 and "Traceback" not in run.stderr
        rows[label] = {"peak_mib": round(run.peak_mib), "ok": ok, "seconds": round(run.seconds, 1)}
    return {"stream_mib": size // MiB, "cases": rows}


def check_bombs(tmp: Path) -> dict:
    """PNGs declaring many all-zero pixels, and a container of 64 MiB zstd frames."""
    rows = {}
    for side in (4096,):
        path = tmp / f"bomb{side}.png"
        path.write_bytes(png_zero_bomb(side))
        run = iodfz("compress", "-f", "-q", path, timeout=600)
        back = iodfz("test", f"{path}.iodf") if run.returncode == 0 else run
        rows[f"PNG {side}x{side} zeros ({path.stat().st_size // 1024} KiB)"] = {
            "peak_mib": round(run.peak_mib),
            "seconds": round(run.seconds, 1),
            "ok": run.returncode == 0 and back.returncode == 0,
        }
    sys.path.insert(0, str(ROOT / "src"))
    from iodfz.container import CODEC_ZSTD, ContainerWriter, Header, frame_digest
    from iodfz.zstd_path import compressor

    frame = 64 * MiB
    packed = compressor(1).compress(bytes(frame))
    path = tmp / "frames.iodf"
    with open(path, "wb") as f:
        writer = ContainerWriter(f, Header(CODEC_ZSTD))
        for _ in range(40):
            writer.write_frame(CODEC_ZSTD, frame, frame_digest(bytes(frame)), packed)
        writer.finish()
    for threads in (1, 48):
        code = (
            "import sys; from iodfz import api;"
            f"api.test(open({str(path)!r}, 'rb'), threads={threads})"
        )
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code], env=ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        rows[f"40 x 64 MiB zstd frames ({path.stat().st_size // 1024} KiB), {threads} threads"] = {
            "peak_mib": round(usage.ru_maxrss / 1024),
            "seconds": round(time.perf_counter() - start, 1),
            "ok": os.waitstatus_to_exitcode(status) == 0,
        }
    return rows


def check_interruptions(tmp: Path, runs: int, rng: random.Random) -> dict:
    """A signal at a random moment (within 0.3 s of the temporary output's creation) of a
    compress or decompress of a 48 MiB file."""
    src = tmp / "big.bin"
    data = np.random.default_rng(5).integers(0, 8, 48 * MiB, dtype=np.uint8).tobytes()
    src.write_bytes(data)
    iodfz("compress", "-f", "-q", "-o", tmp / "ref.iodf", src)
    reference = (tmp / "ref.iodf").read_bytes()
    outcomes: Counter[str] = Counter()
    for i in range(runs):
        sig = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)[i % 3]
        decompress = i % 2 == 1
        out = tmp / ("out.bin" if decompress else "out.iodf")
        out.unlink(missing_ok=True)
        args = ["decompress", "-o", out, tmp / "ref.iodf"] if decompress else ["compress"]
        if not decompress:
            args += ["-o", out, src]
        proc = subprocess.Popen(
            [sys.executable, "-m", "iodfz", *map(str, args)],
            env=ENV,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 300
        while not temp_files(tmp) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # wait until the output is being written
        time.sleep(rng.uniform(0, 0.3))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        litter = temp_files(tmp)
        intact = src.read_bytes() == data
        if litter or not intact or b"Traceback" in err:
            outcomes["LITTER OR DAMAGE"] += 1
            for path in litter:
                path.unlink()
        elif proc.returncode == 0:
            outcomes["finished first"] += 1
        elif not out.exists():
            outcomes["stopped cleanly"] += 1
        elif out.read_bytes() == (data if decompress else reference):
            outcomes["stopped just after a complete output"] += 1
        else:
            outcomes["PARTIAL OUTPUT"] += 1
    return {"cases": runs, "outcomes": dict(outcomes)}


def check_disk_full(tmp: Path, runs: int) -> dict:
    """Output limited to a few sizes with RLIMIT_FSIZE (a full disk without root)."""
    src = tmp / "full.bin"
    data = os.urandom(6 * MiB)
    src.write_bytes(data)
    outcomes: Counter[str] = Counter()
    for i in range(runs):
        limit = (i + 1) * (6 * MiB) // (runs + 1)

        def cap(limit: int = limit) -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        for action, args in (
            ("compress", ["compress", "-f", src]),
            ("decompress", ["decompress", "-f", "-o", tmp / "back.bin", tmp / "ref6.iodf"]),
        ):
            if action == "decompress" and not (tmp / "ref6.iodf").exists():
                iodfz("compress", "-q", "-o", tmp / "ref6.iodf", src)
            run = iodfz(*args, preexec=cap)
            lines = run.stderr.strip().splitlines()
            named = len(lines) == 1 and ("full.bin.iodf:" in lines[0] or "back.bin:" in lines[0])
            if temp_files(tmp) or src.read_bytes() != data:
                outcomes["LITTER OR DAMAGE"] += 1
            elif run.returncode == 0:
                outcomes["fitted"] += 1
            elif clean_failure(run) and named:
                outcomes["clean error naming the output"] += 1
            else:
                outcomes["UNCLEAN"] += 1
    return {"cases": 2 * runs, "outcomes": dict(outcomes)}


# --------------------------------------------------------------------------- report


def defects(results: dict) -> int:
    found = 0
    for name in ("damage", "interruptions", "disk_full"):
        found += sum(n for k, n in results[name]["outcomes"].items() if k.isupper())
    found += sum(not row["ok"] for row in results["streams"]["cases"].values())
    found += sum(not row["ok"] for row in results["bombs"].values())
    return found


def markdown(results: dict) -> str:
    lines = [
        f"Measured by `python scripts/check_hostile.py --runs {results['runs']} --stream-mib "
        f"{results['streams']['stream_mib']}` on "
        f"{results['machine']} ({results['date']}); peak memory is each process's own "
        "(`wait4` ru_maxrss); times are in `--json` only (the machine is shared). Outcomes in "
        "capitals would be defects.",
        "",
        "| check | cases | outcomes |",
        "|---|---|---|",
    ]
    for name, label in (
        ("damage", "damaged containers (bit flips, cuts), `test` and `decompress -c`"),
        ("interruptions", "SIGTERM / SIGINT / SIGHUP while writing, 48 MiB file"),
        ("disk_full", "output capped by RLIMIT_FSIZE (full disk), compress and decompress"),
    ):
        row = results[name]
        text = ", ".join(f"{k} {v}" for k, v in sorted(row["outcomes"].items()))
        lines.append(f"| {label} | {row['cases']} | {text} |")
    lines += ["", "| hostile input | peak memory | outcome |", "|---|---|---|"]
    streams = results["streams"]
    for label, row in streams["cases"].items():
        outcome = "compressed, exact" if row["ok"] else "FAILED"
        what = f"{streams['stream_mib']} MiB stream on stdin, {label}"
        lines.append(f"| {what} | {row['peak_mib']} MiB | {outcome} |")
    for label, row in results["bombs"].items():
        outcome = "ok" if row["ok"] else "FAILED"
        lines.append(f"| {label} | {row['peak_mib']} MiB | {outcome} |")
    lines.append(f"\nDefects found: {results['defects']}.")
    return "\n".join(lines)


def update(doc: Path, text: str) -> None:
    content = doc.read_text()
    start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
    doc.write_text(content[:start] + "\n" + text + "\n" + content[end:])


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=20, help="cases per randomised check")
    ap.add_argument("--stream-mib", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--update", type=Path, help="rewrite the figures in this markdown file")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        results: dict = {
            "runs": args.runs,
            "machine": f"{os.cpu_count()} CPUs, {os.uname().machine}",
            "date": time.strftime("%Y-%m-%d"),
        }
        steps: dict[str, Callable[[], dict]] = {
            "damage": lambda: check_damage(tmp, args.runs, rng),
            "streams": lambda: check_streams(tmp, args.stream_mib * MiB),
            "bombs": lambda: check_bombs(tmp),
            "interruptions": lambda: check_interruptions(tmp, args.runs, rng),
            "disk_full": lambda: check_disk_full(tmp, max(1, args.runs // 2)),
        }
        for key, step in steps.items():
            start = time.perf_counter()
            results[key] = step()
            print(f"{key}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    results["defects"] = defects(results)
    text = markdown(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.update:
        update(args.update, text)
    return 1 if results["defects"] else 0


if __name__ == "__main__":
    sys.exit(main())
