"""The zstd path: byte-exact round trips, stored frames, bounded memory."""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import pytest

from iodfz import api
from iodfz.bench import run_cli_peak_rss
from iodfz.codecs import Options
from iodfz.container import (
    CODEC_STORED,
    CODEC_ZSTD,
    FRAME_SIZE,
    MIN_HEADER,
    content_digest,
)
from iodfz.errors import IodfError
from iodfz.zstd_path import read_chunks

SRC = Path(__file__).resolve().parents[1] / "src"


def round_trip(data: bytes, options: Options | None = None, **kwargs: object) -> api.ContainerInfo:
    packed = io.BytesIO()
    result = api.compress(io.BytesIO(data), packed, options or Options(threads=1), **kwargs)
    assert result.original_size == len(data)
    assert result.compressed_size == len(packed.getvalue())
    frames = [data[i : i + FRAME_SIZE] for i in range(0, len(data), FRAME_SIZE)]
    if "frame_size" not in kwargs:
        digests = [hashlib.sha256(f).digest()[:16] for f in frames]
        assert result.digest == content_digest(digests)
        if len(frames) != 1:
            joined = b"".join(digests)
            assert result.digest == hashlib.sha256(joined).digest()[:16]
    out = io.BytesIO()
    info = api.decompress(io.BytesIO(packed.getvalue()), out)
    assert out.getvalue() == data
    assert info.verified and info.original_size == len(data)
    return info


def test_every_small_length() -> None:
    rng = random.Random(1)
    for n in range(301):
        round_trip(bytes(rng.getrandbits(8) for _ in range(n)))
        round_trip(b"ab" * (n // 2))


@pytest.mark.parametrize(
    "data",
    [b"", b"\0", b"x", os.urandom(100_000), b"The quick brown fox. " * 20_000, bytes(1 << 20)],
    ids=["empty", "zero", "x", "random", "text", "zeros"],
)
def test_round_trip(data: bytes) -> None:
    round_trip(data)


def test_binaries_from_usr_bin() -> None:
    paths = sorted(p for p in Path("/usr/bin").iterdir() if p.is_file() and not p.is_symlink())
    small = sorted((p for p in paths if p.stat().st_size < 8 << 20), key=lambda p: p.stat().st_size)
    assert small
    picked = small[:: max(1, len(small) // 10)] + small[-2:]  # spread of sizes, and the largest
    for path in picked:
        round_trip(path.read_bytes())


@pytest.mark.parametrize("level", [1, 3, 19])
def test_levels(level: int) -> None:
    round_trip(b"level test " * 5000, Options(level=level, threads=1))


def test_multithreaded_and_many_frames() -> None:
    data = os.urandom(50_000) * 20 + b"tail"
    info = round_trip(data, Options(threads=2), frame_size=64 * 1024)
    assert sum(info.frame_codecs.values()) == -(-len(data) // (64 * 1024))


def test_incompressible_frames_are_stored_with_tiny_overhead() -> None:
    data = os.urandom(300_000)
    packed = io.BytesIO()
    api.compress(io.BytesIO(data), packed, Options(threads=1), frame_size=100_000)
    overhead = len(packed.getvalue()) - len(data)
    # FORMAT.md 1.6: frames "F", codec, 3 + 3 bytes of lengths, digest, CRC; end record "E",
    # count, 3 bytes of length, content digest, CRC.
    assert overhead == MIN_HEADER + 3 * (1 + 1 + 3 + 3 + 16 + 4) + (1 + 1 + 3 + 16 + 4)
    info = api.info(io.BytesIO(packed.getvalue()))
    assert info.frame_codecs == {CODEC_STORED: 3}


def test_stored_and_zstd_decided_per_frame() -> None:
    data = os.urandom(4096) + bytes(4096) + os.urandom(4096)
    info = round_trip(data, frame_size=4096)
    assert info.frame_codecs == {CODEC_STORED: 2, CODEC_ZSTD: 1}


def test_read_chunks_with_long_prefix_and_pipe_like_source() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:  # at most 7 bytes per call, like a pipe
            out, self.data = self.data[: min(n, 7)], self.data[min(n, 7) :]
            return out

    chunks = list(read_chunks(Trickle(b"0123456789" * 5), 16, prefix=b"P" * 40))  # type: ignore[arg-type]
    assert b"".join(chunks) == b"P" * 40 + b"0123456789" * 5
    assert [len(c) for c in chunks] == [16] * 5 + [10]
    assert list(read_chunks(io.BytesIO(b""), 16)) == []
    assert list(read_chunks(io.BytesIO(b"a" * 32), 16)) == [b"a" * 16] * 2


def test_file_size_change_is_detected(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"abc")
    with open(src, "rb") as f:
        meta = api.file_metadata(f, src)
        meta["length"] = 10  # as if the file shrank after fstat
        with pytest.raises(IodfError, match="changed size"):
            api.compress(f, io.BytesIO(), **meta)


def _peak_rss_mib(args: list[str], stdin: int | None = None) -> float:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return run_cli_peak_rss(args, stdin=stdin, env=env)[0]


def test_200mb_sparse_file_in_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "sparse.bin"
    with open(big, "wb") as f:
        f.truncate(200 << 20)
        f.seek(100 << 20)
        f.write(b"marker in the middle")
    peak_c = _peak_rss_mib(["compress", "-q", str(big)])
    packed = tmp_path / "sparse.bin.iodf"
    assert packed.stat().st_size < 1 << 20
    out = tmp_path / "out.bin"
    peak_d = _peak_rss_mib(["decompress", "-q", "-o", str(out), str(packed)])
    with open(big, "rb") as f:  # and the streaming path: stdin to stdout
        peak_s = _peak_rss_mib(["compress", "-c"], stdin=f.fileno())
    assert max(peak_c, peak_d, peak_s) < 300, (peak_c, peak_d, peak_s)
    assert out.stat().st_size == 200 << 20
    assert _sha256(out) == _sha256(big)


def _sha256(path: Path) -> bytes:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            sha.update(chunk)
    return sha.digest()
