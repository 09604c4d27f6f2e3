"""rANS coding of many independent streams in lockstep: one image's stream each.

A small image's stream has one lane (FORMAT.md 3.4: one lane per 4096 symbols), so coding it
alone steps through its symbols one at a time. Images of one shape have streams of the same
lane count and symbol layout, so here the lanes of all of them advance together, one numpy
operation per step for the whole group, and every stream keeps its own words, escapes and
state. Each step is the arithmetic of :func:`iodfz.coder.ans.push` / ``pop`` on more lanes
(float64 states when encoding, int64 when decoding), and every stream is written by
``ans.finish`` and checked by ``ans.check_finished``, so each stream is byte for byte the one
that coding its image alone gives (tests/test_batch_lockstep.py).

A damaged stream does not stop the others: the decoder marks it failed and goes on; its
caller decodes such a file alone, which reports the damage as usual.
"""

from __future__ import annotations

import functools

import numpy as np

from iodfz.coder import CoderError, ans
from iodfz.coder.tables import Tables

_INV_WORD = 1.0 / (1 << ans.WORD_BITS)


def _by_step(a: np.ndarray, lanes: int, fill: float = 0) -> np.ndarray:
    """(streams, symbols) → (steps, streams, lanes), contiguous per step: symbol i of a stream
    is coded at step i // lanes by lane i % lanes (the last step's missing lanes hold ``fill``)."""
    streams, n = a.shape
    steps = -(-n // lanes)
    padded = np.full((streams, steps * lanes), fill, a.dtype)
    padded[:, :n] = a
    return np.ascontiguousarray(padded.reshape(streams, steps, lanes).transpose(1, 0, 2))


def _last_lanes(n: int, lanes: int) -> int:
    """Lanes the last step of ``n`` symbols uses."""
    return n - (-(-n // lanes) - 1) * lanes


@functools.lru_cache(maxsize=8)
def _ends(tables: Tables) -> np.ndarray:
    """Where each symbol's interval ends, counted from the first table's start: table t's
    symbols cover ``[t·2^precision, (t+1)·2^precision)`` in order (each sums to 2^precision)."""
    return np.cumsum(tables.freq)


def _table_rows(tables: Tables, table_index: np.ndarray) -> np.ndarray:
    t = np.asarray(table_index, np.int64)
    if t.size and (int(t.min()) < 0 or int(t.max()) >= tables.count):
        raise CoderError("table index out of range")
    return t


class Encoder:
    """``streams`` encoders of ``lanes`` lanes each, pushed in lockstep: every push gives each
    stream the same number of symbols (arrays of shape (streams, symbols))."""

    def __init__(self, streams: int, lanes: int) -> None:
        if not 1 <= lanes <= ans.MAX_LANES:
            raise CoderError(f"lanes must be in 1..{ans.MAX_LANES}")
        self.lanes = lanes
        self.x = np.full((streams, lanes), float(ans.L))
        # per push, (steps, streams, lanes): each lane's state before a step, and whether it
        # wrote that state's low word out (renormalized) there
        self._records: list[tuple[np.ndarray, np.ndarray]] = []
        self._escapes: list[list[bytes]] = [[] for _ in range(streams)]  # per stream, per push

    def push(
        self, tables: Tables, values: np.ndarray, table_index: np.ndarray, offset: np.ndarray
    ) -> None:
        """``ans.push`` of row k of each (streams, symbols) array onto stream k."""
        t = _table_rows(tables, table_index)
        v = np.asarray(values, np.int64)
        o = np.broadcast_to(np.asarray(offset, np.int64), v.shape)
        for arr in (v, o):
            if arr.size and int(np.abs(arr).max()) >= ans.VALUE_LIMIT:
                raise CoderError("value or offset out of the coder's range (|x| < 2**47)")
        j = v - o - tables.lo[t]
        nsym = tables.nsym[t]
        esc = j.view(np.uint64) >= nsym.view(np.uint64)
        self._push_escapes(j, nsym, esc)
        j = np.where(esc, nsym, j) + tables.base[t]
        f = tables.freq.astype(np.float64)[j]
        c = tables.start.astype(np.float64)[j]
        xmax = f * float(1 << (ans.L_BITS + ans.WORD_BITS - tables.precision))
        mf = float(1 << tables.precision) - f
        lanes = self.lanes
        by_step = [_by_step(a, lanes, 1.0) for a in (f, c, xmax, mf)]
        self._steps(*by_step, _last_lanes(v.shape[1], lanes))

    def _push_escapes(self, j: np.ndarray, nsym: np.ndarray, esc: np.ndarray) -> None:
        """Each stream's escape values of this push in symbol order, as ``ans.push`` writes
        them (its own varints; a push's escapes come after those of the pushes made later)."""
        for k in range(j.shape[0]):
            if not esc[k].any():
                self._escapes[k].append(b"")
                continue
            codes = ans.escape_codes(j[k][esc[k]], nsym[k][esc[k]])
            self._escapes[k].append(ans.escape_bytes(codes).tobytes())

    def _steps(
        self, f: np.ndarray, c: np.ndarray, xmax: np.ndarray, mf: np.ndarray, last: int
    ) -> None:
        """The step loop of ``ans.push`` over every stream's lanes, last step first."""
        states, emitted = np.empty(f.shape), np.zeros(f.shape, bool)
        q = np.empty(self.x.shape)
        for s in range(len(f) - 1, -1, -1):
            m = last if s == len(f) - 1 else self.lanes
            xs, qs, emit = self.x[:, :m], q[:, :m], emitted[s, :, :m]
            np.greater_equal(xs, xmax[s, :, :m], out=emit)
            states[s, :, :m] = xs
            np.multiply(xs, _INV_WORD, out=qs)
            np.floor(qs, out=qs)
            np.copyto(xs, qs, where=emit)
            np.divide(xs, f[s, :, :m], out=qs)
            np.floor(qs, out=qs)
            qs *= mf[s, :, :m]
            xs += qs
            xs += c[s, :, :m]
        self._records.append((states, emitted))

    def finish(self) -> list[bytes]:
        """Each stream as ``ans.finish(…, compact=True)`` writes it."""
        parts: list[list[np.ndarray]] = [[] for _ in range(len(self.x))]
        for states, emitted in self._records[::-1]:  # a later push's words come first
            mask = emitted.transpose(1, 0, 2)  # per stream: steps, then lanes, ascending
            words = states.transpose(1, 0, 2)[mask]
            counts = mask.sum(axis=(1, 2))
            for k, part in enumerate(np.split(words, np.cumsum(counts)[:-1])):
                parts[k].append(part)
        out = []
        for k, stream_parts in enumerate(parts):
            escapes = b"".join(self._escapes[k][::-1])
            words = np.concatenate([np.zeros(0), *stream_parts])
            enc = ans.Encoder(self.lanes, self.x[k].copy(), [words], [])
            if escapes:
                enc.escapes.append(np.frombuffer(escapes, np.uint8))
            out.append(ans.finish(enc, compact=True))
        return out


class Decoder:
    """Compact streams of ``lanes`` lanes each, popped in lockstep. A stream that cannot be
    opened or runs out of data is marked failed (``failed[k]``) and its values are junk."""

    def __init__(self, streams: list[bytes], lanes: int) -> None:
        self.lanes = lanes
        self.failed = np.zeros(len(streams), bool)
        self.decoders: list[ans.Decoder | None] = []
        for k, stream in enumerate(streams):
            try:
                self.decoders.append(ans.compact_decoder(stream, lanes))
            except CoderError:
                self.decoders.append(None)
                self.failed[k] = True
        ok = [d for d in self.decoders if d is not None]
        self.x = np.stack([d.x if d is not None else np.full(lanes, ans.L) for d in self.decoders])
        sizes = np.array([0 if d is None else d.words.size for d in self.decoders], np.int64)
        self.start = np.cumsum(sizes) - sizes  # each stream's words in one array
        self.end = self.start + sizes
        self.pos = self.start + np.array([0 if d is None else d.pos for d in self.decoders])
        self.words = np.concatenate([np.zeros(0, np.int64), *(d.words for d in ok)])

    def pop(self, tables: Tables, table_index: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """``ans.pop`` of each stream: row k of the (streams, symbols) arrays from stream k."""
        t = _table_rows(tables, table_index)
        o = np.broadcast_to(np.asarray(offset, np.int64), t.shape)
        if o.size and int(np.abs(o).max()) >= ans.VALUE_LIMIT:
            raise CoderError("value or offset out of the coder's range (|x| < 2**47)")
        j = self._steps(tables, t)
        vals = j + tables.lo[t]
        nsym = tables.nsym[t]
        esc = j == nsym
        for k in np.flatnonzero(esc.any(axis=1)):
            self._unescape(k, vals[k], esc[k], nsym[k])
        return vals + o

    def _steps(self, tables: Tables, t: np.ndarray) -> np.ndarray:
        """The step loop of ``ans.pop`` over every stream's lanes: symbol indices in tables.
        A symbol is found by bisection where its interval ends (:func:`_ends`), which picks
        the symbol that ``tables.lut`` names without building that 2-byte-per-frequency-unit
        lookup (64 MiB for the logistic set)."""
        precision, lanes = tables.precision, self.lanes
        cf_mask = (1 << precision) - 1
        ends = _ends(tables)
        tm = _by_step(t << precision, lanes)
        last = _last_lanes(t.shape[1], lanes)
        found = np.zeros(tm.shape, np.int64)
        cf, shifted = np.empty_like(self.x), np.empty_like(self.x)
        need = np.empty(self.x.shape, bool)
        for s in range(len(tm)):
            m = last if s == len(tm) - 1 else lanes
            xs, cfs, more, needs = self.x[:, :m], cf[:, :m], shifted[:, :m], need[:, :m]
            np.bitwise_and(xs, cf_mask, out=cfs)
            g = np.searchsorted(ends, tm[s, :, :m] + cfs, side="right")
            found[s, :, :m] = g
            xs >>= precision
            xs *= tables.freq[g]
            xs += cfs
            xs -= tables.start[g]
            # lanes below L read their stream's next words, in lane order (every lane fetches
            # one; those that need none keep their state)
            np.less(xs, ans.L, out=needs)
            if m == 1:
                where, taken = self.pos[:, None], needs[:, 0]
            else:
                where, taken = self.pos[:, None] + np.cumsum(needs, axis=1) - 1, needs.sum(axis=1)
            np.left_shift(xs, ans.WORD_BITS, out=more)
            more |= self.words.take(where, mode="clip")
            np.copyto(xs, more, where=needs)
            self.pos += taken
        self.failed |= self.pos > self.end
        by_stream = found.transpose(1, 0, 2).reshape(len(self.x), -1)[:, : t.shape[1]]
        return by_stream - tables.base[t]

    def _unescape(self, k: int, vals: np.ndarray, esc: np.ndarray, nsym: np.ndarray) -> None:
        """Stream ``k``'s escaped values, read as ``ans.pop`` reads them."""
        dec = self.decoders[k]
        if dec is None or self.failed[k]:
            return
        try:
            vals[esc] = ans.read_escaped_values(dec, vals[esc], nsym[esc])
        except CoderError:
            self.failed[k] = True

    def finish(self) -> np.ndarray:
        """Which streams decoded whole: every word and escape byte used, every lane back at
        its initial state (``ans.check_finished``), and none marked failed."""
        ok = ~self.failed
        for k, dec in enumerate(self.decoders):
            if dec is None or not ok[k]:
                ok[k] = False
                continue
            dec.x = self.x[k].copy()
            dec.pos = int(self.pos[k] - self.start[k])
            try:
                ans.check_finished(dec)
            except CoderError:
                ok[k] = False
        return ok
