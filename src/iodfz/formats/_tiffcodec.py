"""TIFF strip/tile compressions, decoded to bytes and re-encoded to the very same bytes.

Each decoder also returns the *choices* an encoder made that the decoded bytes do not imply,
so that :func:`encode` can remake the stream exactly: PackBits, the header byte of every run;
LZW, where the encoder cleared its table and how many entries it allowed; Deflate, nothing per
segment (the zlib parameters are searched once per file, as for PNG). Decoders stop at
``limit`` output bytes, so a small hostile stream cannot allocate much.
"""

from __future__ import annotations

import zlib

from ._side import FormatError

NONE, LZW, DEFLATE, PACKBITS = 1, 5, 8, 32773
OLD_DEFLATE = 32946
_CLEAR, _EOI, _FIRST = 256, 257, 258
MAX_RATIO = {NONE: 1, LZW: 1 << 12, DEFLATE: 1032, OLD_DEFLATE: 1032, PACKBITS: 64}
"""Most decoded bytes per stored byte (LZW: one 9-bit code can name a 4096-byte string)."""


def packbits_decode(data: bytes, limit: int) -> tuple[bytes, bytes]:
    """(decoded bytes, the header byte of each run)."""
    out, heads, pos = bytearray(), bytearray(), 0
    while pos < len(data) and len(out) < limit:
        n = data[pos]
        heads.append(n)
        if n < 128:
            out += data[pos + 1 : pos + 2 + n]
            pos += 2 + n
        elif n > 128:
            out += data[pos + 1 : pos + 2] * (257 - n)
            pos += 2
        else:
            pos += 1
    if pos != len(data):
        raise FormatError("PackBits data does not end with a run")
    return bytes(out), bytes(heads)


def packbits_encode(data: bytes, heads: bytes) -> tuple[bytes, int]:
    """(the stream the runs ``heads`` make of ``data``, data bytes consumed)."""
    out, pos = bytearray(), 0
    for n in heads:
        out.append(n)
        if n < 128:
            out += data[pos : pos + n + 1]
            pos += n + 1
        elif n > 128:
            out += data[pos : pos + 1]
            pos += 257 - n
    return bytes(out), pos


def _width(index: int) -> int:
    """Code width for the ``index``-th code after a clear (TIFF's early change)."""
    size = _FIRST + max(0, index - 1)  # table size when the decoder reads that code
    return 9 if size < 511 else 10 if size < 1023 else 11 if size < 2047 else 12


def lzw_decode(data: bytes, limit: int) -> tuple[bytes, list[int]]:
    """(decoded bytes, codes between successive clears: one count per clear but the first).

    MSB-first codes, first code a clear, ends at EOI (or when the data runs out)."""
    out = bytearray()
    table: list[bytes] = []
    runs: list[int] = []
    bitbuf = nbits = pos = 0
    index = -1  # codes read since the last clear; -1 before the first clear
    prev = b""
    while len(out) <= limit:
        width = _width(index) if index >= 0 else 9
        while nbits < width and pos < len(data):
            bitbuf = (bitbuf << 8) | data[pos]
            pos += 1
            nbits += 8
        if nbits < width:
            break
        nbits -= width
        code = (bitbuf >> nbits) & ((1 << width) - 1)
        bitbuf &= (1 << nbits) - 1
        if code == _CLEAR:
            if index >= 0:
                runs.append(index)
            table = [bytes([i]) for i in range(256)] + [b"", b""]
            index, prev = 0, b""
            continue
        if code == _EOI or index < 0:
            if index < 0:
                raise FormatError("LZW data does not start with a clear code")
            break
        if code < len(table):
            entry = table[code]
        elif code == len(table) and prev:
            entry = prev + prev[:1]
        else:
            raise FormatError("bad LZW code")
        if prev and len(table) < 4096:
            table.append(prev + entry[:1])
        out += entry
        prev = entry
        index += 1
    if len(out) > limit:
        raise FormatError("LZW data decodes to more than the strip holds")
    return bytes(out), runs


def lzw_encode(data: bytes, runs: list[int], max_entries: int, pad_aligned: bool = False) -> bytes:
    """Greedy LZW of ``data`` clearing the table after each count of codes in ``runs`` (then at
    the start only), adding entries while the table has fewer than ``max_entries``;
    ``pad_aligned``: a zero byte follows an end code that ends on a byte boundary (as some
    encoders write)."""
    out = bytearray()
    acc = nacc = 0

    def put(code: int, width: int) -> None:
        nonlocal acc, nacc
        acc = (acc << width) | code
        nacc += width
        while nacc >= 8:
            nacc -= 8
            out.append((acc >> nacc) & 0xFF)
        acc &= (1 << nacc) - 1

    clears = iter(runs)
    next_clear = next(clears, -1)
    put(_CLEAR, 9)
    table: dict[tuple[int, int], int] = {}
    size, index, code = _FIRST, 0, -1
    for byte in data:
        if code < 0:
            code = byte
            continue
        nxt = table.get((code, byte))
        if nxt is not None:
            code = nxt
            continue
        put(code, _width(index))
        index += 1
        if size < max_entries:
            table[(code, byte)] = size
            size += 1
        if index == next_clear:
            put(_CLEAR, _width(index))
            table.clear()
            size, index = _FIRST, 0
            next_clear = next(clears, -1)
        code = byte
    if code >= 0:
        put(code, _width(index))
        index += 1
    put(_EOI, _width(index))
    if nacc or pad_aligned:
        out.append((acc << (8 - nacc)) & 0xFF)
    return bytes(out)


def inflate(data: bytes, limit: int) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise FormatError(f"bad Deflate data ({exc})") from None
    if len(out) > limit or not d.eof or d.unused_data:
        raise FormatError("Deflate data is not one stream of the strip's size")
    return out
