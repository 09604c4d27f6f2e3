"""Library API: compress, decompress, test and inspect ``.iodf`` containers.

Stream functions work on binary file objects (files, pipes, BytesIO). The ``*_file``
functions add what a command-line tool needs: output through a temporary file that is renamed
into place only on success, no clobbering unless asked, metadata kept, optional verification.
"""

from __future__ import annotations

import base64
import errno
import io
import os
import stat
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from iodfz.codecs import (
    ImageCodec,
    Options,
    describe,
    image_codec,
    image_codecs,
    looks_like_image,
)
from iodfz.container import (
    CODEC_IMAGE,
    CODEC_ZSTD,
    FRAME_SIZE,
    MAGIC,
    ContainerReader,
    ContainerWriter,
    Frame,
    Header,
    Sections,
    check_frame,
    codec_name,
    content_digest,
    frame_digest,
    read_upto,
)
from iodfz.errors import IodfError
from iodfz.limits import (
    MAX_AHEAD_BYTES,
    MAX_AHEAD_FILE,
    MAX_AHEAD_SAMPLES,
    MAX_IMAGE_FILE,
    MAX_PIXELS,
    MAX_UNSIZED_IMAGE,
    MiB,
    max_side_bytes,
)
from iodfz.zstd_path import compress_stream, decode_frames

Progress = Callable[[int], None]
Encoded = tuple[Sections, bytes, bytes]  # an image codec's result: sections, payload, output
_SNIFF = 32  # bytes read before deciding whether to try the image codecs
_READ_STEP = 1 * MiB
TEMP_SUFFIX = ".iodfz-tmp"  # temporary outputs: ``.NAME.XXXXXXXX.iodfz-tmp`` (see temp_name)


class Result(NamedTuple):
    """What :func:`compress` wrote."""

    codec: int
    original_size: int
    compressed_size: int
    digest: bytes  # content digest (FORMAT.md 1.5)
    exact: bool = True  # decompression gives back the very input bytes (else: same pixels)
    model_id: str | None = None  # hex id prefix of the model an image went through


@dataclass
class ContainerInfo:
    """What a container holds. ``verified`` is True once its content was decoded and every
    frame matched its checksum; :func:`info` only checks the container's own checksums."""

    header: Header
    compressed_size: int = 0
    original_size: int = 0
    digest: bytes = b""
    frame_codecs: Counter[int] = field(default_factory=Counter)
    frame_lengths: list[int] = field(default_factory=list)
    verified: bool = False

    @property
    def codec(self) -> int:
        return self.header.codec

    @property
    def ratio(self) -> float:
        """Original size / compressed size (higher is better)."""
        return self.original_size / self.compressed_size if self.compressed_size else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Everything ``iodfz info`` shows. A malformed known section (which only the codec that
        uses it would refuse) shows as None and is listed under ``malformed``."""
        header = self.header
        sections = header.sections
        malformed: list[str] = []
        shape = _section("shape", sections.shape, malformed)
        tiling = _section("tiling", lambda: _tiling(header), malformed)
        model_id = _section("model_id", sections.model_id, malformed)
        model_hex = None if model_id is None else model_id.hex()
        return {
            "codec": codec_name(header.codec),
            "codec_id": header.codec,
            "original_size": self.original_size,
            "compressed_size": self.compressed_size,
            "ratio": round(self.ratio, 4),
            "frames": sum(self.frame_codecs.values()),
            "frame_codecs": {codec_name(c): n for c, n in sorted(self.frame_codecs.items())},
            "name": None if header.name is None else os.fsdecode(header.name),
            "mode": None if header.mode is None else f"{header.mode:04o}",
            "mtime_ns": header.mtime_ns,
            "shape": None if shape is None else shape._asdict(),
            "tiling": None if tiling is None else tiling._asdict(),
            "model_id": model_hex,
            "model_name": None if model_hex is None else (model_card(model_hex) or {}).get("name"),
            "guarantee": _section("guarantee", lambda: _guarantee(header), malformed),
            "sections": [f"{t:#06x}" for t, _ in sections],
            "malformed": malformed,
            "content_digest": self.digest.hex(),
            "checksum": "verified" if self.verified else "container ok, content not decoded",
        }


def _section(what: str, get: Callable[[], Any], malformed: list[str]) -> Any:
    try:
        return get()
    except (IodfError, ValueError):
        malformed.append(what)
        return None


def model_card(model_id: str) -> dict[str, Any] | None:
    """The installed model card whose id starts with ``model_id`` (hex: the prefix a container
    keeps), or None."""
    try:
        from iodfz import zoo
        from iodfz.codec import predictive
    except ImportError:  # the engine cannot be imported: no models either
        return None
    card = zoo.card_for(model_id)
    coders = predictive.coders_for(model_id)
    if card is None and coders:
        return {"name": coders[0].name, "model_id": coders[0].model_id}
    return card


def _tiling(header: Header) -> Any:
    """The tiling section, or the tile size the image codec keeps in its own section."""
    tiling = header.sections.tiling()
    codec = image_codec(header.codec) if header.codec == CODEC_IMAGE else None
    if tiling is None and hasattr(codec, "tiling"):
        tiling = codec.tiling(header.sections)
    return tiling


def _guarantee(header: Header) -> str:
    """What decoding gives back: ``byte-exact``, or the image codec's own description."""
    codec = image_codec(header.codec) if header.codec == CODEC_IMAGE else None
    return "byte-exact" if codec is None else codec.guarantee(header.sections)


class _CountingReader(io.RawIOBase):
    """Read-through wrapper that counts bytes, for the compressed size of a stream."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)
        self.count += n or 0
        return n or 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data


class _Meter:
    """One input's progress, passed on to ``progress`` in bytes and only as it moves forward:
    an image codec reports the share of its work done, the zstd path and the frames written
    their bytes; when the image codec declines, the zstd path's bytes count from where the
    codec got to, not twice."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0  # bytes reported
        self.position = 0  # bytes the zstd path (or the frames written) got to

    def to(self, done: int) -> None:
        if self.progress is not None and done > self.done:
            self.progress(done - self.done)
            self.done = done

    def share(self, fraction: float) -> None:
        self.to(int(self.total * min(fraction, 1.0)))

    def add(self, n: int) -> None:
        self.position += n
        self.to(self.position)


@dataclass
class Ahead:
    """Image results worked out for several inputs at once (:func:`compress_ahead`,
    :func:`decompress_ahead`: images of one shape coded together), for :func:`compress` and
    :func:`decompress` to take by content. A result is used only for the very bytes (and
    options) it was worked out from, and the container's digest checks it as any other; an
    input not found here is done as usual."""

    options: Options | None = None
    encoded: dict[tuple[int, bytes], Encoded | None] = field(default_factory=dict)
    decoded: dict[tuple[int, tuple[tuple[int, bytes], ...], bytes], bytes] = field(
        default_factory=dict
    )

    def encode(
        self, codec: ImageCodec, data: bytes, options: Options, meter: _Meter
    ) -> Encoded | None:
        """``codec.try_compress(data, …)``, worked out ahead or now."""
        key = (codec.id, data)
        if options == self.options and key in self.encoded:
            return self.encoded[key]
        return codec.try_compress(data, options.level, options, meter.share)

    def decode(self, codec: ImageCodec, header: Header, payload: bytes, meter: _Meter) -> bytes:
        """``codec.decompress(header.sections, payload)``, worked out ahead or now."""
        found = self.decoded.get(_decode_key(header, payload))
        if found is not None:
            return found
        return codec.decompress(header.sections, payload, meter.share)


def _decode_key(header: Header, payload: bytes) -> tuple[int, tuple[tuple[int, bytes], ...], bytes]:
    return header.codec, tuple(header.sections), payload


def _read_small(path: str | os.PathLike[str], wanted: Callable[[bytes], bool]) -> bytes | None:
    """The whole of regular file ``path`` if it has at most ``MAX_AHEAD_FILE`` bytes and its
    first bytes are ``wanted``, else None (also when it cannot be read: doing it alone will
    say why). Never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    with open(fd, "rb") as f:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_AHEAD_FILE:
                return None
            head = f.read(_SNIFF)
            if not wanted(head):
                return None
            data = head + f.read(MAX_AHEAD_FILE + 1 - len(head))
        except OSError:
            return None
    return data if len(data) <= MAX_AHEAD_FILE else None


def _read_ahead(
    paths: Iterable[str | os.PathLike[str]], wanted: Callable[[bytes], bool]
) -> Iterator[bytes]:
    """The contents of the small files among ``paths`` that start as ``wanted``, up to
    ``MAX_AHEAD_BYTES`` in all."""
    total = 0
    for path in paths:
        data = _read_small(path, wanted)
        if data is None:
            continue
        total += len(data)
        if total > MAX_AHEAD_BYTES:
            return
        yield data


def compress_ahead(
    paths: Sequence[str | os.PathLike[str]], options: Options | None = None
) -> Ahead:
    """What the image codec makes of those of ``paths`` that are images of at most
    ``MAX_AHEAD_SAMPLES``, worked out at once (see :class:`Ahead`); the files are then
    compressed one by one with ``ahead=``."""
    options = options or Options()
    ahead = Ahead(options)
    codecs = image_codecs()
    datas = [data for data in _read_ahead(paths, looks_like_image) if _small_image(data)]
    if not codecs or len(datas) < 2:
        return ahead
    codec = codecs[0]
    for i, result in codec.try_compress_many(datas, options.level, options).items():
        ahead.encoded[(codec.id, datas[i])] = result
    return ahead


def _small_image(data: bytes) -> bool:
    """Whether ``data``, a regular file's contents, is an image that :func:`compress` offers
    whole to the image codecs, and whose header declares at most ``MAX_AHEAD_SAMPLES``: larger
    ones are not parsed twice for nothing (they are batched within them, tile by tile)."""
    from iodfz import formats

    head = data[:_SNIFF]
    fmt = formats.sniff(head)
    shape = None if fmt is None else _declared_shape(fmt, head)
    if shape is None or shape[0] * shape[1] * shape[2] > MAX_AHEAD_SAMPLES:
        return False
    return looks_like_image(head) and 0 < len(data) <= image_bound(head, sized=True)


def decompress_ahead(paths: Sequence[str | os.PathLike[str]]) -> Ahead:
    """The decoded contents of those of ``paths`` that are containers of images of at most
    ``MAX_AHEAD_SAMPLES`` (as their headers declare them), worked out at once (see
    :class:`Ahead`); the files are then decompressed one by one with ``ahead=``, which checks
    each against its digest as usual."""
    ahead = Ahead()
    codec = image_codec(CODEC_IMAGE)
    keys, items = [], []
    for blob in _read_ahead(paths, lambda head: head.startswith(MAGIC)):
        try:
            reader = ContainerReader(io.BytesIO(blob))
            shape = reader.header.sections.shape()
            if reader.header.codec != CODEC_IMAGE or shape is None:
                continue
            if shape.height * shape.width * shape.channels > MAX_AHEAD_SAMPLES:
                continue
            frames = list(reader.frames())
        except IodfError:
            continue
        if len(frames) == 1:
            payload = bytes(frames[0].payload)
            keys.append(_decode_key(reader.header, payload))
            items.append((reader.header.sections, payload))
    if codec is None or len(items) < 2:
        return ahead
    for i, data in codec.decompress_many(items).items():
        ahead.decoded[keys[i]] = data
    return ahead


# --------------------------------------------------------------------------- compress


def compress(
    src: BinaryIO,
    dst: BinaryIO,
    options: Options | None = None,
    *,
    name: bytes | None = None,
    mode: int | None = None,
    mtime_ns: int | None = None,
    length: int | None = None,
    progress: Progress | None = None,
    frame_size: int = FRAME_SIZE,
    ahead: Ahead | None = None,
) -> Result:
    """Compress all of ``src`` into one container on ``dst``.

    ``name``/``mode``/``mtime_ns`` are stored as the original file's metadata; ``length``,
    when the input size is known in advance, is stored too and checked against what was read
    (IodfError if the input changed). An input that starts like an image is read whole, up to
    what its header allows an image of at most ``MAX_PIXELS`` samples to take, and offered to
    the registered image codecs; otherwise, or when they decline, it goes through zstd frame
    by frame in bounded memory. ``ahead`` may hold the image codec's result for this input,
    worked out with others (:func:`compress_ahead`).
    """
    options = options or Options()
    meter = _Meter(progress, length or 0)
    header = Header(CODEC_ZSTD, original_length=length, mode=mode, mtime_ns=mtime_ns, name=name)
    prefix: bytes | bytearray = read_upto(src, _SNIFF)
    bound = image_bound(prefix, sized=length is not None)
    bound = bound if looks_like_image(prefix) and image_codecs() else 0
    if 0 < (length or 0) <= bound or (length is None and bound):
        prefix = _read_into(src, bytearray(prefix), bound + 1)
        if len(prefix) <= bound:
            meter.total = len(prefix)
            result = _try_image(bytes(prefix), dst, options, header, meter, ahead or Ahead())
            if result is not None:
                return result
    writer = ContainerWriter(dst, header)
    compress_stream(
        src,
        writer,
        options.level,
        options.threads,
        prefix=prefix,
        frame_size=frame_size,
        progress=meter.add if progress else None,
    )
    digest = writer.finish()
    return Result(CODEC_ZSTD, writer.original_length, writer.bytes_written, digest)


def _read_into(src: BinaryIO, buf: bytearray, limit: int) -> bytearray:
    """Append from ``src`` to ``buf`` until it holds ``limit`` bytes or the input ends (no
    second copy of the data, so memory is the bytes read)."""
    while len(buf) < limit:
        data = src.read(min(_READ_STEP, limit - len(buf)))
        if not data:
            break
        buf += data
    return buf


def image_bound(head: bytes, sized: bool = True) -> int:
    """The most bytes worth reading whole for an input that starts with ``head``: what an image
    of at most ``MAX_PIXELS`` samples with the dimensions declared in ``head`` (a PNG, BMP or
    PNM header) can take, pixels and side information; when ``head`` does not declare them
    (TIFF), ``MAX_IMAGE_FILE`` for an input of known length (``sized``), else
    ``MAX_UNSIZED_IMAGE``; 0 when the image could not be taken anyway — too large,
    malformed, or no format the image codecs know (``formats.sniff``)."""
    from iodfz import formats  # imported here: plain zstd runs never pay for numpy

    fmt = formats.sniff(head)
    if fmt is None:
        return 0
    shape = _declared_shape(fmt, head)
    if shape is None:  # a TIFF, or a PNM header longer than ``head``: the file size bounds it
        if fmt in ("png", "bmp"):
            return 0
        return MAX_IMAGE_FILE if sized else MAX_UNSIZED_IMAGE
    height, width, channels, sample_bytes = shape
    samples = height * width * channels
    if not 0 < samples <= MAX_PIXELS:
        return 0
    raw = height * (width * channels * sample_bytes + 4)  # + row padding or filter byte
    bound = raw + raw // 64 + max_side_bytes(height, width, channels) + MiB  # + deflate blocks
    return min(bound, MAX_IMAGE_FILE)


def _declared_shape(fmt: str, head: bytes) -> tuple[int, int, int, int] | None:
    """(height, width, channels, bytes per sample) declared by a PNG, BMP or PNM header."""
    if fmt == "png" and head[12:16] == b"IHDR" and len(head) >= 26:
        width, height, depth, colour = struct.unpack_from(">IIBB", head, 16)
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 0)
        return height, width, channels, 2 if depth == 16 else 1
    if fmt == "bmp" and len(head) >= 30:
        width, height, _, bits = struct.unpack_from("<iiHH", head, 18)
        return abs(height), abs(width), max(1, -(-bits // 8)), 1
    if fmt == "pnm":
        fields = head[2:].split(b"#")[0].split()
        if len(fields) >= 3 and all(f.isdigit() for f in fields[:3]):
            channels = 1 if head[1:2] == b"5" else 3
            return int(fields[1]), int(fields[0]), channels, 2 if int(fields[2]) > 255 else 1
    return None


def _try_image(
    data: bytes, dst: BinaryIO, options: Options, header: Header, meter: _Meter, ahead: Ahead
) -> Result | None:
    for codec in image_codecs():
        encoded = ahead.encode(codec, data, options, meter)
        if encoded is None:
            continue
        sections, payload, produced = encoded
        header.codec = codec.id
        header.sections = sections
        if header.original_length is not None:
            header.original_length = len(produced)
        writer = ContainerWriter(dst, header)
        writer.write_frame(codec.id, len(produced), frame_digest(produced), payload)
        digest = writer.finish()
        meter.to(len(data))
        model_id = sections.model_id()
        return Result(
            codec.id,
            len(produced),
            writer.bytes_written,
            digest,
            exact=produced is data or produced == data,
            model_id=None if model_id is None else model_id.hex(),
        )
    return None


# --------------------------------------------------------------------------- decompress


def decompress(
    src: BinaryIO,
    dst: BinaryIO | None,
    *,
    threads: int = 0,
    progress: Progress | None = None,
    ahead: Ahead | None = None,
) -> ContainerInfo:
    """Decode the container on ``src`` to ``dst`` (None: only verify), checking every
    frame's checksum and the container's.

    ``threads`` decoding threads (0: one per core). ``ahead`` may hold this container's image,
    decoded with others (:func:`decompress_ahead`).

    Raises IodfError on any damage. Output is written frame by frame, so on error ``dst`` may
    hold a prefix of the data; the ``*_file`` functions remove such partial output.
    """
    counted = _CountingReader(src)
    reader = ContainerReader(counted)  # type: ignore[arg-type]
    header = reader.header
    image = None
    if header.codec == CODEC_IMAGE:
        image = image_codec(CODEC_IMAGE)
        if image is None:
            raise IodfError(
                f"needs codec {describe(CODEC_IMAGE)}, which is not available in this install"
                " (the neural image path needs the 'torch' extra)"
            )
    info = ContainerInfo(header)

    def counted_frames() -> Iterator[Frame]:
        for frame in reader.frames():
            info.frame_codecs[frame.codec] += 1
            info.frame_lengths.append(frame.raw_len)
            yield frame

    meter = _Meter(progress, 0)
    if image is None:
        outputs = decode_frames(counted_frames(), threads)
    else:
        ahead = ahead or Ahead()
        outputs = (_decode_image(image, header, frame, meter, ahead) for frame in counted_frames())
    with closing(outputs):  # stops the decoding threads early on error
        for data in outputs:
            if dst is not None:
                dst.write(data)
            meter.add(len(data))
    end = reader.end
    assert end is not None  # frames() returns only after reading the end record
    info.original_size = end.original_length
    info.digest = end.digest
    info.compressed_size = counted.count
    info.verified = True
    return info


def _decode_image(image: Any, header: Header, frame: Frame, meter: _Meter, ahead: Ahead) -> bytes:
    meter.total = frame.raw_len
    try:
        data = ahead.decode(image, header, bytes(frame.payload), meter)
    except IodfError:
        raise
    except Exception as exc:  # a plug-in decoder fed a damaged payload may raise anything
        raise IodfError(f"damaged container: image payload: {exc}") from exc
    check_frame(frame, data, 1)
    return data


def test(
    src: BinaryIO,
    *,
    threads: int = 0,
    progress: Progress | None = None,
    ahead: Ahead | None = None,
) -> ContainerInfo:
    """Fully decode and verify without writing anything."""
    return decompress(src, None, threads=threads, progress=progress, ahead=ahead)


def info(src: BinaryIO) -> ContainerInfo:
    """Read the header and walk all records, checking the container's checksums (CRCs and
    content digest) without decoding."""
    counted = _CountingReader(src)
    reader = ContainerReader(counted)  # type: ignore[arg-type]
    result = ContainerInfo(reader.header)
    for frame in reader.frames():
        result.frame_codecs[frame.codec] += 1
        result.frame_lengths.append(frame.raw_len)
    assert reader.end is not None
    result.original_size = reader.end.original_length
    result.digest = reader.end.digest
    result.compressed_size = counted.count
    return result


# --------------------------------------------------------------------------- files


def temp_name(name: str) -> str:
    """The prefix of the temporary file written before ``name`` is renamed into place:
    ``.NAME.`` (``_new_temporary`` adds 8 random characters and :data:`TEMP_SUFFIX`), with NAME cut
    so that a long name's temporary file is shorter than the name itself — whatever name is
    legal, its temporary file is too."""
    raw = os.fsencode(name)
    fixed = 2 + 8 + len(TEMP_SUFFIX)
    keep = raw if len(raw) + fixed <= 64 else raw[: len(raw) - fixed - 1]
    return f".{os.fsdecode(keep)}."


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary output of iodfz (never taken as an input by ``-r``)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


# Write errors that mean the output could not be written (not that the input is unreadable).
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


_LIVE_TEMPORARIES: set[str] = set()
_TEMP_ATTEMPTS = 100


def _new_temporary(path: Path) -> str:
    """Create an empty temporary file beside ``path`` (``temp_name`` + 8 random characters +
    TEMP_SUFFIX, mode 0o600) and return its name. The name joins _LIVE_TEMPORARIES *before*
    the file exists: a signal handler that unwinds or cleans up at any instant finds every
    temporary file this process made (``tempfile.mkstemp`` leaves a window after it)."""
    folder = os.fspath(path.parent or ".")
    for _ in range(_TEMP_ATTEMPTS):
        token = base64.b32encode(os.urandom(5)).decode("ascii").lower()
        tmp = os.path.join(folder, f"{temp_name(path.name)}{token}{TEMP_SUFFIX}")
        _LIVE_TEMPORARIES.add(tmp)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return tmp
        except OSError as exc:  # not created (EEXIST: another process's, never ours to remove)
            _LIVE_TEMPORARIES.discard(tmp)
            if not isinstance(exc, FileExistsError):
                raise
        except BaseException:  # a signal that unwinds, before or after the file appeared
            with suppress(OSError):
                os.unlink(tmp)
            _LIVE_TEMPORARIES.discard(tmp)
            raise
    raise FileExistsError(errno.EEXIST, "no free temporary file name", os.path.join(folder, "."))


def remove_temporary_outputs() -> None:
    """Remove every temporary output this process is writing now (from a signal handler that
    then leaves at once: whatever the main thread was blocked in never has to unwind)."""
    for tmp in list(_LIVE_TEMPORARIES):
        with suppress(OSError):
            os.unlink(tmp)


@contextmanager
def atomic_output(path: str | os.PathLike[str], force: bool) -> Iterator[BinaryIO]:
    """Yield a temporary file beside ``path``; on success it becomes ``path``, on error or
    interruption it is removed. Without ``force`` an existing ``path`` is never replaced
    (IodfError). An OSError about the temporary file, or a write error that has no file name
    (disk full), is re-raised naming ``path``."""
    path = Path(path)
    if not force and os.path.lexists(path):
        raise IodfError(f"{path} already exists (use -f to overwrite)")
    tmp = None
    try:
        tmp = _new_temporary(path)
        with open(tmp, "wb") as out:  # opened by name so that out.name is the path
            yield out
        if force:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and _about_output(exc, tmp):
            exc.filename = os.fspath(path)
        raise
    finally:
        _LIVE_TEMPORARIES.discard(tmp or "")


def _about_output(exc: OSError, tmp: str | None) -> bool:
    if exc.filename is None:
        return exc.errno in _OUTPUT_ERRNOS
    return (
        tmp is None
        or os.fspath(exc.filename) == tmp
        or is_temp_name(os.path.basename(os.fspath(exc.filename)))
    )


def default_mode() -> int:
    """Permission bits of a new file here: 0o666 less the umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _link_no_clobber(tmp: str, path: Path) -> None:
    """Rename ``tmp`` to ``path`` unless ``path`` appeared meanwhile (link() is atomic)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise IodfError(f"{path} already exists (use -f to overwrite)") from None
    except OSError:  # file system without hard links
        if os.path.lexists(path):
            raise IodfError(f"{path} already exists (use -f to overwrite)") from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _apply_metadata(fd: int, mode: int, atime_ns: int, mtime_ns: int) -> None:
    os.chmod(fd, mode & 0o777)
    os.utime(fd, ns=(atime_ns, mtime_ns))


def file_metadata(f: BinaryIO, path: str | os.PathLike[str], names: bool = True) -> dict[str, Any]:
    """The metadata :func:`compress` stores for the open file ``f`` named ``path``: base
    name, permission bits and mtime (unless ``names`` is false: gzip's ``-n``), and the length
    when it is a regular file."""
    st = os.fstat(f.fileno())
    length = st.st_size if stat.S_ISREG(st.st_mode) else None
    if not names:
        return {"length": length}
    return {
        "name": os.fsencode(os.path.basename(os.fspath(path))) or None,
        "mode": stat.S_IMODE(st.st_mode) & 0o777,
        "mtime_ns": st.st_mtime_ns,
        "length": length,
    }


def compress_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    options: Options | None = None,
    *,
    force: bool = False,
    verify: bool = False,
    progress: Progress | None = None,
    ahead: Ahead | None = None,
    names: bool = True,
) -> Result:
    """Compress file ``src`` to ``dst``, keeping its permission bits and times on ``dst``.

    With ``verify`` the written container is decoded and its SHA-256 compared with the
    input's before it is renamed into place (what ``--rm`` relies on). ``ahead``: see
    :func:`compress`; ``names``: see :func:`file_metadata`.
    """
    if _same_file(src, dst):
        raise IodfError("input and output are the same file")
    with open(src, "rb") as fin:
        st = os.fstat(fin.fileno())
        with atomic_output(dst, force) as out:
            meta = file_metadata(fin, src, names)
            result = compress(fin, out, options, progress=progress, ahead=ahead, **meta)
            out.flush()
            _apply_metadata(out.fileno(), st.st_mode, st.st_atime_ns, st.st_mtime_ns)
            if verify:
                with open(out.name, "rb") as check:
                    if test(check).digest != result.digest:
                        raise IodfError("verification failed: written container differs")
    return result


def decompress_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    force: bool = False,
    verify: bool = False,
    threads: int = 0,
    progress: Progress | None = None,
    ahead: Ahead | None = None,
) -> ContainerInfo:
    """Decompress container ``src`` to ``dst``, restoring the stored mode and mtime (the
    container file's own when none are stored). ``verify`` re-reads the output and checks
    its SHA-256 before it is renamed into place. ``ahead``: see :func:`decompress`."""
    if _same_file(src, dst):
        raise IodfError("input and output are the same file")
    with open(src, "rb") as fin:
        return decompress_to_file(
            fin,
            dst,
            force=force,
            verify=verify,
            threads=threads,
            progress=progress,
            fallback=os.fstat(fin.fileno()),
            ahead=ahead,
        )


def decompress_to_file(
    src: BinaryIO,
    dst: str | os.PathLike[str],
    *,
    force: bool = False,
    verify: bool = False,
    threads: int = 0,
    progress: Progress | None = None,
    fallback: os.stat_result | None = None,
    ahead: Ahead | None = None,
) -> ContainerInfo:
    """Decompress the container on stream ``src`` to file ``dst`` with the stored mode and
    mtime; where none are stored, ``fallback``'s (the container file's), else a new file's
    mode (umask) and the current time."""
    with atomic_output(dst, force) as out:
        result = decompress(src, out, threads=threads, progress=progress, ahead=ahead)
        out.flush()
        header = result.header
        if header.mode is not None:
            mode = header.mode
        else:
            mode = fallback.st_mode if fallback is not None else default_mode()
        os.chmod(out.fileno(), mode & 0o777)
        mtime = header.mtime_ns if header.mtime_ns is not None else None
        if mtime is None and fallback is not None:
            mtime = fallback.st_mtime_ns
        if mtime is not None:
            atime = fallback.st_atime_ns if fallback is not None else mtime
            os.utime(out.fileno(), ns=(atime, mtime))
        if verify and _content_digest(out.name, result.frame_lengths) != result.digest:
            raise IodfError("verification failed: written output differs")
    return result


def compress_to_file(
    src: BinaryIO,
    dst: str | os.PathLike[str],
    options: Options | None = None,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> Result:
    """Compress stream ``src`` (no metadata to keep) to a new file ``dst`` with a new file's
    permission bits."""
    with atomic_output(dst, force) as out:
        result = compress(src, out, options, progress=progress)
        out.flush()
        os.chmod(out.fileno(), default_mode())
    return result


def _content_digest(path: str, frame_lengths: list[int]) -> bytes:
    """The content digest of file ``path`` cut into frames of the given lengths."""
    with open(path, "rb") as f:
        digests = [frame_digest(f.read(length)) for length in frame_lengths]
        if f.read(1):
            return b""
    return content_digest(digests)
