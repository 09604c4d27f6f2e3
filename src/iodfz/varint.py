"""Unsigned LEB128 integers, as docs/FORMAT.md §1.1 defines them (minimal, below 2**64).

Shared by the container, the rANS stream header and escape bytes, and the image formats' side
information; each turns :class:`VarintError`, or a length its own format does not allow, into
its own error type. The vector forms import numpy when first called, not with this module: the
command line loads the container (and so this module) before it may load numpy.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MAX_BYTES = 10  # a value below 2**64


class VarintError(ValueError):
    """``truncated`` is True when the buffer ended inside the number."""

    def __init__(self, truncated: bool) -> None:
        super().__init__("truncated" if truncated else "not a minimal LEB128 below 2**64")
        self.truncated = truncated


def encode(value: int) -> bytes:
    out = bytearray()
    append(out, value)
    return bytes(out)


def append(out: bytearray, value: int) -> None:
    """:func:`encode` into ``out`` (a writer of many numbers makes no object per number)."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"uint {value} out of range")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def decode(
    buf: bytes | bytearray | memoryview, pos: int, max_bytes: int = MAX_BYTES
) -> tuple[int, int]:
    """(value, position after it) of the number at ``buf[pos:]``, at most ``max_bytes`` long."""
    value = 0
    for i in range(max_bytes):
        if pos + i >= len(buf):
            raise VarintError(truncated=True)
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if (byte == 0 and i > 0) or value >> 64:
                raise VarintError(truncated=False)
            return value, pos + i + 1
    raise VarintError(truncated=False)


@functools.cache
def _powers() -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """128**k for each byte position k < MAX_BYTES, then 0 (for the bytes past them); and the
    least value that takes k + 1 bytes, for k = 1 … MAX_BYTES - 1."""
    import numpy as np

    power = np.zeros(MAX_BYTES + 1, np.uint64)
    power[:MAX_BYTES] = np.uint64(1) << np.arange(0, 7 * MAX_BYTES, 7, dtype=np.uint64)
    return power, power[1:MAX_BYTES]


def encode_many(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    """The bytes of :func:`encode` of each value, back to back."""
    import numpy as np

    power, least = _powers()
    lengths = np.searchsorted(least, values, side="right") + 1
    past = np.cumsum(lengths)
    spread = np.repeat(values, lengths)
    pos = np.arange(spread.size) - np.repeat(past - lengths, lengths)
    # (floor division, not >>: numpy shifts uint64 by an array several times slower)
    out = (spread // power[pos]).astype(np.uint8) | 0x80
    out[past - 1] &= 0x7F
    return out


def last_bytes(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    """The offset in ``data`` of each varint's last byte (a byte below 0x80)."""
    import numpy as np

    return np.flatnonzero(data < 0x80)


def decode_many(
    data: npt.NDArray[np.uint8], count: int | None = None
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The first ``count`` (default all) complete varints at the start of ``data``: each one's
    value, its length in bytes, and the offset past it; fewer where ``data`` ends first (a
    caller parsing a prefix of a stream gets the varints it holds whole).

    Unlike :func:`decode` this does not check the numbers: it decodes a non-minimal one as
    its value, and one longer than MAX_BYTES as the value of its first MAX_BYTES bytes (modulo
    2**64). Each caller bounds the lengths as its own format requires."""
    import numpy as np

    ends = last_bytes(data)[:count]
    if not len(ends):
        return np.zeros(0, np.uint64), ends, ends
    power, _ = _powers()
    past = ends + 1
    starts = np.concatenate(([0], past[:-1]))
    lengths = past - starts
    used = int(past[-1])
    pos = np.minimum(np.arange(used) - np.repeat(starts, lengths), MAX_BYTES)
    return np.add.reduceat((data[:used] & 0x7F) * power[pos], starts), lengths, past
