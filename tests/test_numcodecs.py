"""iodfz as a numcodecs codec and a Zarr 3 serializer (iodfz.numcodecs)."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

numcodecs = pytest.importorskip("numcodecs")

from iodfz import api  # noqa: E402
from iodfz.errors import IodfError  # noqa: E402
from iodfz.numcodecs import Iodfz, chunk_from_content  # noqa: E402


def photo(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    """A smooth, slightly noisy uint8 image: the flow beats zstd on it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    planes = [
        40 + 0.6 * yy + 0.4 * xx + 20 * np.sin((xx + 7 * k) / 9.0) + rng.normal(0, 3, (h, w))
        for k in range(c)
    ]
    return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


def codec_of(encoded: bytes) -> str:
    return api.info(io.BytesIO(encoded)).to_dict()["codec"]


def round_trip(codec: Iodfz, arr: np.ndarray) -> bytes:
    encoded = codec.encode(arr)
    decoded = codec.decode(encoded)
    assert decoded.dtype == arr.dtype and decoded.shape == arr.shape
    assert np.array_equal(decoded, arr)
    out = np.zeros_like(arr)
    assert codec.decode(encoded, out=out) is out
    assert np.array_equal(out, arr)
    return encoded


@pytest.mark.parametrize(
    "shape",
    [(40, 48, 3), (40, 48, 1), (40, 48, 4), (40, 48, 2), (3, 16, 24, 3), (2, 2, 16, 16, 4)],
    ids=["rgb", "gray", "rgba", "gray-alpha", "stack-rgb", "stack-2d-rgba"],
)
def test_image_chunks_go_through_the_flow(shape: tuple[int, ...]) -> None:
    h, w, c = int(np.prod(shape[:-2])), shape[-2], shape[-1]
    arr = photo(h, w, c).reshape(shape)
    encoded = round_trip(Iodfz(), arr)
    assert codec_of(encoded) == "neural-image"
    assert len(encoded) < len(numcodecs.Zstd(level=3).encode(arr))


def test_gray_layout_hw() -> None:
    arr = photo(2 * 40, 48, 1).reshape(2, 40, 48)
    encoded = round_trip(Iodfz(layout="hw"), arr)
    assert codec_of(encoded) == "neural-image"
    assert codec_of(Iodfz().encode(arr)) == "zstd"  # last axis 48: not channels under "hwc"


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(600, dtype=np.float32).reshape(10, 20, 3),
        np.arange(-300, 300, dtype=np.int16).reshape(20, 30),
        np.arange(24, dtype=">u4").reshape(2, 3, 4),
        np.array([True, False, True]),
        np.arange(4).astype("datetime64[s]"),
        photo(16, 16, 5),  # uint8 with 5 channels: not an image
        photo(16, 16, 3)[:, :, 0],  # uint8 2-D under "hwc": not an image
    ],
    ids=["float32", "int16", "big-endian-u4", "bool", "datetime", "uint8-5ch", "uint8-2d"],
)
def test_other_chunks_go_through_zstd(arr: np.ndarray) -> None:
    assert codec_of(round_trip(Iodfz(), arr)) == "zstd"


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((0, 5, 3), np.uint8),
        np.zeros((0,), np.int16),
        np.full((1, 1, 3), 7, np.uint8),
        np.full((1, 1, 1), 7, np.uint8),
        photo(5, 5, 4),
        photo(7, 300, 3),
    ],
    ids=["empty-rgb", "empty-int16", "1x1-rgb", "1x1-gray", "5x5-rgba", "7x300"],
)
def test_chunks_too_small_for_the_flow(arr: np.ndarray) -> None:
    round_trip(Iodfz(), arr)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 9), min_size=1, max_size=4),
    layout=st.sampled_from(["hwc", "hw"]),
    seed=st.integers(0, 2**16),
)
def test_small_uint8_chunks_of_any_shape(shape: list[int], layout: str, seed: int) -> None:
    arr = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    round_trip(Iodfz(layout=layout), arr)


def test_non_contiguous_and_bytes_input() -> None:
    arr = np.asfortranarray(photo(24, 32, 3))
    round_trip(Iodfz(), arr)
    flat = Iodfz().decode(Iodfz().encode(b"plain bytes"))
    assert flat.tobytes() == b"plain bytes"


def test_decode_into_a_flat_buffer() -> None:
    arr = photo(24, 32, 3)
    out = np.zeros(arr.nbytes, np.uint8)
    Iodfz().decode(Iodfz().encode(arr), out=out)
    assert out.tobytes() == arr.tobytes()


def test_registry_lookup_by_id() -> None:
    codec = numcodecs.get_codec({"id": "iodfz", "level": 1, "layout": "hw"})
    assert isinstance(codec, Iodfz)
    assert codec.get_config() == {"id": "iodfz", "level": 1, "layout": "hw"}
    assert numcodecs.get_codec(Iodfz().get_config()) == Iodfz()


def test_bad_config() -> None:
    with pytest.raises(ValueError):
        Iodfz(level=0)
    with pytest.raises(ValueError):
        Iodfz(layout="chw")


def test_damage_is_reported_not_decoded() -> None:
    encoded = bytearray(Iodfz().encode(photo(40, 48, 3)))
    encoded[len(encoded) // 2] ^= 0x10
    with pytest.raises(IodfError):
        Iodfz().decode(bytes(encoded))
    with pytest.raises(IodfError):
        Iodfz().decode(b"not a container")


def test_out_of_the_wrong_size() -> None:
    encoded = Iodfz().encode(np.arange(10, dtype=np.int32))
    with pytest.raises((ValueError, IodfError)):
        Iodfz().decode(encoded, out=np.zeros(9, np.int32))


def test_content_must_be_a_chunk() -> None:
    with pytest.raises(IodfError):
        chunk_from_content(b"II*\x00\x08\x00\x00\x00\x00\x00")
    with pytest.raises(IodfError):
        chunk_from_content(b"\x93NUMPY garbage")


def import_zarr3():  # type: ignore[no-untyped-def]
    return pytest.importorskip("zarr", minversion="3.1.3", reason="needs zarr >= 3.1.3")


def test_zarr3_array_round_trip(tmp_path) -> None:
    zarr = import_zarr3()
    from iodfz.numcodecs import Zarr3Iodfz

    data = np.stack([photo(40, 48, 3, seed) for seed in range(4)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "numcodecs codecs are not in the Zarr 3 spec"
        array = zarr.create_array(
            tmp_path / "a.zarr",
            shape=data.shape,
            chunks=(2, 40, 48, 3),
            dtype="uint8",
            serializer=Zarr3Iodfz(level=3),
            compressors=None,
        )
        array[:] = data
        again = zarr.open_array(tmp_path / "a.zarr", mode="r")
        assert np.array_equal(again[:], data)
        assert np.array_equal(again[1:3, 5:9], data[1:3, 5:9])
    chunks = sorted(
        p for p in (tmp_path / "a.zarr").rglob("*") if p.is_file() and p.name != "zarr.json"
    )
    assert len(chunks) == 2
    assert all(codec_of(p.read_bytes()) == "neural-image" for p in chunks)


def test_zarr3_array_opens_in_a_fresh_process(tmp_path) -> None:
    """The zarr.codecs and numcodecs.codecs entry points find the codec by its name alone."""
    zarr = import_zarr3()
    from iodfz.numcodecs import Zarr3Iodfz

    data = np.arange(2 * 9 * 10 * 2, dtype=np.uint8).reshape(2, 9, 10, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = zarr.create_array(
            tmp_path / "b.zarr",
            shape=data.shape,
            chunks=(1, 9, 10, 2),
            dtype="uint8",
            serializer=Zarr3Iodfz(level=1),
            compressors=None,
        )
        array[:] = data
    script = (
        "import sys, warnings, zarr; warnings.simplefilter('ignore');"
        "sys.stdout.write(zarr.open_array(sys.argv[1], mode='r')[:].tobytes().hex())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "b.zarr")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert bytes.fromhex(result.stdout) == data.tobytes()


def test_zarr_format_2_compressor(tmp_path) -> None:
    """In Zarr format 2 arrays the codec is a plain compressor and still sees image chunks."""
    zarr = import_zarr3()
    data = np.stack([photo(40, 48, 3, 7), photo(40, 48, 3, 8)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = zarr.create_array(
            tmp_path / "v2.zarr",
            shape=data.shape,
            chunks=(1, 40, 48, 3),
            dtype="uint8",
            compressors=Iodfz(),
            zarr_format=2,
        )
        array[:] = data
        assert np.array_equal(zarr.open_array(tmp_path / "v2.zarr", mode="r")[:], data)
    chunks = [p for p in (tmp_path / "v2.zarr").iterdir() if not p.name.startswith(".")]
    assert len(chunks) == 2
    assert all(codec_of(p.read_bytes()) == "neural-image" for p in chunks)
