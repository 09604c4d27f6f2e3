"""Codec registry and the plug point for the neural image path.

Codecs 0 (stored) and 1 (zstd) are built in (:mod:`iodfz.zstd_path`). Image codecs are
optional modules listed in :data:`IMAGE_CODEC_MODULES`; each must expose ``CODEC``, an object
satisfying :class:`ImageCodec`. A module that cannot be imported (say torch is missing) is
skipped, and images then go through zstd. Registering an image codec is one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol, runtime_checkable

from iodfz.container import CODEC_IMAGE, Sections, codec_name

IMAGE_CODEC_MODULES: tuple[str, ...] = ("iodfz.codec.image",)

# Largest input offered to image codecs: the whole file is read into memory for them.
MAX_IMAGE_INPUT = 512 << 20

Share = Callable[[float], None]  # progress: the share of one input's work done (0 … 1)

DEFAULT_LEVEL = 3
MIN_LEVEL = 1
MAX_LEVEL = 19
FLOW_FROM = 4  # from this level up small images also go through a flow (below: no network)
#: From this level up an image is coded with every model serving the level (one larger than
#: 128 × 128 only at MAX_LEVEL: below it such images go to the predictive coder alone).
TRY_ALL_FROM = 9


@dataclass(frozen=True)
class Options:
    """Compression options; passed unchanged to image codecs.

    ``level`` is the zstd level (1..19) and a speed/size hint for image codecs. ``pixels``
    accepts a reconstruction that is pixel-exact rather than byte-exact (PNG only: the
    decoded PNG has the same pixels but may differ in chunking and zlib stream). ``threads``
    is the number of zstd worker threads within one file (0: one per core).
    """

    level: int = DEFAULT_LEVEL
    pixels: bool = False
    threads: int = 0

    def __post_init__(self) -> None:
        if not MIN_LEVEL <= self.level <= MAX_LEVEL:
            raise ValueError(f"level must be {MIN_LEVEL}..{MAX_LEVEL}, not {self.level}")
        if self.threads < 0:
            raise ValueError("threads must be >= 0")


@runtime_checkable
class ImageCodec(Protocol):
    """What an image codec provides. ``id`` is its container codec id (2 for the neural path).

    ``try_compress`` gets the whole input file (it starts with an image magic and is at most
    :data:`MAX_IMAGE_INPUT` bytes) and returns the typed sections to store in the header, the
    frame payload and the bytes ``decompress`` will return — ``data`` itself, or with
    ``options.pixels`` a re-encoded file with the same pixels — or None to let zstd handle the
    file (unsupported variant, no gain, ...). ``decompress`` gets them back and returns those
    bytes; the container checks their length and SHA-256 afterwards. Any exception it raises
    on a damaged payload is reported as a damaged container. Both may call ``progress`` with
    the share of the work done so far (0 … 1).

    ``try_compress_many`` and ``decompress_many`` do the same for several inputs at once where
    that is faster (many small images), giving results by position for the inputs they took —
    each exactly what the single call gives — and leaving the rest to the single calls.
    """

    id: int
    name: str

    def try_compress(
        self, data: bytes, level: int, options: Options, progress: Share | None = None
    ) -> tuple[Sections, bytes, bytes] | None: ...

    def try_compress_many(
        self, datas: Sequence[bytes], level: int, options: Options
    ) -> dict[int, tuple[Sections, bytes, bytes] | None]: ...

    def decompress(
        self, sections: Sections, payload: bytes, progress: Share | None = None
    ) -> bytes: ...

    def decompress_many(self, items: Sequence[tuple[Sections, bytes]]) -> dict[int, bytes]: ...

    def guarantee(self, sections: Sections) -> str:
        """``byte-exact``, or how the decoded file differs from the original (for ``info``)."""
        ...


@cache
def image_codecs() -> tuple[ImageCodec, ...]:
    """The image codecs that could be imported, in :data:`IMAGE_CODEC_MODULES` order.

    Imported lazily so plain zstd runs never pay for importing torch.
    """
    found = []
    for module_name in IMAGE_CODEC_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found.append(module.CODEC)
    return tuple(found)


def image_codec(codec_id: int) -> ImageCodec | None:
    for codec in image_codecs():
        if codec.id == codec_id:
            return codec
    return None


def describe(codec_id: int) -> str:
    """``"2 (neural-image)"`` style name for messages."""
    return f"{codec_id} ({codec_name(codec_id)})"


_PNG = b"\x89PNG\r\n\x1a\n"
_TIFF = (b"II*\x00", b"MM\x00*")


def looks_like_image(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file, 8 are enough) starts like PNG/PNM/BMP/TIFF."""
    if head.startswith(_PNG) or head.startswith(_TIFF):
        return True
    if head.startswith(b"BM") and len(head) >= 6:
        return True
    # PNM: P1..P7 (P7 is PAM) followed by whitespace.
    return (
        len(head) >= 3
        and head[0:1] == b"P"
        and head[1:2] in b"1234567"
        and head[2:3] in (b" \t\r\n")
    )


__all__ = [
    "CODEC_IMAGE",
    "IMAGE_CODEC_MODULES",
    "MAX_IMAGE_INPUT",
    "ImageCodec",
    "Options",
    "Sections",
    "describe",
    "image_codec",
    "image_codecs",
    "looks_like_image",
]
