"""The .iodf container: layout, validation, damage detection, the image codec plug point."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
import zstandard

from iodfz import api, codecs
from iodfz.codecs import Options
from iodfz.container import (
    CODEC_IMAGE,
    CODEC_ZSTD,
    MAGIC,
    ContainerReader,
    ContainerWriter,
    Header,
    ImageShape,
    Sections,
    Tiling,
    frame_digest,
    read_header,
    read_uint,
    uint_bytes,
)
from iodfz.errors import IodfError
from iodfz.zstd_path import compress_stream

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# What the fake image codec below takes: a PNG signature and a real IHDR (2x3 RGBA, 8-bit), so
# that the input is offered whole to image codecs.
_IHDR = (3).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes([8, 6, 0, 0, 0])
PNG = PNG_MAGIC + struct.pack(">I4s13sI", 13, b"IHDR", _IHDR, zlib.crc32(b"IHDR" + _IHDR))


def make(data: bytes, frame_size: int = 1 << 20, **meta: object) -> bytes:
    out = io.BytesIO()
    api.compress(io.BytesIO(data), out, Options(threads=1), frame_size=frame_size, **meta)
    return out.getvalue()


def unpack(blob: bytes) -> bytes:
    out = io.BytesIO()
    api.decompress(io.BytesIO(blob), out)
    return out.getvalue()


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_header_round_trip_all_fields() -> None:
    sections = Sections()
    sections.set_shape(ImageShape(480, 640, 3, 8))
    sections.set_model_id(bytes(range(32)))
    sections.set_tiling(Tiling(64, 128))
    sections.add(0x0100, b"private")
    header = Header(
        CODEC_ZSTD,
        original_length=12345,
        mode=0o640,
        mtime_ns=-5,
        name=b"caf\xe9.bin",
        sections=sections,
    )
    back = read_header(io.BytesIO(header.encode()))
    assert back == header
    assert back.sections.shape() == ImageShape(480, 640, 3, 8)
    assert back.sections.tiling() == Tiling(64, 128)
    assert back.sections.model_id() == bytes(range(32))
    assert back.sections.get(0x0100) == b"private"
    assert back.sections.get(0x0101) is None


def test_minimal_header_layout() -> None:
    blob = Header(CODEC_ZSTD).encode()
    assert blob[:4] == MAGIC and blob[4] == 1 and blob[5] == CODEC_ZSTD
    assert blob[6] == 0 and blob[7] == 12 and len(blob) == 12  # flags, header_len (a uint)
    assert struct.unpack("<I", blob[8:]) == (zlib.crc32(blob[:8]),)


@pytest.mark.parametrize(
    "bad",
    [
        lambda s: s.add(0, b""),
        lambda s: s.add(1 << 16, b""),
        lambda s: (s.add(5, b""), s.add(5, b"")),
        lambda s: s.set_model_id(b""),
        lambda s: s.set_shape(ImageShape(0, 1, 1, 8)),
    ],
)
def test_sections_reject_invalid(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        bad(Sections())


def test_header_rejects_invalid_name() -> None:
    for name in (b"", b"a/b", b"a\0", b".."):
        with pytest.raises(ValueError):
            Header(CODEC_ZSTD, name=name).encode()


def test_unknown_version_is_named() -> None:
    blob = bytearray(make(b"abc"))
    blob[4] = 7
    with pytest.raises(IodfError, match=r"version 7 .*version 1"):
        unpack(bytes(blob))


def test_unknown_codec_is_named_with_version() -> None:
    blob = Header(CODEC_ZSTD).encode()
    body = bytearray(blob[:-4])
    body[5] = 9
    with pytest.raises(IodfError, match=r"codec 9 in a version 1"):
        read_header(io.BytesIO(with_crc(bytes(body))))


def test_unknown_flags_rejected() -> None:
    body = bytearray(Header(CODEC_ZSTD).encode()[:-4])
    body[6] = 0x80
    with pytest.raises(IodfError, match="flags"):
        read_header(io.BytesIO(with_crc(bytes(body))))


@pytest.mark.parametrize("data", [b"", b"not an iodfz file at all", b"IOD", b"PK\x03\x04"])
def test_not_a_container(data: bytes) -> None:
    with pytest.raises(IodfError):
        unpack(data)


def test_trailing_data_rejected() -> None:
    with pytest.raises(IodfError, match="after the end record"):
        unpack(make(b"hello") + b"\0")


def test_concatenated_containers_rejected() -> None:
    with pytest.raises(IodfError):
        unpack(make(b"a") + make(b"b"))


def _corruption_sample() -> bytes:
    # Two zstd frames and one stored frame, with every header field present.
    data = b"text line\n" * 30 + os.urandom(90)
    sections = Sections()
    sections.set_model_id(b"\x01" * 32)
    out = io.BytesIO()
    header = Header(CODEC_ZSTD, len(data), 0o644, 10**18, b"f.txt", sections)
    writer = ContainerWriter(out, header)
    compress_stream(io.BytesIO(data), writer, 3, 1, frame_size=150)
    writer.finish()
    blob = out.getvalue()
    assert unpack(blob) == data
    return blob


def _damaged(blob: bytes) -> Iterator[bytes]:
    for pos in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(blob)
            damaged[pos] ^= mask
            yield bytes(damaged)
    for cut in range(len(blob)):
        yield blob[:cut]


def test_every_single_byte_flip_and_truncation_is_detected() -> None:
    blob = _corruption_sample()
    count = 0
    for damaged in _damaged(blob):
        with pytest.raises(IodfError):
            unpack(damaged)
        with pytest.raises(IodfError):
            api.info(io.BytesIO(damaged))
        count += 1
    assert count == 4 * len(blob)


def test_damaged_header_never_changes_metadata_silently() -> None:
    blob = make(b"x" * 100, name=b"name.txt", mode=0o600, mtime_ns=123)
    header_len, _ = read_uint(blob, 7, "header")
    for pos in range(header_len):
        damaged = bytearray(blob)
        damaged[pos] ^= 0x04
        with pytest.raises(IodfError):
            read_header(io.BytesIO(bytes(damaged)))


def _frame_record(codec: int, raw_len: int, payload_len: int) -> bytes:
    return b"F" + bytes([codec]) + uint_bytes(raw_len) + uint_bytes(payload_len) + bytes(16)


@pytest.mark.parametrize(
    "record",
    [
        _frame_record(CODEC_ZSTD, 64 << 20, 64 << 20),  # within bounds, file too short
        _frame_record(CODEC_ZSTD, 0xFFFFFFFF, 0xFFFFFFFF),  # out of bounds
        _frame_record(0, 1000, 0xFFFFFFFF),
        _frame_record(CODEC_ZSTD, 1, 2),  # zstd payload larger than its output
        _frame_record(7, 1, 1),
        b"F\x01",
        b"E" + bytes(10),
        b"F\x01" + b"\xff" * 12,  # over-long number
        b"Z",
    ],
)
def test_hostile_records_fail_without_large_allocation(record: bytes) -> None:
    blob = Header(CODEC_ZSTD).encode() + record + b"\0" * 100
    tracemalloc.start()
    try:
        with pytest.raises(IodfError):
            unpack(blob)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_hostile_header_length_fails_without_large_allocation() -> None:
    blob = Header(CODEC_ZSTD).encode()
    body = blob[:7] + uint_bytes(16 << 20) + blob[8:]
    tracemalloc.start()
    try:
        with pytest.raises(IodfError, match="truncated"):
            read_header(io.BytesIO(bytes(body)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    for length in (0xFFFFFFFF, 11, 1 << 28):
        body = blob[:7] + uint_bytes(length) + blob[8:]
        with pytest.raises(IodfError, match="out of bounds"):
            read_header(io.BytesIO(bytes(body)))


def test_zstd_frame_with_wrong_content_size_rejected() -> None:
    raw = b"a" * 1000
    payload = zstandard.ZstdCompressor(write_content_size=True).compress(raw + b"b")
    out = io.BytesIO()
    writer = ContainerWriter(out, Header(CODEC_ZSTD))
    writer.write_frame(CODEC_ZSTD, len(raw), frame_digest(raw), payload)
    writer.finish()
    with pytest.raises(IodfError, match="zstd size"):
        unpack(out.getvalue())


def test_checksum_mismatch_detected() -> None:
    out = io.BytesIO()
    writer = ContainerWriter(out, Header(CODEC_ZSTD))
    writer.write_frame(0, 3, frame_digest(b"abd"), b"abc")  # well-formed, wrong digest
    writer.finish()
    with pytest.raises(IodfError, match="checksum mismatch in frame 1"):
        unpack(out.getvalue())
    assert api.info(io.BytesIO(out.getvalue())).original_size == 3  # info does not decode


def test_content_digest_layout() -> None:
    blob = make(b"a" * 10 + b"b" * 10, frame_size=10)
    end = blob[-23:]
    digests = frame_digest(b"a" * 10) + frame_digest(b"b" * 10)
    assert end[:3] == b"E\x02\x14"  # frame count, original length
    assert end[3:19] == hashlib.sha256(digests).digest()[:16]
    assert end[19:] == struct.pack("<I", zlib.crc32(end[:19]))
    assert frame_digest(b"a" * 10) == hashlib.sha256(b"a" * 10).digest()[:16]
    # One frame: the end record carries no digest; the content digest is the frame's.
    single = make(b"a" * 10)
    assert single[-7:-4] == b"E\x01\x0a"
    assert api.info(io.BytesIO(single)).digest == frame_digest(b"a" * 10)


def test_reordered_frames_detected() -> None:
    blob = make(b"a" * 10 + b"b" * 10, frame_size=10)
    header_len, _ = read_uint(blob, 7, "header")
    size = (len(blob) - header_len - 23) // 2
    first = blob[header_len : header_len + size]
    second = blob[header_len + size : header_len + 2 * size]
    swapped = blob[:header_len] + second + first + blob[-23:]
    assert len(swapped) == len(blob)
    with pytest.raises(IodfError, match="out of order"):
        unpack(swapped)


def test_header_length_must_match_frames() -> None:
    out = io.BytesIO()
    writer = ContainerWriter(out, Header(CODEC_ZSTD, original_length=4))
    writer.write_frame(0, 3, frame_digest(b"abc"), b"abc")
    with pytest.raises(IodfError, match="changed size"):
        writer.finish()


# --------------------------------------------------------------------------- image plug point


class FakeImageCodec:
    """Stores the image reversed, with a shape section; declines anything without PNG magic."""

    id = CODEC_IMAGE
    name = "fake"

    def __init__(self) -> None:
        self.seen_options: list[Options] = []

    def try_compress(self, data: bytes, level: int, options: Options, progress=None):  # type: ignore[no-untyped-def]
        self.seen_options.append(options)
        if not data.startswith(PNG) or b"decline" in data:
            return None
        sections = Sections()
        sections.set_shape(ImageShape(2, 3, 4, 8))
        sections.set_model_id(b"\xab" * 32)
        return sections, data[::-1], data

    def guarantee(self, sections: Sections) -> str:
        return "byte-exact"

    def try_compress_many(self, datas, level, options):  # type: ignore[no-untyped-def]
        return {}  # nothing done together: try_compress does each

    def decompress(self, sections: Sections, payload: bytes, progress=None) -> bytes:  # type: ignore[no-untyped-def]
        assert sections.shape() == ImageShape(2, 3, 4, 8)
        if payload.endswith(b"boom"):
            raise IndexError("decoder tripped")
        return payload[::-1]

    def decompress_many(self, items):  # type: ignore[no-untyped-def]
        return {}


@pytest.fixture
def fake_codec(monkeypatch: pytest.MonkeyPatch) -> FakeImageCodec:
    codec = FakeImageCodec()
    monkeypatch.setattr(codecs, "image_codecs", lambda: (codec,))
    monkeypatch.setattr(api, "image_codecs", lambda: (codec,))
    monkeypatch.setattr(api, "image_codec", lambda i: codec if i == codec.id else None)
    return codec


def test_fake_codec_satisfies_protocol() -> None:
    assert isinstance(FakeImageCodec(), codecs.ImageCodec)


def test_image_path_round_trip(fake_codec: FakeImageCodec) -> None:
    image = PNG + b"pixels" * 100
    blob = make(image, name=b"a.png")
    reader = ContainerReader(io.BytesIO(blob))
    assert reader.header.codec == CODEC_IMAGE
    assert unpack(blob) == image
    facts = api.info(io.BytesIO(blob)).to_dict()
    assert facts["codec"] == "neural-image"
    assert facts["shape"] == {"height": 2, "width": 3, "channels": 4, "bit_depth": 8}
    assert facts["model_id"] == "ab" * 32


def test_options_reach_image_codec(fake_codec: FakeImageCodec) -> None:
    out = io.BytesIO()
    api.compress(io.BytesIO(PNG + b"x"), out, Options(level=5, pixels=True))
    assert fake_codec.seen_options == [Options(level=5, pixels=True)]


def test_declined_and_non_images_go_to_zstd(fake_codec: FakeImageCodec) -> None:
    for data in (PNG + b"decline" * 50, b"plain text " * 50):
        blob = make(data)
        assert ContainerReader(io.BytesIO(blob)).header.codec == CODEC_ZSTD
        assert unpack(blob) == data
    assert len(fake_codec.seen_options) == 1  # plain text never offered


def test_image_decoder_exception_is_a_clean_error(fake_codec: FakeImageCodec) -> None:
    out = io.BytesIO()
    sections = Sections()
    sections.set_shape(ImageShape(2, 3, 4, 8))
    writer = ContainerWriter(out, Header(CODEC_IMAGE, sections=sections))
    writer.write_frame(CODEC_IMAGE, 5, bytes(16), b"xboom")
    writer.finish()
    with pytest.raises(IodfError, match="image payload: decoder tripped"):
        unpack(out.getvalue())


def test_image_container_without_codec_names_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "image_codec", lambda codec_id: None)
    out = io.BytesIO()
    writer = ContainerWriter(out, Header(CODEC_IMAGE))
    writer.write_frame(CODEC_IMAGE, 3, frame_digest(b"abc"), b"abc")
    writer.finish()
    with pytest.raises(IodfError, match=r"codec 2 \(neural-image\)"):
        unpack(out.getvalue())


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (PNG, True),
        (b"P6\n640 480\n255\n", True),
        (b"P7\nWIDTH", True),
        (b"BM\x36\x00\x0c\x00", True),
        (b"II*\x00\x08\x00", True),
        (b"MM\x00*\x00\x00", True),
        (b"P9\n", False),
        (b"Plain", False),
        (b"\x89PNG", False),
        (b"", False),
    ],
)
def test_image_magic(head: bytes, expected: bool) -> None:
    assert codecs.looks_like_image(head) is expected
