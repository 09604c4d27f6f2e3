"""Size limits: the one place where iodfz says how large an image or its parts may be.

The writer (compress) refuses to make what the reader (decompress) would refuse, and both
take their bounds from here; docs/FORMAT.md and docs/FORMATS.md cite these names. Every bound
on untrusted input is checked *before* the memory it guards is allocated.
"""

from __future__ import annotations

MiB = 1 << 20

MAX_PIXELS = 1 << 28
"""Most samples (height × width × channels) of an image the image codec accepts, in either
direction: 256 Mi samples, e.g. a 9459 × 9459 RGB image. Larger images go through zstd."""

MAX_IMAGE_FILE = 512 * MiB
"""Largest image file read whole to try the image codec (and the raw-length bound of an image
container, codec 2). A longer stream is not read whole: it goes through zstd in frames."""

MAX_SIDE_BASE = 16 * MiB
"""Side information (everything of an image file but its pixels: headers, metadata chunks,
other TIFF pages, encoder choices) may be this large plus one byte per pixel sample; see
:func:`max_side_bytes`. A file with more goes through zstd."""

MAX_DEFLATE_RATIO = 1032
"""Deflate's largest expansion (output bytes per input byte, plus a small constant): a PNG or
TIFF declaring more pixel bytes than its compressed data can hold is refused unread."""


def max_side_bytes(height: int, width: int, channels: int) -> int:
    """Largest side information allowed for an image of this shape (see MAX_SIDE_BASE).

    The decoder refuses larger side data before inflating it any further, so a tiny container
    cannot make it allocate more than this bound allows.
    """
    return MAX_SIDE_BASE + max(0, height) * max(0, width) * max(0, channels)


MAX_IN_FLIGHT = 128 * MiB
"""Most frame bytes (raw plus packed) the zstd path holds in flight at once, compressing or
decoding, whatever the thread count; a single frame is always let through (frames of codecs 0
and 1 are at most 64 MiB, FORMAT.md)."""

MAX_CHUNK = 0x7E000000
"""Largest array chunk the numcodecs codec (iodfz.numcodecs) encodes or decodes, the bound
numcodecs' own codecs use; it also caps what decoding a chunk may produce."""

MAX_UNSIZED_IMAGE = 64 * MiB
"""Most bytes read whole to try the image codecs from a stream of unknown length whose header
does not declare the image size (a TIFF: its directory may lie anywhere in the file). A longer
stream goes through zstd in frames; a regular file of any size up to MAX_IMAGE_FILE is still
tried, its length being known."""

MAX_AHEAD_FILES = 256
"""Most files a command works out at once (the image flow run over a batch of small images:
``api.compress_ahead``, ``api.decompress_ahead``) before it writes them one by one."""

MAX_AHEAD_FILE = 4 * MiB
"""Largest file read for working out at once with others: an image of MAX_AHEAD_SAMPLES or
its container is smaller."""

MAX_AHEAD_SAMPLES = 3 * 1024 * 1024
"""Most samples (height × width × channels, as its header declares them) of an image worked
out with others: a megapixel of RGB, two or more of which the predictive coders code together
(``codec.predictive.GROUP_PIXELS``); a larger image is batched within itself."""

MAX_AHEAD_BYTES = 6 * MiB
"""Most bytes of files worked out at once: a command reads and works out its files in runs
of at most this many bytes (and MAX_AHEAD_FILES files), holding them and their results until
each file is written; a run's images are coded at most ``codec.predictive.GROUP_PIXELS`` (a
flow's ``codec.tiling.MAX_BATCH_PIXELS``) at a time. About one such group of photos as PPM
(2 M pixels of RGB): a command's progress moves every few seconds."""

MAX_TABLE_CACHE_FILE = 16 * MiB
"""Largest coder-table cache file read back (``engine.tables``): a table set's frequencies are
well below this (the logistic set: 1.4 MB); a larger file is ignored and rebuilt."""
