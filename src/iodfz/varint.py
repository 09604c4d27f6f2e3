"""Unsigned LEB128 integers, as docs/FORMAT.md §1.1 defines them (minimal, below 2**64).

Shared by the container and the rANS stream header; each turns :class:`VarintError` into its
own error type.
"""

from __future__ import annotations

MAX_BYTES = 10  # a value below 2**64


class VarintError(ValueError):
    """``truncated`` is True when the buffer ended inside the number."""

    def __init__(self, truncated: bool) -> None:
        super().__init__("truncated" if truncated else "not a minimal LEB128 below 2**64")
        self.truncated = truncated


def encode(value: int) -> bytes:
    if not 0 <= value < 1 << 64:
        raise ValueError(f"uint {value} out of range")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


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
