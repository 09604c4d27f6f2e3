"""The ``.iodf`` container: header, typed sections, frame records, end record.

The byte layout is specified in docs/FORMAT.md, section 1; this module implements it and
nothing else (no codecs). Version 1 is the general layout; version 2 (FORMAT.md 1.7) is the
compact layout of a single-frame neural image, which the writer uses whenever the image codec
asks for it (its image format section has the ``compact`` flag). Reading never trusts a
length before checking it against the format's bounds, and reads payloads in growing chunks,
so a hostile or truncated file cannot make it allocate much more than the file really holds.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

from iodfz import limits, varint
from iodfz.errors import IodfError

MAGIC = b"IODF"
VERSION = 1  # the general layout
VERSION_COMPACT = 2  # single-frame neural image (FORMAT.md 1.7)
VERSIONS = (VERSION, VERSION_COMPACT)

CODEC_STORED = 0
CODEC_ZSTD = 1
CODEC_IMAGE = 2
CODEC_NAMES = {CODEC_STORED: "stored", CODEC_ZSTD: "zstd", CODEC_IMAGE: "neural-image"}
# Frame codecs each container codec may use (FORMAT.md 1.4).
_FRAME_CODECS = {
    CODEC_STORED: {CODEC_STORED},
    CODEC_ZSTD: {CODEC_STORED, CODEC_ZSTD},
    CODEC_IMAGE: {CODEC_IMAGE},
}

MiB = 1 << 20
MAX_HEADER = 16 * MiB + 64 * 1024
MAX_SECTIONS = 1024
MAX_SECTION_LEN = 16 * MiB
MAX_NAME = 4096
MAX_FRAME = 64 * MiB  # raw and payload bound for codecs 0 and 1
MAX_IMAGE = limits.MAX_IMAGE_FILE  # raw and payload bound for codec 2
FRAME_SIZE = 4 * MiB  # what this writer cuts

FLAG_LENGTH = 1 << 0
FLAG_MODE = 1 << 1
FLAG_MTIME = 1 << 2
FLAG_NAME = 1 << 3
_KNOWN_FLAGS = FLAG_LENGTH | FLAG_MODE | FLAG_MTIME | FLAG_NAME


uint_bytes = varint.encode


def read_uint(buf: bytes | bytearray | memoryview, pos: int, what: str) -> tuple[int, int]:
    """(value, position after it) of the uint at ``buf[pos:]``; IodfError if it is truncated,
    longer than 10 bytes, not minimal or not below 2**64."""
    try:
        return varint.decode(buf, pos)
    except varint.VarintError as exc:
        reason = f"{what} truncated" if exc.truncated else f"bad number in {what}"
        raise IodfError(f"damaged container: {reason}") from None


SECTION_SHAPE = 0x0001
SECTION_MODEL_ID = 0x0002
SECTION_TILING = 0x0003

_FIXED = struct.Struct("<4sBBB")  # magic, version, codec, flags; then header_len as a uint
FRAME_DIGEST_SIZE = 16
_CRC = struct.Struct("<I")
MIN_HEADER = _FIXED.size + 1 + _CRC.size

_READ_CHUNK = 1 * MiB


def codec_name(codec: int) -> str:
    return CODEC_NAMES.get(codec, f"unknown-{codec}")


# --------------------------------------------------------------------------- sections


class ImageShape(NamedTuple):
    """Section 0x0001: the decoded image's geometry."""

    height: int
    width: int
    channels: int
    bit_depth: int

    def pack(self) -> bytes:
        if not (
            1 <= self.height < 1 << 32
            and 1 <= self.width < 1 << 32
            and 1 <= self.channels < 256
            and 1 <= self.bit_depth <= 32
        ):
            raise ValueError(f"invalid image shape {self}")
        return b"".join(map(uint_bytes, (self.height, self.width, self.channels, self.bit_depth)))

    @classmethod
    def unpack(cls, value: bytes) -> ImageShape:
        shape = cls(*_uints(value, 4, "shape section"))
        if not (
            1 <= shape.height < 1 << 32
            and 1 <= shape.width < 1 << 32
            and 1 <= shape.channels < 256
            and 1 <= shape.bit_depth <= 32
        ):
            raise IodfError("damaged container: bad shape section")
        return shape


class Tiling(NamedTuple):
    """Section 0x0003: tile size the image was coded in."""

    tile_height: int
    tile_width: int

    def pack(self) -> bytes:
        if not (1 <= self.tile_height < 1 << 32 and 1 <= self.tile_width < 1 << 32):
            raise ValueError(f"invalid tiling {self}")
        return uint_bytes(self.tile_height) + uint_bytes(self.tile_width)

    @classmethod
    def unpack(cls, value: bytes) -> Tiling:
        tiling = cls(*_uints(value, 2, "tiling section"))
        if not (1 <= tiling.tile_height < 1 << 32 and 1 <= tiling.tile_width < 1 << 32):
            raise IodfError("damaged container: bad tiling section")
        return tiling


def _uints(value: bytes, count: int, what: str) -> list[int]:
    """Exactly ``count`` uints filling ``value``."""
    out, pos = [], 0
    for _ in range(count):
        number, pos = read_uint(value, pos, what)
        out.append(number)
    if pos != len(value):
        raise IodfError(f"damaged container: bad {what}")
    return out


class Sections:
    """Typed sections of a header: an ordered map ``type id -> bytes`` (FORMAT.md 1.3).

    The neural image path fills one in ``try_compress`` and gets it back in ``decompress``.
    """

    def __init__(self, items: Iterable[tuple[int, bytes]] = ()) -> None:
        self._items: dict[int, bytes] = {}
        for type_id, value in items:
            self.add(type_id, value)

    def add(self, type_id: int, value: bytes) -> None:
        """Add section ``type_id``; each type may appear once (ValueError otherwise)."""
        if not 1 <= type_id <= 0xFFFF:
            raise ValueError(f"section type {type_id} out of range 1..65535")
        if type_id in self._items:
            raise ValueError(f"section type {type_id:#06x} added twice")
        if len(value) > MAX_SECTION_LEN:
            raise ValueError(f"section {type_id:#06x} is larger than {MAX_SECTION_LEN} bytes")
        if len(self._items) >= MAX_SECTIONS:
            raise ValueError(f"more than {MAX_SECTIONS} sections")
        self._items[type_id] = bytes(value)

    def get(self, type_id: int) -> bytes | None:
        return self._items.get(type_id)

    def require(self, type_id: int) -> bytes:
        """The value of a section a decoder cannot do without; IodfError if it is missing."""
        value = self._items.get(type_id)
        if value is None:
            raise IodfError(f"damaged container: section {type_id:#06x} missing")
        return value

    def __contains__(self, type_id: object) -> bool:
        return type_id in self._items

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return iter(self._items.items())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sections) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Sections({[(hex(t), len(v)) for t, v in self]})"

    # Convenience accessors for the sections the container itself knows.
    def set_shape(self, shape: ImageShape) -> None:
        self.add(SECTION_SHAPE, shape.pack())

    def shape(self) -> ImageShape | None:
        value = self.get(SECTION_SHAPE)
        return None if value is None else ImageShape.unpack(value)

    def set_model_id(self, model_id: bytes) -> None:
        if not 1 <= len(model_id) <= 64:
            raise ValueError("model id must be 1..64 bytes")
        self.add(SECTION_MODEL_ID, model_id)

    def model_id(self) -> bytes | None:
        value = self.get(SECTION_MODEL_ID)
        if value is not None and not 1 <= len(value) <= 64:
            raise IodfError("damaged container: bad model id section")
        return value

    def set_tiling(self, tiling: Tiling) -> None:
        self.add(SECTION_TILING, tiling.pack())

    def tiling(self) -> Tiling | None:
        value = self.get(SECTION_TILING)
        return None if value is None else Tiling.unpack(value)


# --------------------------------------------------------------------------- header


@dataclass
class Header:
    codec: int
    original_length: int | None = None
    mode: int | None = None
    mtime_ns: int | None = None
    name: bytes | None = None
    sections: Sections = field(default_factory=Sections)
    version: int = field(default=VERSION, compare=False)  # as read; the writer chooses
    raw: bytes | None = field(default=None, compare=False, repr=False)  # version 2 as read

    def encode(self) -> bytes:
        if self.codec not in CODEC_NAMES:
            raise ValueError(f"unknown codec {self.codec}")
        flags = 0
        var = bytearray()
        if self.original_length is not None:
            flags |= FLAG_LENGTH
            var += uint_bytes(self.original_length)
        if self.mode is not None:
            if self.mode & ~0o777:
                raise ValueError(f"mode {self.mode:o} has bits besides 0o777")
            flags |= FLAG_MODE
            var += uint_bytes(self.mode)
        if self.mtime_ns is not None:
            flags |= FLAG_MTIME
            var += struct.pack("<q", self.mtime_ns)
        if self.name is not None:
            if not _valid_name(self.name):
                raise ValueError(f"invalid file name {self.name!r}")
            flags |= FLAG_NAME
            var += uint_bytes(len(self.name)) + self.name
        for type_id, value in self.sections:
            var += uint_bytes(type_id) + uint_bytes(len(value)) + value
        size = _FIXED.size + len(var) + _CRC.size
        header_len = size + 1
        while header_len != size + len(uint_bytes(header_len)):
            header_len += 1
        if header_len > MAX_HEADER:
            raise ValueError(f"header larger than {MAX_HEADER} bytes")
        head = _FIXED.pack(MAGIC, VERSION, self.codec, flags) + uint_bytes(header_len) + var
        return head + _CRC.pack(zlib.crc32(head))


def _valid_name(name: bytes) -> bool:
    return (
        1 <= len(name) <= MAX_NAME
        and b"/" not in name
        and b"\0" not in name
        and (name not in (b".", b".."))
    )


def read_header(f: BinaryIO) -> Header:
    """Read and verify a header; leaves ``f`` at the first record."""
    fixed = read_upto(f, _FIXED.size)
    if not fixed:
        raise IodfError("not an iodfz file (empty)")
    if not MAGIC.startswith(fixed[:4]):
        raise IodfError("not an iodfz file (bad magic)")
    if len(fixed) < 5:
        raise IodfError("truncated container (no complete header)")
    if fixed[4] not in VERSIONS:
        raise IodfError(
            f"unsupported format version {fixed[4]} (this iodfz reads version {VERSION} or"
            f" {VERSION_COMPACT}); damaged, or written by a newer iodfz"
        )
    if fixed[4] == VERSION_COMPACT:
        return _read_compact_header(_Tape(f, fixed))
    while len(fixed) < _FIXED.size + 4 and (len(fixed) == _FIXED.size or fixed[-1] & 0x80):
        more = f.read(1)  # header_len, a uint of at most 4 bytes below MAX_HEADER
        if not more:
            break
        fixed += more
    if len(fixed) <= _FIXED.size or fixed[-1] & 0x80:
        if len(fixed) < _FIXED.size + 4:
            raise IodfError("truncated container (no complete header)")
        raise IodfError("damaged container: header length out of bounds")
    _, _, codec, flags = _FIXED.unpack_from(fixed)
    header_len, _ = read_uint(fixed, _FIXED.size, "header length")
    if not max(MIN_HEADER, len(fixed) + _CRC.size) <= header_len <= MAX_HEADER:
        raise IodfError(f"damaged container: header length {header_len} out of bounds")
    rest = read_exact(f, header_len - len(fixed), "header")
    body = fixed + rest[:-4]
    if zlib.crc32(body) != _CRC.unpack(rest[-4:])[0]:
        raise IodfError("damaged container: header checksum mismatch")
    if codec not in CODEC_NAMES:
        raise IodfError(
            f"unknown codec {codec} in a version {VERSION} container (known: "
            + ", ".join(f"{k} {v}" for k, v in CODEC_NAMES.items())
            + "); written by a newer iodfz?"
        )
    if flags & ~_KNOWN_FLAGS:
        raise IodfError(f"unsupported header flags {flags:#06x}; written by a newer iodfz?")
    return _parse_header_body(codec, flags, memoryview(body)[len(fixed) :])


def _parse_header_body(codec: int, flags: int, var: memoryview) -> Header:
    pos = 0

    def number(what: str) -> int:
        nonlocal pos
        value, pos = read_uint(var, pos, what)
        return value

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(var):
            raise IodfError("damaged container: header fields overrun the header")
        out = bytes(var[pos : pos + n])
        pos += n
        return out

    header = Header(codec=codec)
    if flags & FLAG_LENGTH:
        header.original_length = number("header")
    if flags & FLAG_MODE:
        mode = number("header")
        if mode & ~0o777:
            raise IodfError("damaged container: invalid mode")
        header.mode = mode
    if flags & FLAG_MTIME:
        (header.mtime_ns,) = struct.unpack("<q", take(8))
    if flags & FLAG_NAME:
        name_len = number("header")
        if name_len > MAX_NAME:
            raise IodfError("damaged container: invalid file name")
        header.name = take(name_len)
        if not _valid_name(header.name):
            raise IodfError("damaged container: invalid file name")
    while pos < len(var):
        if len(header.sections) >= MAX_SECTIONS:
            raise IodfError(f"damaged container: more than {MAX_SECTIONS} sections")
        type_id = number("section")
        length = number("section")
        if not 1 <= type_id <= 0xFFFF or length > MAX_SECTION_LEN or type_id in header.sections:
            raise IodfError("damaged container: invalid section")
        header.sections.add(type_id, take(length))
    return header


# --------------------------------------------------------------------------- records


@dataclass
class Frame:
    codec: int
    raw_len: int
    digest: bytes  # frame_digest() of the frame's original bytes (its first 8 in version 2)
    payload: bytes | bytearray
    verified_digest: bytes | None = None  # the full frame_digest(), set by check_frame


class End(NamedTuple):
    frame_count: int
    original_length: int
    digest: bytes  # content digest (FORMAT.md 1.5)


def content_digest(frame_digests: list[bytes]) -> bytes:
    """The content digest of a container whose frames have these digests (FORMAT.md 1.5):
    the one frame's digest, else SHA-256/128 of the digests one after another."""
    if len(frame_digests) == 1:
        return frame_digests[0]
    return hashlib.sha256(b"".join(frame_digests)).digest()[:FRAME_DIGEST_SIZE]


def frame_digest(data: bytes | bytearray | memoryview) -> bytes:
    """Per-frame checksum: the first 16 bytes of SHA-256 of the frame's original bytes."""
    return hashlib.sha256(data).digest()[:FRAME_DIGEST_SIZE]


def check_frame(frame: Frame, data: bytes | bytearray, index: int) -> None:
    """Check a decoded frame against its length and digest (IodfError if they differ)."""
    digest = frame_digest(data)
    if len(data) != frame.raw_len or digest[: len(frame.digest)] != frame.digest:
        raise IodfError(f"checksum mismatch in frame {index}: decoded data differs")
    frame.verified_digest = digest


def frame_limit(codec: int) -> int:
    return MAX_IMAGE if codec == CODEC_IMAGE else MAX_FRAME


def read_upto(f: BinaryIO, n: int) -> bytes:
    """Read up to ``n`` (small) bytes, fewer only at end of file; pipes return short reads."""
    data = f.read(n)
    while 0 < len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data


def read_exact(f: BinaryIO, n: int, what: str) -> bytes | bytearray:
    """Read exactly ``n`` bytes; memory grows with the bytes actually received."""
    if n <= _READ_CHUNK:
        data = f.read(n)
        while len(data) < n:  # pipes return short reads
            more = f.read(n - len(data))
            if not more:
                raise IodfError(f"truncated container (file ends inside the {what})")
            data += more
        return data
    buf = bytearray(_READ_CHUNK)
    got = 0
    while got < n:
        if got == len(buf):
            buf += bytes(min(len(buf), n - len(buf)))
        with memoryview(buf) as view:
            k = f.readinto(view[got:])
        if not k:
            raise IodfError(f"truncated container (file ends inside the {what})")
        got += k
    return buf


class ContainerReader:
    """Iterate over a container's frames, checking every record's CRC and the layout.

    After :meth:`frames` is exhausted, :attr:`end` holds the end record, checked against
    the frames (count, length, and the content digest over their digests). The caller
    checks each frame's decoded bytes with :func:`check_frame`.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.header = read_header(f)
        self.end: End | None = None
        self._digests: list[bytes] = []

    def frames(self) -> Iterator[Frame]:
        if self.header.version == VERSION_COMPACT:
            yield from self._compact_frame()
            return
        f = self._f
        count = 0
        total = 0
        allowed = _FRAME_CODECS[self.header.codec]
        while True:
            kind = f.read(1)
            if kind == b"F":
                what = f"header of frame {count + 1}"
                head = kind + read_exact(f, 1, what)
                raw_len, head = _read_record_uint(f, head, what)
                payload_len, head = _read_record_uint(f, head, what)
                digest = read_exact(f, FRAME_DIGEST_SIZE, what)
                head += digest
                codec = head[1]
                limit = frame_limit(codec)
                if (
                    codec not in allowed
                    or not 1 <= raw_len <= limit
                    or payload_len > limit
                    or (codec == CODEC_STORED and payload_len != raw_len)
                    or (codec == CODEC_ZSTD and payload_len > raw_len)
                    or (codec == CODEC_IMAGE and count > 0)
                ):
                    raise IodfError(f"damaged container: invalid header of frame {count + 1}")
                payload = read_exact(f, payload_len, f"frame {count + 1}")
                crc = read_exact(f, _CRC.size, f"frame {count + 1}")
                if zlib.crc32(payload, zlib.crc32(head)) != _CRC.unpack(crc)[0]:
                    raise IodfError(f"damaged container: frame {count + 1} checksum mismatch")
                count += 1
                total += raw_len
                self._digests.append(bytes(digest))
                yield Frame(codec, raw_len, bytes(digest), payload)
            elif kind == b"E":
                self.end = self._read_end(kind, count, total)
                return
            elif not kind:
                raise IodfError("truncated container (end record missing)")
            else:
                raise IodfError(f"damaged container: unknown record after frame {count}")

    def _compact_frame(self) -> Iterator[Frame]:
        """The one frame of a version 2 container: the rest of the file is the payload, the
        content digest's first 8 bytes and a CRC-32 of the whole file (FORMAT.md 1.7)."""
        header = self.header
        raw_len = header.original_length
        assert raw_len is not None and header.raw is not None
        rest = _read_rest(self._f, MAX_IMAGE + COMPACT_TRAILER)
        if len(rest) < COMPACT_TRAILER + 1:
            raise IodfError("truncated container (file ends inside the image frame)")
        crc = _CRC.unpack_from(rest, len(rest) - _CRC.size)[0]
        if zlib.crc32(memoryview(rest)[: -_CRC.size], zlib.crc32(header.raw)) != crc:
            raise IodfError("damaged container: checksum mismatch (truncated or damaged)")
        digest = bytes(rest[-COMPACT_TRAILER : -_CRC.size])
        del rest[-COMPACT_TRAILER:]
        frame = Frame(CODEC_IMAGE, raw_len, digest, rest)
        yield frame
        self.end = End(1, raw_len, frame.verified_digest or digest)

    def _read_end(self, kind: bytes, count: int, total: int) -> End:
        f = self._f
        frame_count, raw = _read_record_uint(f, kind, "end record")
        length, raw = _read_record_uint(f, raw, "end record")
        digest = b"" if frame_count == 1 else read_exact(f, FRAME_DIGEST_SIZE, "end record")
        raw += digest
        crc = read_exact(f, _CRC.size, "end record")
        if zlib.crc32(raw) != _CRC.unpack(crc)[0]:
            raise IodfError("damaged container: end record checksum mismatch")
        header = self.header
        if (
            frame_count != count
            or length != total
            or (header.original_length is not None and header.original_length != length)
            or (header.codec == CODEC_IMAGE and count != 1)
        ):
            raise IodfError("damaged container: end record disagrees with the frames")
        expected = content_digest(self._digests)
        if digest and digest != expected:
            raise IodfError("damaged container: frames missing, repeated or out of order")
        if f.read(1):
            raise IodfError("damaged container: data after the end record")
        return End(frame_count, length, expected)


def _read_record_uint(f: BinaryIO, record: bytes, what: str) -> tuple[int, bytes]:
    """Read a uint that continues ``record`` from ``f``; (value, record with it appended)."""
    start = len(record)
    for _ in range(varint.MAX_BYTES):
        byte = f.read(1)
        if not byte:
            raise IodfError(f"truncated container (file ends inside the {what})")
        record += byte
        if not byte[0] & 0x80:
            break
    value, _ = read_uint(record, start, what)
    return value, record


class ContainerWriter:
    """Write a header, then frames with :meth:`write_frame`, then :meth:`finish`."""

    def __init__(self, f: BinaryIO, header: Header) -> None:
        self._f = f
        self.header = header
        self.frame_count = 0
        self.original_length = 0
        self.bytes_written = 0
        self._digests: list[bytes] = []
        self._crc = 0  # running CRC-32 of a version 2 container
        self._compact = compact_image(header.sections) if header.codec == CODEC_IMAGE else None
        if self._compact is None:
            self._write(header.encode())

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        self._f.write(data)
        self.bytes_written += len(data)
        self._crc = zlib.crc32(data, self._crc)

    def write_frame(
        self, codec: int, raw_len: int, digest: bytes, payload: bytes | bytearray
    ) -> None:
        """Write one frame; ``digest`` is :func:`frame_digest` of its ``raw_len`` bytes."""
        limit = frame_limit(codec)
        if codec not in _FRAME_CODECS[self.header.codec] or not 1 <= raw_len <= limit:
            raise ValueError(f"frame codec {codec} / length {raw_len} not allowed here")
        if len(payload) > limit or len(digest) != FRAME_DIGEST_SIZE:
            raise ValueError("payload too large for one frame, or bad digest")
        if self._compact is not None:
            if self.frame_count:
                raise ValueError("a version 2 container holds exactly one frame")
            self._write(_encode_compact_header(self.header, self._compact, raw_len))
            self._write(payload)
            self.frame_count, self.original_length = 1, raw_len
            self._digests.append(bytes(digest))
            return
        head = b"F" + bytes([codec]) + uint_bytes(raw_len) + uint_bytes(len(payload)) + digest
        self._write(head)
        self._write(payload)
        self._write(_CRC.pack(zlib.crc32(payload, zlib.crc32(head))))
        self.frame_count += 1
        self.original_length += raw_len
        self._digests.append(bytes(digest))

    def finish(self) -> bytes:
        """Write the end record; return the content digest."""
        if self.header.original_length not in (None, self.original_length):
            raise IodfError("input changed size while it was being compressed")
        digest = content_digest(self._digests)
        if self._compact is not None:
            if self.frame_count != 1:
                raise ValueError("a version 2 container holds exactly one frame")
            self._write(digest[:COMPACT_DIGEST])
            self._write(_CRC.pack(self._crc))
            return digest
        body = b"E" + uint_bytes(self.frame_count) + uint_bytes(self.original_length)
        if self.frame_count != 1:
            body += digest
        self._write(body + _CRC.pack(zlib.crc32(body)))
        return digest


# --------------------------------------------------------------------------- version 2

SECTION_IMAGE_FORMAT = 0x0100  # the neural image codec's own section (FORMAT.md 3.1)
IMAGE_EXACT = 1  # its flags
IMAGE_SIDE_ZSTD = 2
IMAGE_SIDE_NONE = 4  # no side part: the file is the canonical PNM of its pixels (3.4)
IMAGE_COMPACT = 8  # compact payload (3.4), stored in a version 2 container
IMAGE_FLAGS = IMAGE_EXACT | IMAGE_SIDE_ZSTD | IMAGE_SIDE_NONE | IMAGE_COMPACT
IMAGE_FORMATS = 4  # format ids 1..4
DEFAULT_TILE = 256
COMPACT_MODEL_ID = 2  # bytes of the model id a version 2 container keeps
COMPACT_DIGEST = 6  # bytes of the content digest a version 2 container keeps
COMPACT_TRAILER = COMPACT_DIGEST + _CRC.size
_C_MODE, _C_MODE_HIGH, _C_MTIME = 1, 2, 4  # version 2 flags; bits 4-7: name length
_C_NAME_SHIFT, _C_NAME_LONG = 4, 15  # a name of 15 bytes or more: its length follows
_IMG_TILE = 0x80  # image byte: a tile uint follows (else the tile is DEFAULT_TILE)


class CompactImage(NamedTuple):
    """The fields of the image byte and what follows it in a version 2 header."""

    flags: int  # IMAGE_EXACT | IMAGE_SIDE_ZSTD | IMAGE_SIDE_NONE
    fmt: int  # 1..4
    tile: int
    shape: ImageShape
    model_id: bytes

    def sections(self) -> Sections:
        """The typed sections a version 1 container would hold for the same image."""
        return Sections(
            [
                (SECTION_SHAPE, self.shape.pack()),
                (SECTION_MODEL_ID, self.model_id),
                (
                    SECTION_IMAGE_FORMAT,
                    bytes([self.flags | IMAGE_COMPACT, self.fmt]) + uint_bytes(self.tile),
                ),
            ]
        )


def pnm_header(shape: ImageShape) -> bytes:
    """The header of the canonical binary PNM of an image (``IMAGE_SIDE_NONE``)."""
    magic = b"P5" if shape.channels == 1 else b"P6"
    return b"%s\n%d %d\n255\n" % (magic, shape.width, shape.height)


def _canonical_length(shape: ImageShape) -> int:
    return len(pnm_header(shape)) + shape.height * shape.width * shape.channels


def compact_image(sections: Sections) -> CompactImage | None:
    """The version 2 fields of an image codec's sections, or None when they ask for version 1
    (no ``IMAGE_COMPACT`` flag). ValueError if they ask for it but do not fit it."""
    value = sections.get(SECTION_IMAGE_FORMAT)
    if value is None or len(value) < 2 or not value[0] & IMAGE_COMPACT:
        return None
    flags, fmt = value[0], value[1]
    tile, pos = varint.decode(value, 2)
    shape, model_id = sections.shape(), sections.model_id()
    if (
        len(sections) != 3
        or pos != len(value)
        or flags & ~IMAGE_FLAGS
        or not 1 <= fmt <= IMAGE_FORMATS
        or not 1 <= tile <= 4096
        or shape is None
        or not 1 <= shape.channels <= 4
        or shape.bit_depth != 8
        or model_id is None
        or len(model_id) != COMPACT_MODEL_ID
        or (flags & IMAGE_SIDE_NONE and shape.channels not in (1, 3))
    ):
        raise ValueError("image sections do not fit a version 2 container")
    return CompactImage(flags & ~IMAGE_COMPACT, fmt, tile, shape, model_id)


def _encode_compact_header(header: Header, image: CompactImage, raw_len: int) -> bytes:
    """Everything of a version 2 container before the payload (FORMAT.md 1.7)."""
    flags = 0
    var = bytearray()
    if header.mode is not None:
        if header.mode & ~0o777:
            raise ValueError(f"mode {header.mode:o} has bits besides 0o777")
        flags |= _C_MODE | (_C_MODE_HIGH if header.mode & 0o400 else 0)
        var.append(header.mode & 0xFF)
    if header.mtime_ns is not None:
        flags |= _C_MTIME
        var += struct.pack("<q", header.mtime_ns)
    if header.name is not None:
        if not _valid_name(header.name):
            raise ValueError(f"invalid file name {header.name!r}")
        n = len(header.name)
        flags |= min(n, _C_NAME_LONG) << _C_NAME_SHIFT
        var += (uint_bytes(n) if n >= _C_NAME_LONG else b"") + header.name
    shape = image.shape
    byte = (shape.channels - 1) | (image.fmt - 1) << 2 | image.flags << 4
    var += bytes([byte | (_IMG_TILE if image.tile != DEFAULT_TILE else 0)])
    var += uint_bytes(shape.height) + uint_bytes(shape.width)
    if image.tile != DEFAULT_TILE:
        var += uint_bytes(image.tile)
    var += image.model_id
    if image.flags & IMAGE_SIDE_NONE:
        if raw_len != _canonical_length(shape):
            raise ValueError("length differs from the canonical PNM's")
    else:
        var += uint_bytes(raw_len)
    if not 1 <= raw_len <= MAX_IMAGE:
        raise ValueError(f"image length {raw_len} out of bounds")
    return MAGIC + bytes([VERSION_COMPACT, flags]) + bytes(var)


class _Tape:
    """Reads a version 2 header from ``f`` after ``prefix`` (already read), keeping every byte
    for the CRC."""

    def __init__(self, f: BinaryIO, prefix: bytes) -> None:
        self.f = f
        self.data = bytearray(prefix)
        self.pos = 5  # after magic and version

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            more = read_upto(self.f, self.pos + n - len(self.data))
            self.data += more
            if self.pos + n > len(self.data):
                raise IodfError("truncated container (no complete header)")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def uint(self, what: str) -> int:
        raw = b""
        while len(raw) < varint.MAX_BYTES:
            raw += self.take(1)
            if not raw[-1] & 0x80:
                break
        return read_uint(raw, 0, what)[0]


def _read_compact_header(tape: _Tape) -> Header:
    (flags,) = tape.take(1)
    if flags & 8 or (flags & _C_MODE_HIGH and not flags & _C_MODE):
        raise IodfError(f"unsupported header flags {flags:#04x}; written by a newer iodfz?")
    header = Header(CODEC_IMAGE, version=VERSION_COMPACT)
    if flags & _C_MODE:
        header.mode = tape.take(1)[0] | (0o400 if flags & _C_MODE_HIGH else 0)
    if flags & _C_MTIME:
        (header.mtime_ns,) = struct.unpack("<q", tape.take(8))
    name_len = flags >> _C_NAME_SHIFT
    if name_len:
        if name_len == _C_NAME_LONG:
            name_len = tape.uint("header")
            if not _C_NAME_LONG <= name_len <= MAX_NAME:
                raise IodfError("damaged container: invalid file name")
        header.name = tape.take(name_len)
        if not _valid_name(header.name):
            raise IodfError("damaged container: invalid file name")
    (byte,) = tape.take(1)
    height, width = tape.uint("image shape"), tape.uint("image shape")
    tile = tape.uint("image tile") if byte & _IMG_TILE else DEFAULT_TILE
    model_id = tape.take(COMPACT_MODEL_ID)
    image_flags = byte >> 4 & 7
    shape = ImageShape(height, width, (byte & 3) + 1, 8)
    if (
        not (1 <= height < 1 << 32 and 1 <= width < 1 << 32 and 1 <= tile <= 4096)
        or (image_flags & IMAGE_SIDE_NONE and shape.channels not in (1, 3))
        or (image_flags & IMAGE_SIDE_NONE and image_flags & IMAGE_SIDE_ZSTD)
    ):
        raise IodfError("damaged container: bad image fields")
    image = CompactImage(image_flags, (byte >> 2 & 3) + 1, tile, shape, model_id)
    if image_flags & IMAGE_SIDE_NONE:
        length = _canonical_length(shape)
    else:
        length = tape.uint("image length")
    if not 1 <= length <= MAX_IMAGE:
        raise IodfError("damaged container: image length out of bounds")
    header.original_length = length
    header.sections = image.sections()
    header.raw = bytes(tape.data[: tape.pos])
    if len(tape.data) != tape.pos:  # read_upto never reads past what take() asked for
        raise AssertionError("header tape read ahead")  # pragma: no cover
    return header


def _read_rest(f: BinaryIO, limit: int) -> bytearray:
    """The rest of ``f`` (at most ``limit`` bytes, else IodfError), read in growing chunks."""
    out = bytearray()
    while True:
        chunk = f.read(min(_READ_CHUNK, limit + 1 - len(out)) or 1)
        if not chunk:
            return out
        out += chunk
        if len(out) > limit:
            raise IodfError("damaged container: image frame too large")
