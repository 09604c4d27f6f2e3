"""Library API: compress, decompress, test and inspect ``.iodf`` containers.

Stream functions work on binary file objects (files, pipes, BytesIO). The ``*_file``
functions add what a command-line tool needs: output through a temporary file that is renamed
into place only on success, no clobbering unless asked, metadata kept, optional verification.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from iodfz.codecs import (
    MAX_IMAGE_INPUT,
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
    ContainerReader,
    ContainerWriter,
    Frame,
    Header,
    check_frame,
    codec_name,
    content_digest,
    frame_digest,
    read_upto,
)
from iodfz.errors import IodfError
from iodfz.zstd_path import compress_stream, decode_frames

Progress = Callable[[int], None]
_SNIFF = 8  # bytes needed by looks_like_image


@dataclass(frozen=True)
class Result:
    """What :func:`compress` wrote."""

    codec: int
    original_size: int
    compressed_size: int
    digest: bytes  # content digest (FORMAT.md 1.5)


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
        header = self.header
        sections = header.sections
        shape = sections.shape()
        tiling = _tiling(header)
        model_id = sections.model_id()
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
            "shape": None if shape is None else vars(shape),
            "tiling": None if tiling is None else vars(tiling),
            "model_id": None if model_id is None else model_id.hex(),
            "guarantee": _guarantee(header),
            "sections": [f"{t:#06x}" for t, _ in sections],
            "content_digest": self.digest.hex(),
            "checksum": "verified" if self.verified else "container ok, content not decoded",
        }


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
) -> Result:
    """Compress all of ``src`` into one container on ``dst``.

    ``name``/``mode``/``mtime_ns`` are stored as the original file's metadata; ``length``,
    when the input size is known in advance, is stored too and checked against what was read
    (IodfError if the input changed). An input that starts like an image and is at most
    512 MiB is offered whole to the registered image codecs first; otherwise, or when they
    decline, it goes through zstd frame by frame in bounded memory.
    """
    options = options or Options()
    header = Header(CODEC_ZSTD, original_length=length, mode=mode, mtime_ns=mtime_ns, name=name)
    prefix = read_upto(src, _SNIFF)
    if looks_like_image(prefix) and image_codecs() and (length or 0) <= MAX_IMAGE_INPUT:
        prefix += read_upto(src, MAX_IMAGE_INPUT + 1 - len(prefix))
        if len(prefix) <= MAX_IMAGE_INPUT:
            result = _try_image(prefix, dst, options, header, progress)
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
        progress=progress,
    )
    digest = writer.finish()
    return Result(CODEC_ZSTD, writer.original_length, writer.bytes_written, digest)


def _try_image(
    data: bytes, dst: BinaryIO, options: Options, header: Header, progress: Progress | None
) -> Result | None:
    for codec in image_codecs():
        encoded = codec.try_compress(data, options.level, options)
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
        if progress:
            progress(len(data))
        return Result(codec.id, len(produced), writer.bytes_written, digest)
    return None


# --------------------------------------------------------------------------- decompress


def decompress(
    src: BinaryIO,
    dst: BinaryIO | None,
    *,
    threads: int = 0,
    progress: Progress | None = None,
) -> ContainerInfo:
    """Decode the container on ``src`` to ``dst`` (None: only verify), checking every
    frame's checksum and the container's.

    ``threads`` decoding threads (0: one per core).

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

    if image is None:
        outputs = decode_frames(counted_frames(), threads)
    else:
        outputs = (_decode_image(image, header, frame) for frame in counted_frames())
    with closing(outputs):  # stops the decoding threads early on error
        for data in outputs:
            if dst is not None:
                dst.write(data)
            if progress:
                progress(len(data))
    end = reader.end
    assert end is not None  # frames() returns only after reading the end record
    info.original_size = end.original_length
    info.digest = end.digest
    info.compressed_size = counted.count
    info.verified = True
    return info


def _decode_image(image: Any, header: Header, frame: Frame) -> bytes:
    try:
        data = image.decompress(header.sections, bytes(frame.payload))
    except IodfError:
        raise
    except Exception as exc:  # a plug-in decoder fed a damaged payload may raise anything
        raise IodfError(f"damaged container: image payload: {exc}") from exc
    check_frame(frame, data, 1)
    return data


def test(src: BinaryIO, *, threads: int = 0, progress: Progress | None = None) -> ContainerInfo:
    """Fully decode and verify without writing anything."""
    return decompress(src, None, threads=threads, progress=progress)


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


@contextmanager
def atomic_output(path: str | os.PathLike[str], force: bool) -> Iterator[BinaryIO]:
    """Yield a temporary file beside ``path``; on success it becomes ``path``, on error it is
    removed. Without ``force`` an existing ``path`` is never replaced (IodfError)."""
    path = Path(path)
    if not force and os.path.lexists(path):
        raise IodfError(f"{path} already exists (use -f to overwrite)")
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as out:  # opened by name so that out.name is the path
            yield out
        if force:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


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


def file_metadata(f: BinaryIO, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata :func:`compress` stores for the open file ``f`` named ``path``: base
    name, permission bits, mtime, and the length when it is a regular file."""
    st = os.fstat(f.fileno())
    return {
        "name": os.fsencode(os.path.basename(os.fspath(path))) or None,
        "mode": stat.S_IMODE(st.st_mode) & 0o777,
        "mtime_ns": st.st_mtime_ns,
        "length": st.st_size if stat.S_ISREG(st.st_mode) else None,
    }


def compress_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    options: Options | None = None,
    *,
    force: bool = False,
    verify: bool = False,
    progress: Progress | None = None,
) -> Result:
    """Compress file ``src`` to ``dst``, keeping its permission bits and times on ``dst``.

    With ``verify`` the written container is decoded and its SHA-256 compared with the
    input's before it is renamed into place (what ``--rm`` relies on).
    """
    if _same_file(src, dst):
        raise IodfError("input and output are the same file")
    with open(src, "rb") as fin:
        st = os.fstat(fin.fileno())
        with atomic_output(dst, force) as out:
            result = compress(fin, out, options, progress=progress, **file_metadata(fin, src))
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
) -> ContainerInfo:
    """Decompress container ``src`` to ``dst``, restoring the stored mode and mtime (the
    container file's own when none are stored). ``verify`` re-reads the output and checks
    its SHA-256 before it is renamed into place."""
    if _same_file(src, dst):
        raise IodfError("input and output are the same file")
    with open(src, "rb") as fin:
        st = os.fstat(fin.fileno())
        with atomic_output(dst, force) as out:
            result = decompress(fin, out, threads=threads, progress=progress)
            out.flush()
            header = result.header
            mode = st.st_mode if header.mode is None else header.mode
            mtime = st.st_mtime_ns if header.mtime_ns is None else header.mtime_ns
            _apply_metadata(out.fileno(), mode, st.st_atime_ns, mtime)
            if verify and _content_digest(out.name, result.frame_lengths) != result.digest:
                raise IodfError("verification failed: written output differs")
    return result


def _content_digest(path: str, frame_lengths: list[int]) -> bytes:
    """The content digest of file ``path`` cut into frames of the given lengths."""
    with open(path, "rb") as f:
        digests = [frame_digest(f.read(length)) for length in frame_lengths]
        if f.read(1):
            return b""
    return content_digest(digests)
