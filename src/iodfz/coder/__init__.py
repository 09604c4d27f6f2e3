"""Vectorized interleaved rANS in numpy, with integer logistic / mixture tables.

Typical use (the image codec)::

    tables = concat_tables(default_tables(), build_mixture_table(...))
    enc = encoder(lanes_for(total_symbols))
    for level in reversed(levels):          # rANS is LIFO: push what is decoded last first
        push(enc, tables, level.values, level.table_index, level.offset)
    data = finish(enc)

    dec = decoder(data)
    for level in levels:                     # decode order
        values = pop(dec, tables, level.table_index, level.offset)
    check_finished(dec)
"""

from iodfz.coder.ans import (
    Decoder,
    Encoder,
    check_finished,
    compact_decoder,
    decode,
    decoder,
    encode,
    encoder,
    finish,
    lanes_for,
    pop,
    push,
)
from iodfz.coder.errors import CoderError
from iodfz.coder.tables import (
    MIX_LOGIT_BITS,
    MIX_MEAN_BITS,
    NUM_PHASES,
    NUM_SCALES,
    PHASE_BITS,
    PRECISION,
    Tables,
    build_logistic_tables,
    build_mixture_table,
    check_tables,
    concat_tables,
    default_tables,
    logistic_index,
    scale_grid,
    tables_from_freqs,
    tables_hash,
)

__all__ = [
    "MIX_LOGIT_BITS",
    "MIX_MEAN_BITS",
    "NUM_PHASES",
    "NUM_SCALES",
    "PHASE_BITS",
    "PRECISION",
    "CoderError",
    "Decoder",
    "Encoder",
    "Tables",
    "build_logistic_tables",
    "build_mixture_table",
    "check_finished",
    "check_tables",
    "compact_decoder",
    "concat_tables",
    "decode",
    "decoder",
    "default_tables",
    "encode",
    "encoder",
    "finish",
    "lanes_for",
    "logistic_index",
    "pop",
    "push",
    "scale_grid",
    "tables_from_freqs",
    "tables_hash",
]
