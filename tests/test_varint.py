"""The one LEB128 implementation (iodfz.varint): scalar and vector forms agree, and the callers
with their own limits (side info, rANS escapes) keep their own errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import numpy.typing as npt
import pytest

from iodfz import varint
from iodfz.coder import CoderError, ans
from iodfz.formats._side import FormatError, Reader, Writer

EDGES = [0, 1, 127, 128, 255, 16383, 16384, 300, (1 << 56) - 1, 1 << 56, (1 << 63) - 1, 1 << 63]
EDGES += [(1 << 64) - 1] + [(1 << (7 * k)) + d for k in range(1, 10) for d in (-1, 0)]


def _random_values(n: int, seed: int) -> list[int]:
    """``n`` values of every byte length, the edge values among them."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 65, n)
    raw = rng.integers(0, 1 << 63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n)
    values = [int(v) >> (64 - int(b)) if b else 0 for v, b in zip(raw, bits, strict=True)]
    return EDGES + values


def _stream(values: list[int]) -> npt.NDArray[np.uint8]:
    return np.frombuffer(b"".join(varint.encode(v) for v in values), np.uint8)


@pytest.mark.parametrize("n", [0, 30, 5000])
def test_vector_forms_match_the_scalar_ones(n: int) -> None:
    values = _random_values(n, seed=n)
    data = _stream(values)
    assert varint.encode_many(np.array(values, np.uint64)).tobytes() == data.tobytes()
    got, lengths, past = varint.decode_many(data)
    assert got.dtype == np.uint64 and got.tolist() == values
    sizes = [len(varint.encode(v)) for v in values]
    assert lengths.tolist() == sizes
    assert past.tolist() == np.cumsum(sizes).tolist()
    assert varint.last_bytes(data).tolist() == (past - 1).tolist()
    pos = 0
    for v in values:
        assert varint.decode(data.tobytes(), pos) == (v, pos + len(varint.encode(v)))
        pos += len(varint.encode(v))


def test_empty_input() -> None:
    assert varint.encode_many(np.zeros(0, np.uint64)).size == 0
    for part in varint.decode_many(np.zeros(0, np.uint8)):
        assert part.size == 0


def test_append_is_encode() -> None:
    out = bytearray(b"x")
    for v in EDGES:
        varint.append(out, v)
    assert bytes(out) == b"x" + b"".join(map(varint.encode, EDGES))
    for bad in (-1, 1 << 64):
        with pytest.raises(ValueError):
            varint.encode(bad)
        with pytest.raises(ValueError):
            varint.append(out, bad)


@pytest.mark.parametrize("n", [30, 5000])
def test_decode_many_gives_the_whole_varints_of_a_prefix(n: int) -> None:
    values = _random_values(n, seed=1)
    data = _stream(values)
    past = np.cumsum([len(varint.encode(v)) for v in values])
    for cut in (0, 1, int(past[3]) - 1, int(past[3]), data.size - 1):
        whole = int(np.searchsorted(past, cut, side="right"))
        got, _, ends = varint.decode_many(data[:cut])
        assert got.tolist() == values[:whole] and ends.tolist() == past[:whole].tolist()
    got, _, ends = varint.decode_many(data, 7)
    assert got.tolist() == values[:7] and ends[-1] == past[6]
    assert varint.decode_many(np.full(20, 0x80, np.uint8))[0].size == 0


def test_decode_many_leaves_the_checks_to_its_callers() -> None:
    """Non-minimal and over-long numbers decode (the scalar form rejects them) with their
    lengths, after numbers of one byte: each caller bounds lengths itself."""
    pad = 3
    tail = bytes([0x81] * 11 + [0x03]) + b"\x80\x00" + b"\xff" * 9 + b"\x01"
    data = np.frombuffer(b"\x05" * pad + tail, np.uint8)
    got, lengths, _ = varint.decode_many(data)
    assert lengths[pad:].tolist() == [12, 2, 10]
    assert got[pad:].tolist() == [sum(1 << (7 * k) for k in range(10)), 0, (1 << 64) - 1]
    for bad in (tail[:12], tail[12:14], bytes([0xFF] * 9 + [0x02])):
        with pytest.raises(varint.VarintError) as exc:
            varint.decode(bad, 0)
        assert not exc.value.truncated
    with pytest.raises(varint.VarintError) as exc:
        varint.decode(b"\x80\x80", 0)
    assert exc.value.truncated


def test_side_info_keeps_its_errors_and_limits() -> None:
    wr = Writer()
    for v in EDGES[:-1]:
        wr.uint(v)
    wr.sint(-5)
    rd = Reader(wr.getvalue())
    assert [rd.uint(1 << 64) for _ in EDGES[:-1]] == EDGES[:-1]
    assert rd.sint() == -5
    rd.done()
    with pytest.raises(ValueError):
        Writer().uint(-1)
    nine = bytes([0xFF] * 8 + [0x7F])  # 2**63 - 1, the most a vector may hold
    assert Reader(nine * 2).uints(2).tolist() == [(1 << 63) - 1] * 2
    for data, message in [
        (b"\x80\x80", "truncated"),
        (b"\x80\x00", "too long"),  # not minimal: our writer never makes one
        (bytes([0xFF] * 9 + [0x02]), "too long"),  # 2**64
        (varint.encode((1 << 63) + 1), "exceeds"),  # above the default limit
    ]:
        with pytest.raises(FormatError, match=message):
            Reader(data).uint()
    with pytest.raises(FormatError, match="too long"):
        Reader(bytes([0x80] * 9 + [0x01, 0x00])).uints(2)
    with pytest.raises(FormatError, match="truncated"):
        Reader(b"\x01\x80").uints(2)


def test_escape_bytes_keep_their_eight_byte_bound() -> None:
    codes = np.array([0, 5, 300, (1 << 56) - 1], np.uint64)
    data = ans.escape_bytes(codes)
    assert data.tobytes() == b"".join(varint.encode(int(v)) for v in codes)
    dec = ans.Decoder(1, np.zeros(1, np.int64), np.zeros(0, np.uint16), 0, data, 0)
    assert ans.read_escapes(dec, 4).tolist() == codes.tolist() and dec.esc_pos == data.size
    nine = np.frombuffer(varint.encode(1 << 56) + b"\x00", np.uint8)  # (2 ** 56: 9 bytes)
    with pytest.raises(CoderError, match="too long"):
        ans.read_escapes(ans.Decoder(1, np.zeros(1, np.int64), dec.words, 0, nine, 0), 2)
    with pytest.raises(CoderError, match="truncated"):
        ans.read_escapes(ans.Decoder(1, np.zeros(1, np.int64), dec.words, 0, data[:-1], 0), 4)


def test_the_module_loads_without_numpy() -> None:
    """The command line loads the container, and so this module, before it may load numpy."""
    code = "import sys, iodfz.varint; print('numpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["False"]
