"""rANS coding of many independent streams in lockstep: one image's stream each.

A small image's stream has one lane (FORMAT.md 3.4: one lane per 4096 symbols), so coding it
alone steps through its symbols one at a time. Images of one shape have streams of the same
lane count and symbol layout, so here the lanes of all of them advance together, one numpy
operation per step for the whole group, and every stream keeps its own words, escapes and
state. Each step is the arithmetic of :func:`iodfz.coder.ans.push` / ``pop`` on more lanes
(in int64, which gives what ``push``'s exact float64 arithmetic gives), and every stream is
written by ``ans.finish`` and checked by ``ans.check_finished``, so each stream is byte for
byte the one that coding its image alone gives (tests/test_batch_lockstep.py). Images of
different shapes have streams of different lane counts and symbol layouts: the ragged
decoder steps their lanes together all the same, each stream's symbols on its own lanes.

The step loops run once per step of a group, a few dozen streams wide, so numpy's per-call
cost is what they spend: they do as few calls per step as they can, and everything that can
be done for all steps at once (table lookups, escapes, words) is done outside them.

A damaged stream does not stop the others: the decoder marks it failed and goes on; its
caller decodes such a file alone, which reports the damage as usual.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from iodfz import varint
from iodfz.coder import CoderError, ans
from iodfz.coder.tables import Tables

IntArray = npt.NDArray[np.int64]
_WORD_MASK = (1 << ans.WORD_BITS) - 1


class _PushTables(NamedTuple):
    """A table set's per-symbol encoding constants, flat like ``Tables.freq``, plus a last,
    *pad* symbol that leaves a state as it is (frequency 2^precision, start 0; its xmax, 2^48,
    is above every state): it fills the lanes that a chunk's partial last step leaves idle."""

    freq: IntArray
    start: IntArray
    total: int  # 2^precision: a step makes x into (x // freq)·(total - freq) + x + start
    xmax_shift: int  # a state at or above freq << xmax_shift writes its low word out first


@functools.lru_cache(maxsize=8)
def _push_tables(tables: Tables) -> _PushTables:
    total = 1 << tables.precision
    return _PushTables(
        np.append(tables.freq, total),
        np.append(tables.start, 0),
        total,
        ans.L_BITS + ans.WORD_BITS - tables.precision,
    )


def _table_rows(tables: Tables, table_index: npt.ArrayLike) -> IntArray:
    t = np.asarray(table_index, np.int64)
    if t.size and int(t.view(np.uint64).max()) >= tables.count:  # (negative: above 2**63)
        raise CoderError("table index out of range")
    return t


def _check_values(*arrays: IntArray) -> None:
    for arr in arrays:
        if arr.size and (int(arr.min()) <= -ans.VALUE_LIMIT or int(arr.max()) >= ans.VALUE_LIMIT):
            raise CoderError("value or offset out of the coder's range (|x| < 2**47)")


def _slots(ends: Sequence[int], n: int, lanes: int) -> IntArray:
    """Which symbol each coding slot codes, for pushes of the chunks that end at ``ends``.

    Slot ``r·lanes + i`` is lane i of row r. The rows hold every chunk's steps, the last
    chunk's first and each chunk's in order: the order in which the streams hold their words
    (a later push's first) and the decoder reads them, so the encoder runs over the rows last
    to first. The idle lanes of a chunk's partial last step hold ``n``, the pad symbol."""
    bounds = np.concatenate([[0], np.asarray(ends, np.int64).ravel()])
    lengths = np.diff(bounds)
    if (lengths < 0).any() or bounds[-1] != n:
        raise CoderError("chunk ends must rise to the number of symbols")
    steps = -(-lengths // lanes)
    first_row = steps.sum() - np.cumsum(steps)  # a later chunk's rows come first
    symbol = np.arange(n)
    chunk = np.repeat(np.arange(len(lengths)), lengths)
    src = np.full(int(steps.sum()) * lanes, n)
    src[(first_row * lanes - bounds[:-1])[chunk] + symbol] = symbol
    return src


def _escape_bytes(
    j: IntArray, nsym: IntArray, esc: npt.NDArray[np.bool_], slot: IntArray
) -> tuple[npt.NDArray[np.uint8], IntArray]:
    """Every stream's escape bytes, the streams' back to back, and how many each has. A push
    writes its escapes in symbol order and a stream holds a later push's first: each stream's
    come in the order of their symbols' slots (``slot[i]``: symbol i's, :func:`_slots`)."""
    streams, n = j.shape
    k, at = np.divmod(np.flatnonzero(esc), n)  # (np.nonzero is slow on 2-d arrays)
    if not k.size:
        return np.zeros(0, np.uint8), np.zeros(streams, np.int64)
    order = np.lexsort((slot[at], k))
    k, at = k[order], at[order]
    data = ans.escape_bytes(ans.escape_codes(j[k, at], nsym[k, at]))
    last_byte = varint.last_bytes(data)  # of each varint
    codes_end = np.cumsum(np.bincount(k, minlength=streams))
    bytes_end = np.where(codes_end > 0, last_byte[codes_end - 1] + 1, 0)
    return data, np.diff(bytes_end, prepend=0)


def _per_stream(
    parts: list[tuple[np.ndarray, IntArray]], streams: int, dtype: npt.DTypeLike
) -> list[np.ndarray]:
    """Each stream's runs of ``parts`` joined in the parts' order; a part holds its streams'
    runs back to back, ``counts[k]`` items for stream k."""
    data = np.concatenate([np.zeros(0, dtype), *(d for d, _ in parts)])
    counts = np.array([c for _, c in parts], np.int64).reshape(len(parts), streams)
    owner = np.repeat(np.tile(np.arange(streams), len(counts)), counts.ravel())
    by_stream = data[np.argsort(owner, kind="stable")]
    return np.split(by_stream, np.cumsum(counts.sum(axis=0))[:-1])


def _encode_rows(
    states: IntArray, freq: IntArray, start: IntArray, spare: IntArray, xmax: IntArray
) -> None:
    """``ans.push``'s step loop over rows of lanes, last row first: ``states[r]`` is what
    row r's step makes of ``states[r + 1]``. Integer floor division is what ``push``'s float64
    division gives (exact below 2**53), in fewer numpy calls."""
    keep = np.empty(states.shape[1], bool)
    low, q = np.empty(states.shape[1], np.int64), np.empty(states.shape[1], np.int64)
    word = np.array(ans.WORD_BITS)  # numpy scalars: cheaper to pass than Python ints
    before, after = states[:0:-1], states[-2::-1]
    rows = zip(before, after, freq[::-1], start[::-1], spare[::-1], xmax[::-1], strict=True)
    for x, out, f, c, mf, xm in rows:
        np.less(x, xm, out=keep)
        np.right_shift(x, word, out=low)  # the state once its low word is written out…
        np.copyto(low, x, where=keep)  # …if it has to be
        np.floor_divide(low, f, out=q)
        q *= mf
        q += low
        np.add(q, c, out=out)


class Encoder:
    """``streams`` encoders of ``lanes`` lanes each, pushed in lockstep: every push gives each
    stream the same number of symbols (arrays of shape (streams, symbols))."""

    def __init__(self, streams: int, lanes: int) -> None:
        if not 1 <= lanes <= ans.MAX_LANES:
            raise CoderError(f"lanes must be in 1..{ans.MAX_LANES}")
        self.lanes = lanes
        self.x = np.full((streams, lanes), ans.L, np.int64)
        # per push_chunks, each stream's words and escape bytes (back to back, and counts)
        self._words: list[tuple[IntArray, IntArray]] = []
        self._escapes: list[tuple[npt.NDArray[np.uint8], IntArray]] = []

    def push(
        self,
        tables: Tables,
        values: npt.ArrayLike,
        table_index: npt.ArrayLike,
        offset: npt.ArrayLike,
    ) -> None:
        """``ans.push`` of row k of each (streams, symbols) array onto stream k."""
        ends = [np.shape(values)[1]] if np.ndim(values) == 2 else []  # else refused
        self.push_chunks(tables, values, table_index, offset, ends)

    def push_chunks(
        self,
        tables: Tables,
        values: npt.ArrayLike,
        table_index: npt.ArrayLike,
        offset: npt.ArrayLike,
        ends: Sequence[int],
    ) -> None:
        """``push`` of each chunk ``[ends[k-1], ends[k])`` of the symbols (axis 1) in turn,
        each a push of its own (it starts at lane 0), ``ends`` rising to the symbol count:
        the arguments checked once and one step loop over all chunks' steps."""
        push_together([(self, tables, values, table_index, offset, ends)])

    def _layout(
        self,
        tables: Tables,
        values: npt.ArrayLike,
        table_index: npt.ArrayLike,
        offset: npt.ArrayLike,
        ends: Sequence[int],
    ) -> IntArray:
        """The arguments of :meth:`push_chunks` checked, their escape bytes kept, and their
        symbols (flat table indices, the pad symbol ``len(tables.freq)`` in idle lanes) laid
        out in rows of lanes (:func:`_slots`): a row holds lane 0 of every stream, then
        lane 1…"""
        v, t, o = self._arguments(tables, values, table_index, offset)
        streams, n = v.shape
        src = _slots(ends, n, self.lanes)
        j = v - o - tables.lo[t]
        nsym = tables.nsym[t]
        esc = j.view(np.uint64) >= nsym.view(np.uint64)
        slot = np.empty(n + 1, np.int64)
        slot[src] = np.arange(len(src))
        self._escapes.append(_escape_bytes(j, nsym, esc, slot))
        np.copyto(j, nsym, where=esc)
        j += tables.base[t]
        padded = np.empty((n + 1, streams), np.int64)
        padded[:n] = j.T
        padded[n] = len(tables.freq)
        return padded[src].reshape(-1, self.lanes * streams)

    def _arguments(
        self,
        tables: Tables,
        values: npt.ArrayLike,
        table_index: npt.ArrayLike,
        offset: npt.ArrayLike,
    ) -> tuple[IntArray, IntArray, IntArray]:
        v = np.asarray(values, np.int64)
        if v.ndim != 2 or len(v) != len(self.x):
            raise CoderError("values must be (streams, symbols)")
        try:
            t, o = (
                np.broadcast_to(np.asarray(a, np.int64), v.shape) for a in (table_index, offset)
            )
        except ValueError:
            raise CoderError("table_index and offset must broadcast to the values") from None
        _table_rows(tables, t)
        _check_values(v, o)
        return v, t, o

    def finish(self) -> list[bytes]:
        """Each stream as ``ans.finish(…, compact=True)`` writes it."""
        streams = len(self.x)
        words = _per_stream(self._words[::-1], streams, np.int64)
        escapes = _per_stream(self._escapes[::-1], streams, np.uint8)
        out = []
        for k in range(streams):
            x, w = self.x[k].astype(np.float64), words[k].astype(np.float64)
            enc = ans.Encoder(self.lanes, x, [w], [escapes[k]])
            out.append(ans.finish(enc, compact=True))
        return out


Push = tuple["Encoder", Tables, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, Sequence[int]]


def push_together(pushes: Sequence[Push]) -> None:
    """``encoder.push_chunks(tables, values, table_index, offset, ends)`` of each push, of
    different encoders (one table set), in one step loop: their rows of lanes side by side,
    those of fewer rows padded after their last (a pad leaves a state as it is and writes no
    word, and the loop runs last row first). For the batches of images of other shapes, each
    with a loop of its own steps otherwise."""
    if not pushes:
        return
    tables = pushes[0][1]
    if any(push[1] is not tables for push in pushes):
        raise CoderError("pushes coded together share one table set")
    pt = _push_tables(tables)
    layouts = [encoder._layout(*args) for encoder, *args in pushes]
    rows = max(len(at) for at in layouts)
    widths = [at.shape[1] for at in layouts]
    cols = np.cumsum([0, *widths])
    symbols = np.full((rows, int(cols[-1])), len(pt.freq) - 1, np.int64)
    for at, a, b in zip(layouts, cols[:-1], cols[1:], strict=True):
        symbols[: len(at), a:b] = at
    freq, start = pt.freq.take(symbols), pt.start.take(symbols)
    spare, xmax = pt.total - freq, freq << pt.xmax_shift
    states = np.empty((rows + 1, int(cols[-1])), np.int64)
    states[rows] = np.concatenate([encoder.x.T.ravel() for encoder, *_ in pushes])
    _encode_rows(states, freq, start, spare, xmax)
    for (encoder, *_), a, b in zip(pushes, cols[:-1], cols[1:], strict=True):
        streams, lanes = encoder.x.shape
        encoder.x = np.ascontiguousarray(states[0, a:b].reshape(lanes, streams).T)
        # per stream, rows then lanes ascending: the order ans.finish writes words in
        before = states[1:, a:b].reshape(rows, lanes, streams).transpose(2, 0, 1)
        out = before >= xmax[:, a:b].reshape(rows, lanes, streams).transpose(2, 0, 1)
        encoder._words.append((before[out] & _WORD_MASK, out.sum(axis=(1, 2))))


def _symbols_of(tables: Tables, which: IntArray) -> tuple[IntArray, IntArray]:
    """The symbols of tables ``which``, table by table: each one's place in the flat tables
    and its index in its table."""
    sizes = tables.nsym[which] + 1
    index = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(tables.base[which], sizes) + index, index


class _Lookup:
    """Which symbol covers each cf, and what each symbol stands for (one per table set, see
    :func:`_lookup`). A narrow step finds its symbols by bisection where the intervals end
    (``ends``: table ``t``'s symbols cover ``[t·2^precision, (t+1)·2^precision)`` in order);
    a wide one (``LOOKUP_FROM_WIDTH``) in ``tables.lut``, which costs ~50 ms to build: more
    than a batch of 95 small images would gain from it."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self.ends = np.cumsum(tables.freq)
        # what each symbol stands for (an escape: its table's lo + nsym), and which are escapes
        symbol, index = _symbols_of(tables, np.arange(tables.count))
        self.value = np.zeros(len(tables.freq), np.int64)
        self.value[symbol] = np.repeat(tables.lo, tables.nsym + 1) + index
        self.escape = np.zeros(len(tables.freq), bool)
        self.escape[tables.base + tables.nsym] = True


@functools.lru_cache(maxsize=8)
def _lookup(tables: Tables) -> _Lookup:
    return _Lookup(tables)


Refill = Callable[[IntArray], None]
#: Lanes of all streams from which a decoding step looks its symbols up in ``Tables.lut``
#: rather than bisecting: a wide step gains more than the lookup costs to build.
LOOKUP_FROM_WIDTH = 512


def _refill(words: IntArray, pos: IntArray, lanes: int) -> Refill:
    """What a decoding step ends with, on its states (flat, lane-major: lane 0 of every
    stream, then lane 1…): the lanes below L read their stream's next words, in lane order,
    from ``words`` at ``pos`` (moved on). Every lane fetches one, those that need none keep
    their state; a stream that runs out reads its neighbour's words and ends past its end: it
    is failed then."""
    streams = len(pos)
    need = np.empty(lanes * streams, bool)
    more, at = np.empty(lanes * streams, np.int64), np.empty(lanes * streams, np.int64)
    low, word, one = np.array(ans.L), np.array(ans.WORD_BITS), np.array(1)

    def one_lane(x: IntArray) -> None:
        np.less(x, low, out=need)
        words.take(pos, mode="clip", out=at)
        np.left_shift(x, word, out=more)
        np.bitwise_or(more, at, out=more)
        np.copyto(x, more, where=need)
        np.add(pos, need, out=pos)

    def many_lanes(x: IntArray) -> None:
        size = len(x)
        needs, mores, ats = need[:size], more[:size], at[:size]
        np.less(x, low, out=needs)
        by_lane = ats.reshape(-1, streams)
        np.add.accumulate(needs.reshape(-1, streams), axis=0, dtype=np.int64, out=by_lane)
        by_lane += pos
        np.copyto(pos, by_lane[-1])
        np.subtract(ats, one, out=ats)
        np.left_shift(x, word, out=mores)
        mores |= words.take(ats, mode="clip")
        np.copyto(x, mores, where=needs)

    return one_lane if lanes == 1 else many_lanes


def _cut(a: IntArray, width: int) -> Sequence[IntArray]:
    """``a`` cut into pieces of ``width``, the last one maybe shorter."""
    full = len(a) - len(a) % width
    pieces = a[:full].reshape(-1, width)
    return pieces if full == len(a) else [*pieces, a[full:]]


class _Escapes:
    """Every stream's escape values (``ans.read_escapes``), read in order: the varints at the
    back of each stream, parsed ahead, a prefix of the same length of every stream at a time
    (grown as streams need more), so that a step's escapes of all streams come in a few numpy
    calls."""

    def __init__(self, data: Sequence[npt.NDArray[np.uint8] | bytes]) -> None:
        self.data = [np.frombuffer(d, np.uint8) if isinstance(d, bytes) else d for d in data]
        self.used = np.zeros(len(data), np.int64)  # values read per stream
        self._parse(64)

    def _parse(self, prefix: int) -> None:
        """Parse the first ``prefix`` bytes of every stream (``varint.decode_many``): each one's
        complete varints' codes (-1 for one too long or too large to be an escape code) and
        the offset past each; and whether the stream is parsed to its end."""
        self.prefix = prefix
        parsed = [varint.decode_many(d[:prefix]) for d in self.data]
        self.count = np.array([len(values) for values, _, _ in parsed], np.int64)
        width = max(1, int(self.count.max()))
        self.codes = np.full((len(parsed), width), -1, np.int64)
        self.ends = np.zeros((len(parsed), width), np.int64)
        for k, (values, lengths, past) in enumerate(parsed):
            good = (lengths <= ans.MAX_VARINT) & (values < 4 * ans.VALUE_LIMIT)
            self.codes[k, : len(values)] = np.where(good, values.astype(np.int64), -1)
            self.ends[k, : len(past)] = past
        self.whole = np.array([len(d) <= prefix for d in self.data])

    def take(self, stream: IntArray) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        """The next escape codes of the streams ``stream`` (ascending, one entry per value,
        in reading order); and which streams could not give theirs (they are failed)."""
        counts = np.bincount(stream, minlength=len(self.used))
        need = self.used + counts
        while ((need > self.count) & ~self.whole).any():
            self._parse(4 * self.prefix)
        rank = np.arange(len(stream)) - (np.cumsum(counts) - counts)[stream]
        at = np.minimum(self.used[stream] + rank, self.codes.shape[1] - 1)
        codes = self.codes[stream, at]
        bad = need > self.count
        bad[stream[codes < 0]] = True
        self.used = need
        return np.maximum(codes, 0), bad

    def bytes_used(self, stream: int) -> int:
        """The bytes of the values stream ``stream`` has read (``ans.Decoder.esc_pos``)."""
        used = int(self.used[stream])
        return int(self.ends[stream, used - 1]) if used else 0


class _Streams:
    """Compact streams decoded together (:class:`Decoder`, :class:`RaggedDecoder`): each one's
    words in one array, its escapes, its lane states (``_states``). A stream that cannot be
    opened or runs out of data is marked failed (``failed[k]``) and its values are junk."""

    x: IntArray

    def _open(self, streams: list[bytes], lanes: Sequence[int]) -> list[IntArray]:
        """Open every stream (``lanes[k]`` lanes for stream k): its decoder, or None and
        failed; every stream's words in one array. Each stream's lane states (L for one
        that could not be opened)."""
        self.failed = np.zeros(len(streams), bool)
        self.decoders: list[ans.Decoder | None] = []
        for k, (stream, count) in enumerate(zip(streams, lanes, strict=True)):
            try:
                self.decoders.append(ans.compact_decoder(stream, count))
            except CoderError:
                self.decoders.append(None)
                self.failed[k] = True
        ok = [d for d in self.decoders if d is not None]
        # every stream's words in one array (and a spare word, so that there is one to read)
        sizes = np.array([0 if d is None else d.words.size for d in self.decoders], np.int64)
        self.start = np.cumsum(sizes) - sizes
        self.end = self.start + sizes
        self.pos = self.start + np.array([0 if d is None else d.pos for d in self.decoders])
        self.words = np.concatenate([*(d.words.astype(np.int64) for d in ok), [0]])
        self._escapes = _Escapes([b"" if d is None else d.esc for d in self.decoders])
        return [
            np.full(count, ans.L) if d is None else d.x
            for d, count in zip(self.decoders, lanes, strict=True)
        ]

    def _unescape(self, vals: IntArray, at: IntArray, stream: IntArray, nsym: IntArray) -> None:
        """Put the escaped values into ``vals`` at ``at`` (which holds ``lo + nsym`` of their
        tables there; streams ``stream``, ascending, in symbol order within each), each
        stream's next escape values, as ``ans.pop`` reads them. A stream whose escape bytes
        are damaged or run out is failed."""
        codes, bad = self._escapes.take(stream)
        self.failed |= bad
        vals[at] = ans.escaped_values(vals[at], nsym, codes)

    def finish(self) -> npt.NDArray[np.bool_]:
        """Which streams decoded whole: every word and escape byte used, every lane back at
        its initial state (``ans.check_finished``), and none marked failed."""
        ok = ~self.failed
        for k, dec in enumerate(self.decoders):
            if dec is None or not ok[k]:
                ok[k] = False
                continue
            dec.x = self._states(k).copy()
            dec.pos = int(self.pos[k] - self.start[k])
            dec.esc_pos = self._escapes.bytes_used(k)
            try:
                ans.check_finished(dec)
            except CoderError:
                ok[k] = False
        return ok

    def _states(self, k: int) -> IntArray:
        raise NotImplementedError


class Decoder(_Streams):
    """Compact streams of ``lanes`` lanes each, popped in lockstep: every pop gives each
    stream the same number of symbols."""

    def __init__(self, streams: list[bytes], lanes: int) -> None:
        self.lanes = lanes
        self.x = np.stack(self._open(streams, [lanes] * len(streams)))
        self._refill = _refill(self.words, self.pos, lanes)

    def _states(self, k: int) -> IntArray:
        return self.x[k]

    def pop(self, tables: Tables, table_index: npt.ArrayLike, offset: npt.ArrayLike) -> IntArray:
        """``ans.pop`` of each stream: row k of the (streams, symbols) arrays from stream k."""
        t = _table_rows(tables, table_index)
        o = np.asarray(offset, np.int64)
        _check_values(o)
        return self.pop_flat(tables, t, o)

    def pop_flat(self, tables: Tables, t: IntArray, o: IntArray) -> IntArray:
        """:meth:`pop` without its checks of the inputs, for a caller that makes them itself
        (as ``ans.pop_flat``): ``t`` and ``o`` int64 (streams, symbols), every table index in
        range, every offset within the coder's range."""
        lookup = _lookup(tables)
        g = self._steps(lookup, t)
        vals = lookup.value.take(g)
        esc = lookup.escape.take(g)
        if esc.any():
            k, at = np.nonzero(esc)
            self._unescape(vals.reshape(-1), k * t.shape[1] + at, k, tables.nsym[t[k, at]])
        vals += o
        return vals

    def _steps(self, lookup: _Lookup, t: IntArray) -> IntArray:
        """The step loop of ``ans.pop`` over every stream's lanes: the symbols (flat table
        indices), (streams, symbols). The steps' arrays are 1-d, lane-major (lane 0 of every
        stream, then lane 1…): numpy's per-call cost is lowest on those."""
        n = t.shape[1]
        if not n:
            return np.zeros(t.shape, np.int64)
        tables, ends = lookup.tables, lookup.ends
        width = self.lanes * len(self.pos)
        firsts = _cut((t.T << tables.precision).ravel(), width)  # each step's tables' first cf
        # wide steps find their symbols in the tables' decode lookup (built once, ~50 ms)
        wide = width >= LOOKUP_FROM_WIDTH
        bases = _cut(tables.base[t.T].ravel(), width) if wide else None
        freq, start = tables.freq, tables.start
        x_all = np.ascontiguousarray(self.x.T)
        x = x_all.ravel()
        cf, y = np.empty_like(x), np.empty_like(x)
        cf_mask, p = np.array((1 << tables.precision) - 1), np.array(tables.precision)
        refill = self._refill
        found = []
        for step, first_at in enumerate(firsts):
            m = len(first_at)
            xs, cfs, ys = (x, cf, y) if m == width else (x[:m], cf[:m], y[:m])
            np.bitwise_and(xs, cf_mask, out=cfs)
            np.add(cfs, first_at, out=ys)
            if bases is None:
                g = ends.searchsorted(ys, side="right")  # the symbol, in all tables
            else:
                g = tables.lut.take(ys) + bases[step]
            found.append(g)
            np.right_shift(xs, p, out=xs)
            xs *= freq.take(g)
            xs += cfs
            xs -= start.take(g)
            refill(xs)
        self.x = x_all.T
        self.failed |= self.pos > self.end
        return np.concatenate(found).reshape(n, -1).T


class _Schedule(NamedTuple):
    """The steps of a ragged pop (:class:`RaggedDecoder`): its symbols in step order
    (``order``), each one's lane in the decoder's flat states (``slot``), its stream
    (``owner``), where its stream's entries of its step begin (``begin``, in step order), and
    where each step ends."""

    order: IntArray
    slot: IntArray
    owner: IntArray
    begin: IntArray
    ends: list[int]


class RaggedDecoder(_Streams):
    """Compact streams of any lane counts (``lanes[k]`` for stream k), popped together: a pop
    gives each stream a number of symbols of its own, and a step of the loop advances every
    lane that has a symbol in it, of all streams at once. For the batches of images of
    different shapes (each with its own lane count), whose pops would otherwise each run a
    step loop of their own."""

    def __init__(self, streams: list[bytes], lanes: Sequence[int]) -> None:
        self.lane_counts = np.asarray(lanes, np.int64)
        self.first_lane = np.cumsum(self.lane_counts) - self.lane_counts
        self.x = np.concatenate([np.zeros(0, np.int64), *self._open(streams, lanes)])
        self._schedules: dict[bytes, _Schedule] = {}  # by counts: a diagonal's three planes

    def _states(self, k: int) -> IntArray:
        return self.x[self.first_lane[k] : self.first_lane[k] + self.lane_counts[k]]

    def pop_ragged(self, tables: Tables, t: IntArray, o: IntArray, counts: IntArray) -> IntArray:
        """``ans.pop_flat`` of each stream, unchecked likewise: ``t`` and ``o`` flat int64,
        each stream's symbols back to back in stream order, ``counts[k]`` of stream k."""
        lookup = _lookup(tables)
        plan = self._schedule(counts)
        g = np.empty(len(t), np.int64)
        g[plan.order] = self._steps_ragged(lookup, t.take(plan.order), plan)
        vals = lookup.value.take(g)
        esc = lookup.escape.take(g)
        if esc.any():
            at = np.flatnonzero(esc)
            stream = np.repeat(np.arange(len(counts)), counts)[at]
            self._unescape(vals, at, stream, tables.nsym[t[at]])
        vals += o
        return vals

    def _schedule(self, counts: IntArray) -> _Schedule:
        """Symbol i of stream k is lane ``i % lanes[k]``'s in step ``i // lanes[k]``; a step's
        entries are in stream, then lane order, so that each stream's lanes read their words
        in lane order."""
        key = counts.tobytes()
        if key not in self._schedules:
            owner = np.repeat(np.arange(len(counts)), counts)
            index = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
            lanes = self.lane_counts.take(owner)
            step = index // lanes
            order = np.argsort(step, kind="stable")
            slot = (self.first_lane.take(owner) + index - step * lanes).take(order)
            owner, step = owner.take(order), step.take(order)
            begins = np.ones(len(owner), bool)
            begins[1:] = (owner[1:] != owner[:-1]) | (step[1:] != step[:-1])
            begin = np.flatnonzero(begins).take(np.cumsum(begins) - 1)
            ends = np.cumsum(np.bincount(step)).tolist() if len(step) else []
            self._schedules = {key: _Schedule(order, slot, owner, begin, ends)}
        return self._schedules[key]

    def _steps_ragged(self, lookup: _Lookup, t: IntArray, plan: _Schedule) -> IntArray:
        """The step loop of ``ans.pop`` over the lanes of every stream, the symbols' tables
        ``t`` in step order: the symbols (flat table indices) in that order."""
        tables, ends = lookup.tables, lookup.ends
        freq, start = tables.freq, tables.start
        first_cf = t << tables.precision
        # wide steps (the first ones) look their symbols up, as in Decoder._steps
        base = tables.base.take(t) if plan.ends and plan.ends[0] >= LOOKUP_FROM_WIDTH else None
        cf_mask, p = np.array((1 << tables.precision) - 1), np.array(tables.precision)
        low, word = np.array(ans.L), np.array(ans.WORD_BITS)
        x, pos, words, streams = self.x, self.pos, self.words, len(self.pos)
        found = [np.zeros(0, np.int64)]
        a = 0
        for b in plan.ends:
            at = plan.slot[a:b]
            xs = x.take(at)
            cf = xs & cf_mask
            if base is not None and b - a >= LOOKUP_FROM_WIDTH:
                g = tables.lut.take(cf + first_cf[a:b]) + base[a:b]
            else:
                g = ends.searchsorted(cf + first_cf[a:b], side="right")
            found.append(g)
            xs >>= p
            xs *= freq.take(g)
            xs += cf
            xs -= start.take(g)
            need = xs < low
            if need.any():
                own = plan.owner[a:b]
                done = np.cumsum(need)  # the words this step's entries up to here read
                first = plan.begin[a:b] - a
                rank = done - (done.take(first) - need.take(first))  # 1 for a stream's first
                more = (xs << word) | words.take(pos.take(own) + rank - 1, mode="clip")
                np.copyto(xs, more, where=need)
                pos += np.bincount(own, need, streams).astype(np.int64)
            x[at] = xs
            a = b
        self.failed |= self.pos > self.end
        return np.concatenate(found)
