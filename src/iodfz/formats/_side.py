"""Side-information serialization: unsigned LEB128 varints, zigzag ints, length-prefixed blobs."""

from __future__ import annotations

import numpy as np

from iodfz import varint

_MAX_VARINT_BYTES = 9  # 63 bits: what a vector of varints may hold (int64 after decoding)


class FormatError(ValueError):
    """Side information (or pixels handed to ``rebuild``) is inconsistent or corrupt."""


class Writer:
    def __init__(self) -> None:
        self._buf = bytearray()

    def u8(self, value: int) -> None:
        self._buf.append(value)

    def uint(self, value: int) -> None:
        varint.append(self._buf, value)

    def sint(self, value: int) -> None:
        self.uint(2 * value if value >= 0 else -2 * value - 1)

    def blob(self, data: bytes) -> None:
        self.uint(len(data))
        self._buf += data

    def raw(self, data: bytes) -> None:
        self._buf += data

    def getvalue(self) -> bytes:
        return bytes(self._buf)


class Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def u8(self) -> int:
        if self._pos >= len(self._data):
            raise FormatError("side info truncated")
        self._pos += 1
        return self._data[self._pos - 1]

    def uint(self, limit: int = 1 << 63) -> int:
        try:
            value, self._pos = varint.decode(self._data, self._pos)
        except varint.VarintError as exc:
            why = "truncated" if exc.truncated else "varint too long"  # (or not minimal)
            raise FormatError(f"side info {why}") from None
        if value > limit:
            raise FormatError(f"side info value {value} exceeds {limit}")
        return value

    def sint(self) -> int:
        z = self.uint()
        return z >> 1 if not z & 1 else -((z + 1) >> 1)

    def uints(self, n: int) -> np.ndarray:
        """``n`` varints at once, as int64 (no Python object per value); FormatError if any
        takes more than 9 bytes or the data ends first."""
        if n <= 0:
            return np.zeros(0, np.int64)
        count = min(self.remaining, _MAX_VARINT_BYTES * n)
        buf = np.frombuffer(self._data, np.uint8, count, self._pos)
        values, lengths, past = varint.decode_many(buf, n)
        if len(values) < n:
            raise FormatError("side info truncated")
        if int(lengths.max()) > _MAX_VARINT_BYTES:
            raise FormatError("side info varint too long")
        self._pos += int(past[-1])
        return values.view(np.int64)

    def blob(self) -> bytes:
        return self.raw(self.uint(self.remaining))

    def raw(self, n: int) -> bytes:
        if n > self.remaining:
            raise FormatError("side info truncated")
        self._pos += n
        return self._data[self._pos - n : self._pos]

    def done(self) -> None:
        if self._pos != len(self._data):
            raise FormatError("trailing bytes in side info")


def unzigzag(z: np.ndarray) -> np.ndarray:
    """Vector form of :meth:`Reader.sint` on values read by :meth:`Reader.uints`."""
    half = z >> 1
    return np.where(z & 1, -half - 1, half)


def chunking(sizes: list[int], total: int) -> tuple[int, ...]:
    """Compact chunk sizes summing to ``total``: ``(size,)`` for fixed-size chunks (the last one
    possibly shorter), else ``(0, *sizes)``."""
    if sizes and sizes[0] > 0 and split_sizes(total, sizes[0]) == sizes:
        return (sizes[0],)
    return (0, *sizes)


def chunk_sizes(spec: tuple[int, ...], total: int) -> list[int]:
    """Inverse of :func:`chunking`; raises FormatError unless the sizes sum to ``total``."""
    if len(spec) == 1 and spec[0] > 0:
        return split_sizes(total, spec[0])
    if not spec or spec[0] != 0 or sum(spec[1:]) != total:
        raise FormatError("chunk sizes do not add up")
    return list(spec[1:])


def write_ints(wr: Writer, values: tuple[int, ...]) -> None:
    wr.uint(len(values))
    for v in values:
        wr.uint(v)


def read_ints(rd: Reader) -> tuple[int, ...]:
    return tuple(rd.uint() for _ in range(rd.uint(rd.remaining)))


def split_sizes(total: int, size: int) -> list[int]:
    full, rest = divmod(total, size)
    return [size] * full + ([rest] if rest else [])
