"""Interleaved rANS over numpy lanes (byte layout: docs/FORMAT.md §2; design: docs/CODER.md).

State x of each lane lives in [L, L * 2**16) with L = 2**32 (so x < 2**48), frequencies have
``precision`` <= 16 bits, renormalization moves one 16-bit word at a time. Because x < 2**53 the
encoder keeps x in float64 and divides with IEEE division, which is exact here (floor(x / f) of
integers below 2**53 cannot round across an integer) and ~5x faster than numpy's int64 ``//``.
The decoder needs no division and keeps x in int64.

Order. Symbol i of a ``push`` goes to lane ``i % lanes``; step s codes symbols
``[s * lanes, (s + 1) * lanes)``. rANS is LIFO: ``pop`` returns symbols in step order, so ``push``
encodes the steps last-to-first, and a stream built by ``push(a); push(b)`` is read back by
``pop() -> b`` then ``pop() -> a``. The image codec therefore pushes the level it decodes first
(the top prior) last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from iodfz import varint
from iodfz.coder.errors import CoderError
from iodfz.coder.tables import Tables

STREAM_VERSION = 1
WORD_BITS = 16
L_BITS = 32
L = 1 << L_BITS  # lower bound of a lane state; initial state; final state checked on decode
HEAD_WORDS = 3  # a lane state is < 2**48: three 16-bit words
MAX_HEADER_BYTES = 1 + 3 + 10  # u8 version, varint lanes (<= 2**16), varint word count
MAX_LANES = 1 << 16
VALUE_LIMIT = 1 << 47  # |value| and |offset| bound (int32 values are far inside)
_SCALAR_MAX_LANES = 1  # streams with this few lanes run the step loop in plain Python
_SYMBOLS_PER_LANE = 4096  # lane count target: each lane costs ~40 bits of flush
_BLOCK_SYMBOLS = 1 << 15  # per-symbol work is done in cache-sized blocks of steps
_INV_WORD = 1.0 / (1 << WORD_BITS)
MAX_VARINT = 8  # 7 bits per byte: excess values below 2**56

IntArray = npt.NDArray[np.int64]


@dataclass
class Encoder:
    """Encoder state: lane states plus the words / escape bytes emitted so far (LIFO chunks)."""

    lanes: int
    x: npt.NDArray[np.float64]
    words: list[npt.NDArray[np.float64]] = field(default_factory=list)
    escapes: list[npt.NDArray[np.uint8]] = field(default_factory=list)


@dataclass
class Decoder:
    """Decoder state: lane states, the word stream and read positions."""

    lanes: int
    x: IntArray
    words: npt.NDArray[np.uint16]
    pos: int
    esc: npt.NDArray[np.uint8]
    esc_pos: int
    size: int | None = None  # bytes of a compact stream: words and escapes share them


def lanes_for(num_symbols: int) -> int:
    """Lane count for a stream of ``num_symbols`` symbols: 1 lane per 4096 symbols, <= 4096.

    Each lane costs ~40 bits at the end of the stream (0.01 bit/symbol at 4096 symbols/lane, i.e.
    ~0.2 % of a 5 bit/symbol stream); more lanes mean fewer numpy calls per symbol.
    """
    return int(min(4096, max(1, num_symbols // _SYMBOLS_PER_LANE)))


def encoder(lanes: int) -> Encoder:
    """A fresh encoder with ``lanes`` interleaved lanes, every state at L."""
    if not 1 <= lanes <= MAX_LANES:
        raise CoderError(f"lanes must be in 1..{MAX_LANES}")
    return Encoder(lanes, np.full(lanes, float(L)))


def _inputs(
    tables: Tables,
    table_index: npt.ArrayLike,
    offset: npt.ArrayLike,
    values: npt.ArrayLike | None = None,
) -> tuple[IntArray, IntArray, IntArray | None]:
    """Validate and flatten (table_index, offset, values) to int64 arrays of one size."""
    t = np.asarray(table_index)
    v = None if values is None else np.asarray(values)
    shape = t.shape if v is None else v.shape
    if v is not None and v.size != t.size:
        raise CoderError("values and table_index must have the same size")
    o = np.asarray(offset)
    for name, arr in (("values", v), ("table_index", t), ("offset", o)):
        if arr is not None and arr.dtype.kind not in "iub":
            raise CoderError(f"{name} must be an integer array")
    try:
        o = np.broadcast_to(o, shape)
    except ValueError:
        raise CoderError("offset does not broadcast to the values' shape") from None
    checks = [o] if v is None else [o, v]
    for arr in checks:
        wide = arr.dtype.itemsize > 4 or arr.dtype == np.uint32
        if wide and arr.size and (int(arr.min()) <= -VALUE_LIMIT or int(arr.max()) >= VALUE_LIMIT):
            raise CoderError("value or offset out of the coder's range (|x| < 2**47)")
    t = np.asarray(t, dtype=np.int64).ravel()
    o = np.asarray(o, dtype=np.int64).ravel()
    if t.size and (int(t.min()) < 0 or int(t.max()) >= tables.count):
        raise CoderError("table index out of range")
    if v is not None:
        v = np.asarray(v, dtype=np.int64).ravel()
    return t, o, v


def escape_bytes(e: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    """Escaped values (each below 2**56: at most MAX_VARINT bytes) as LEB128 varints: the bytes
    of a stream's escape section."""
    return varint.encode_many(e)


def escape_codes(j: npt.NDArray[np.int64], nsym: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """The escape code of each symbol index outside its table (``j < 0`` or ``j >= nsym``):
    even codes count up past the table, odd ones down below it (FORMAT.md 2.3)."""
    return np.where(j >= 0, 2 * (j - nsym), -2 * j - 1).astype(np.uint64)


def read_escaped_values(
    dec: Decoder, at_escape: npt.NDArray[np.int64], nsym: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The values of escaped symbols from ``dec``'s escape section (:func:`escaped_values`)."""
    ex = read_escapes(dec, len(at_escape))
    if int(ex.max()) >= 4 * VALUE_LIMIT:
        raise CoderError("rANS stream corrupted (escape value)")
    return escaped_values(at_escape, nsym, ex.astype(np.int64))


def escaped_values(
    at_escape: npt.NDArray[np.int64], nsym: npt.NDArray[np.int64], codes: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The values of escaped symbols of escape codes ``codes`` (each below 4·VALUE_LIMIT),
    inverse of :func:`escape_codes`; ``at_escape`` is what each escape symbol decodes to (its
    table's ``lo + nsym``)."""
    return np.where(codes & 1 == 0, at_escape + (codes >> 1), at_escape - nsym - 1 - (codes >> 1))


def read_escapes(dec: Decoder, count: int) -> npt.NDArray[np.uint64]:
    """The next ``count`` escaped values of ``dec``'s escape section (inverse of escape_bytes)."""
    values, lengths, past = varint.decode_many(
        dec.esc[dec.esc_pos : dec.esc_pos + MAX_VARINT * count], count
    )
    if len(values) < count:
        raise CoderError("rANS stream truncated (escape values)")
    if int(lengths.max()) > MAX_VARINT:
        raise CoderError("rANS stream corrupted (escape value too long)")
    dec.esc_pos += int(past[-1])
    return values


def push(
    enc: Encoder,
    tables: Tables,
    values: npt.ArrayLike,
    table_index: npt.ArrayLike,
    offset: npt.ArrayLike = 0,
) -> None:
    """Encode ``values`` (coded as ``values - offset`` in table ``table_index``) onto ``enc``.

    Any value with ``|value| < 2**47`` round-trips (int32 always); a value outside its table's
    support is coded as the table's escape symbol plus a varint in the escape byte stream.
    """
    t_all, o_all, v_all = _inputs(tables, table_index, offset, values)
    assert v_all is not None
    _push_checked(enc, tables, t_all, o_all, v_all)


def _push_checked(
    enc: Encoder, tables: Tables, t_all: IntArray, o_all: IntArray, v_all: IntArray
) -> None:
    n = t_all.size
    if n == 0:
        return
    freq_f, start_f = tables.freq_float, tables.start_float
    lo_t, nsym_t, base_t = tables.lo, tables.nsym, tables.base
    total = float(1 << tables.precision)
    xmax_scale = float(1 << (L_BITS + WORD_BITS - tables.precision))

    lanes = enc.lanes
    x = enc.x
    mask = np.empty(lanes, dtype=bool)
    q = np.empty(lanes, dtype=np.float64)
    words = enc.words
    block_steps = max(1, _BLOCK_SYMBOLS // lanes)
    s_hi = -(-n // lanes)
    while s_hi > 0:  # cache-sized blocks of steps, last block first (rANS is LIFO)
        s_lo = max(0, s_hi - block_steps)
        a0, b0 = s_lo * lanes, min(n, s_hi * lanes)
        t = t_all[a0:b0]
        j = v_all[a0:b0] - o_all[a0:b0]
        lo = lo_t[t]
        j -= lo
        nsym = nsym_t[t]
        esc = j.view(np.uint64) >= nsym.view(np.uint64)
        if esc.any():
            je, ns_e = np.compress(esc, j), np.compress(esc, nsym)  # je < 0 or je >= nsym
            enc.escapes.append(escape_bytes(escape_codes(je, ns_e)))
            np.copyto(j, nsym, where=esc)
        j += base_t[t]
        f = freq_f.take(j)
        c = start_f.take(j)
        xmax = f * xmax_scale
        mf = total - f
        if lanes <= _SCALAR_MAX_LANES:
            x[0] = _push_one_lane(float(x[0]), f, c, xmax, mf, words)
            s_hi = s_lo
            continue
        for s in range(s_hi - 1, s_lo - 1, -1):
            a = s * lanes - a0
            m = min(lanes, n - s * lanes)
            if m == lanes:
                xs, ms, qs = x, mask, q
            else:
                xs, ms, qs = x[:m], mask[:m], q[:m]
            b = a + m
            np.greater_equal(xs, xmax[a:b], out=ms)
            chunk = np.compress(ms, xs)
            words.append(chunk)
            np.place(xs, ms, np.floor(chunk * _INV_WORD))
            np.divide(xs, f[a:b], out=qs)
            np.floor(qs, out=qs)
            np.multiply(qs, mf[a:b], out=qs)
            xs += qs
            xs += c[a:b]
        s_hi = s_lo


def _push_one_lane(
    x: float,
    f: npt.NDArray[np.float64],
    c: npt.NDArray[np.float64],
    xmax: npt.NDArray[np.float64],
    mf: npt.NDArray[np.float64],
    words: list[npt.NDArray[np.float64]],
) -> float:
    """``push``'s step loop for a single lane in plain Python floats (same arithmetic, so the
    same stream): per-symbol numpy calls cost more than the arithmetic on one lane."""
    emitted = []
    for fi, ci, xm, mfi in zip(
        f[::-1].tolist(), c[::-1].tolist(), xmax[::-1].tolist(), mf[::-1].tolist(), strict=True
    ):
        if x >= xm:
            emitted.append(x)
            x = math.floor(x * _INV_WORD)
        x += math.floor(x / fi) * mfi + ci
    words.append(np.array(emitted[::-1], np.float64))  # finish() reverses chunks, not words
    return x


def finish(enc: Encoder, compact: bool = False) -> bytes:
    """The stream: header, lane heads, renormalization words, escape bytes (FORMAT.md §2.1);
    ``compact``: no header, the escape bytes reversed at the end (§2.4)."""
    heads = enc.x.astype(np.int64)
    head_words = np.stack([heads & 0xFFFF, (heads >> 16) & 0xFFFF, heads >> 32], axis=1)
    body = np.concatenate([np.zeros(0), *enc.words[::-1]]).astype(np.int64) & 0xFFFF
    allw = np.concatenate([head_words.ravel(), body]).astype("<u2")
    esc = np.concatenate([np.zeros(0, np.uint8), *enc.escapes[::-1]])
    if compact:
        return allw.tobytes() + esc[::-1].tobytes()
    header = bytes([STREAM_VERSION]) + varint.encode(enc.lanes) + varint.encode(allw.size)
    return header + allw.tobytes() + esc.tobytes()


def _read_varint(head: bytes, pos: int, max_bytes: int) -> tuple[int, int]:
    try:
        return varint.decode(head, pos, max_bytes)
    except varint.VarintError as exc:
        raise CoderError(
            f"rANS stream {'truncated' if exc.truncated else 'corrupted'} (header)"
        ) from None


def decoder(data: bytes | bytearray | memoryview) -> Decoder:
    """Open a stream written by :func:`finish`."""
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    head = bytes(buf[:MAX_HEADER_BYTES])
    if not head:
        raise CoderError("rANS stream truncated (header)")
    if head[0] != STREAM_VERSION:
        raise CoderError(f"unknown rANS stream version {head[0]}")
    lanes, pos = _read_varint(head, 1, 3)
    if not 1 <= lanes <= MAX_LANES:
        raise CoderError("rANS stream corrupted (lane count)")
    nwords, pos = _read_varint(head, pos, 10)
    if nwords < HEAD_WORDS * lanes or pos + 2 * nwords > buf.size:
        raise CoderError("rANS stream truncated (words)")
    words = buf[pos : pos + 2 * nwords].view("<u2").astype(np.uint16)
    h = words[: HEAD_WORDS * lanes].astype(np.int64).reshape(lanes, HEAD_WORDS)
    x = h[:, 0] | (h[:, 1] << 16) | (h[:, 2] << 32)
    if int(x.min()) < L:
        raise CoderError("rANS stream corrupted (lane state)")
    esc = buf[pos + 2 * nwords :]
    return Decoder(lanes, x, words, HEAD_WORDS * lanes, esc, 0)


def compact_decoder(data: bytes | bytearray | memoryview, lanes: int) -> Decoder:
    """Open a compact stream (``finish(enc, compact=True)``) of ``lanes`` lanes: words are
    read from the front, escape bytes from the back; :func:`check_finished` requires that
    together they use every byte exactly once."""
    if not 1 <= lanes <= MAX_LANES:
        raise CoderError("rANS stream corrupted (lane count)")
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    if buf.size < 2 * HEAD_WORDS * lanes:
        raise CoderError("rANS stream truncated (lane heads)")
    words = buf[: buf.size & ~1].view("<u2").astype(np.uint16)
    h = words[: HEAD_WORDS * lanes].astype(np.int64).reshape(lanes, HEAD_WORDS)
    x = h[:, 0] | (h[:, 1] << 16) | (h[:, 2] << 32)
    if int(x.min()) < L:
        raise CoderError("rANS stream corrupted (lane state)")
    return Decoder(lanes, x, words, HEAD_WORDS * lanes, buf[::-1].copy(), 0, int(buf.size))


def pop(
    dec: Decoder, tables: Tables, table_index: npt.ArrayLike, offset: npt.ArrayLike = 0
) -> IntArray:
    """Decode ``len(table_index)`` values (int64) pushed with the same tables/indices/offsets."""
    t_all, o_all, _ = _inputs(tables, table_index, offset)
    return pop_flat(dec, tables, t_all, o_all)


def pop_flat(dec: Decoder, tables: Tables, t_all: IntArray, o_all: IntArray) -> IntArray:
    """:func:`pop` without its checks of the inputs, for a caller that makes them itself (a
    decoder popping many short runs, where the checks cost as much as the pops): ``t_all``
    and ``o_all`` flat int64 arrays of one size, every table index in range, every offset
    within the coder's range."""
    n = t_all.size
    out = np.empty(n, dtype=np.int64)
    if n == 0:
        return out
    precision = tables.precision
    cf_mask = (1 << precision) - 1
    lut, freq, start = tables.lut, tables.freq, tables.start
    words = dec.words
    nwords = words.size
    pos = dec.pos
    lanes = dec.lanes
    x = dec.x
    cf = np.empty(lanes, np.int64)
    g = np.empty(lanes, np.int64)
    fq = np.empty(lanes, np.int64)
    st = np.empty(lanes, np.int64)
    mask = np.empty(lanes, dtype=bool)
    block_steps = max(1, _BLOCK_SYMBOLS // lanes)
    steps = -(-n // lanes)
    for s_lo in range(0, steps, block_steps):
        s_hi = min(steps, s_lo + block_steps)
        a0, b0 = s_lo * lanes, min(n, s_hi * lanes)
        t = t_all[a0:b0]
        tm = t << precision
        bt = tables.base[t]
        jout = np.empty(b0 - a0, dtype=np.uint16)
        if lanes <= _SCALAR_MAX_LANES:
            x[0], pos = _pop_one_lane(int(x[0]), tm, bt, tables, words, pos, jout)
        else:
            for s in range(s_lo, s_hi):
                a = s * lanes - a0
                m = min(lanes, n - s * lanes)
                b = a + m
                if m == lanes:
                    xs, cfs, gs, fs, sts, ms = x, cf, g, fq, st, mask
                else:
                    xs, cfs, gs, fs, sts, ms = x[:m], cf[:m], g[:m], fq[:m], st[:m], mask[:m]
                js = jout[a:b]
                np.bitwise_and(xs, cf_mask, out=cfs)
                np.right_shift(xs, precision, out=xs)
                np.add(cfs, tm[a:b], out=gs)
                np.take(lut, gs, out=js, mode="wrap")
                np.add(bt[a:b], js, out=gs)
                np.take(freq, gs, out=fs, mode="wrap")
                np.take(start, gs, out=sts, mode="wrap")
                np.multiply(xs, fs, out=xs)
                xs += cfs
                xs -= sts
                np.less(xs, L, out=ms)
                r = int(np.count_nonzero(ms))
                if r:
                    if pos + r > nwords:
                        raise CoderError("rANS stream truncated")
                    tmp = np.compress(ms, xs)
                    tmp <<= WORD_BITS
                    tmp |= words[pos : pos + r]
                    pos += r
                    np.place(xs, ms, tmp)
        dec.pos = pos
        vals = out[a0:b0]
        np.add(jout, tables.lo[t], out=vals)
        nsym = tables.nsym[t]
        esc = jout == nsym
        if esc.any():
            at_escape, ns_e = np.compress(esc, vals), np.compress(esc, nsym)
            np.place(vals, esc, read_escaped_values(dec, at_escape, ns_e))
        vals += o_all[a0:b0]
    return out


def _pop_one_lane(
    x: int,
    tm: IntArray,
    bt: IntArray,
    tables: Tables,
    words: npt.NDArray[np.uint16],
    pos: int,
    jout: npt.NDArray[np.uint16],
) -> tuple[int, int]:
    """``pop``'s step loop for a single lane in plain Python integers; fills ``jout``."""
    precision = tables.precision
    cf_mask = (1 << precision) - 1
    lut, freq, start = tables.lut.item, tables.freq.item, tables.start.item
    word, nwords = words.item, words.size
    out = []
    for tmi, bti in zip(tm.tolist(), bt.tolist(), strict=True):
        cf = x & cf_mask
        j = lut(cf + tmi)
        g = bti + j
        x = (x >> precision) * freq(g) + cf - start(g)
        if x < L:
            if pos >= nwords:
                raise CoderError("rANS stream truncated")
            x = (x << WORD_BITS) | word(pos)
            pos += 1
        out.append(j)
    jout[:] = out
    return x, pos


def check_finished(dec: Decoder) -> None:
    """Raise CoderError unless every word and escape byte was read and every lane is back at L."""
    if dec.size is not None:
        if 2 * dec.pos + dec.esc_pos != dec.size:
            raise CoderError("rANS stream has trailing data, or words and escapes overlap")
    elif dec.pos != dec.words.size or dec.esc_pos != dec.esc.size:
        raise CoderError("rANS stream has trailing data")
    if np.any(dec.x != L):
        raise CoderError("rANS stream corrupted (final state check failed)")


def encode(
    tables: Tables,
    values: npt.ArrayLike,
    table_index: npt.ArrayLike,
    offset: npt.ArrayLike = 0,
    lanes: int | None = None,
) -> bytes:
    """One-call convenience: a stream holding one push."""
    n = int(np.size(values))
    enc = encoder(lanes_for(n) if lanes is None else lanes)
    push(enc, tables, values, table_index, offset)
    return finish(enc)


def decode(
    data: bytes | bytearray | memoryview,
    tables: Tables,
    table_index: npt.ArrayLike,
    offset: npt.ArrayLike = 0,
) -> IntArray:
    """Inverse of :func:`encode`; checks the stream is fully consumed and intact."""
    dec = decoder(data)
    out = pop(dec, tables, table_index, offset)
    check_finished(dec)
    return out
