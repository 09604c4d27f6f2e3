"""A stack of images in Zarr 3 with the iodfz codec, written and read through dask.array on a
Dask cluster, next to the same array with numcodecs' Zstd; then a tree of image files
compressed on the same cluster with iodfz.dask.compress_tree and checked byte for byte.

    pip install 'iodfz[zarr,dask]'
    python examples/zarr_dask_stack.py                      # 8 Kodak crops of 256x256
    python examples/zarr_dask_stack.py --images 24 --size 512 --files 0

Each chunk holds one image; dask encodes and decodes every chunk in the task that writes or
reads it, on whichever worker runs that task.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import zarr
from distributed import Client, LocalCluster
from PIL import Image
from zarr.codecs.numcodecs import Zstd
from zarr.errors import ZarrUserWarning

from iodfz import api
from iodfz.dask import compress_tree
from iodfz.numcodecs import Zarr3Iodfz

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"


def kodak_crops(folder: Path, count: int, size: int) -> np.ndarray:
    """Centre crops of the first ``count`` images, (count, size, size, 3) uint8."""
    crops = []
    for path in sorted(folder.glob("*.png"))[:count]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        y, x = (rgb.shape[0] - size) // 2, (rgb.shape[1] - size) // 2
        crops.append(rgb[y : y + size, x : x + size])
    if len(crops) < count:
        raise SystemExit(f"{folder}: needs {count} PNG images of at least {size}x{size}")
    return np.stack(crops)


def write_stack(store: Path, stack: np.ndarray, codecs: dict) -> zarr.Array:
    array = zarr.create_array(
        store, shape=stack.shape, chunks=(1, *stack.shape[1:]), dtype="uint8", **codecs
    )
    da.from_array(stack, chunks=array.chunks).to_zarr(array)  # encoded on the workers
    return array


def stored_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file() and p.name != "zarr.json")


def zarr_stack(stack: np.ndarray, level: int, work: Path) -> list[dict]:
    rows = []
    variants = {
        f"iodfz level {level}": {"serializer": Zarr3Iodfz(level=level), "compressors": None},
        "numcodecs Zstd level 3": {"compressors": [Zstd(level=3)]},
        "numcodecs Zstd level 19": {"compressors": [Zstd(level=19)]},
    }
    for name, codecs in variants.items():
        store = work / (name.replace(" ", "_") + ".zarr")
        start = time.perf_counter()
        write_stack(store, stack, codecs)
        written = time.perf_counter() - start
        start = time.perf_counter()
        back = da.from_zarr(str(store)).compute()  # decoded on the workers
        read = time.perf_counter() - start
        size = stored_bytes(store)
        rows.append(
            {
                "codec": name,
                "bytes": size,
                "bpsp": round(8 * size / stack.size, 4),
                "exact": bool(np.array_equal(back, stack)),
                "write_s": round(written, 2),
                "read_s": round(read, 2),
            }
        )
    return rows


def _decodes_to(container: str, original: str) -> str:
    """``bytes`` if ``container`` decodes to ``original``'s bytes, ``pixels`` if only to its
    pixels (a PNG re-encoded under ``--pixels``), else ``different``."""
    with open(container, "rb") as f, tempfile.SpooledTemporaryFile() as out:
        api.decompress(f, out)  # type: ignore[arg-type]
        out.seek(0)
        data = out.read()
    if data == Path(original).read_bytes():
        return "bytes"
    same = np.array_equal(
        np.asarray(Image.open(io.BytesIO(data))), np.asarray(Image.open(original))
    )
    return "pixels" if same else "different"


def tree_round_trip(
    client: Client, images: list[Path], level: int, pixels: bool, work: Path
) -> dict:
    tree = work / "tree"
    for i, path in enumerate(images):
        folder = tree / f"part{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, folder / path.name)
    start = time.perf_counter()
    results = compress_tree([tree], client, output_dir=work / "out", level=level, pixels=pixels)
    seconds = time.perf_counter() - start
    done = [r for r in results if r.ok]
    checks = client.gather(client.map(_decodes_to, [r.dst for r in done], [r.src for r in done]))
    return {
        "files": len(results),
        "compressed": len(done),
        "errors": [f"{r.src}: {r.error}" for r in results if r.error],
        "byte_exact": checks.count("bytes"),
        "pixel_exact_only": checks.count("pixels"),
        "different": checks.count("different"),
        "original_bytes": sum(r.original_size for r in done),
        "compressed_bytes": sum(r.compressed_size for r in done),
        "compress_s": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kodak", type=Path, default=KODAK, help="folder of PNG images")
    parser.add_argument("--images", type=int, default=8, help="crops in the Zarr stack")
    parser.add_argument("--size", type=int, default=256, help="crop side")
    parser.add_argument("--files", type=int, default=24, help="images in the tree (0: none)")
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--pixels", action="store_true", help="tree: accept pixel-exact PNGs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    # "Numcodecs codecs are not in the Zarr version 3 specification": known, and accepted here.
    warnings.filterwarnings("ignore", category=ZarrUserWarning)

    stack = kodak_crops(args.kodak, args.images, args.size)
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as lc,
        Client(lc) as client,
    ):
        work = Path(tmp)
        report = {"machine": f"{args.workers} workers x 1 thread", "stack": list(stack.shape)}
        report["zarr"] = zarr_stack(stack, args.level, work)
        if args.files:
            images = sorted(args.kodak.glob("*.png"))[: args.files]
            report["tree"] = tree_round_trip(client, images, args.level, args.pixels, work)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"Zarr 3 array {tuple(stack.shape)} uint8, one image per chunk ({stack.nbytes} bytes)")
    print(f"{'codec':<26}{'bytes':>10}{'bpsp':>8}{'exact':>7}{'write s':>9}{'read s':>8}")
    for row in report["zarr"]:
        print(
            f"{row['codec']:<26}{row['bytes']:>10}{row['bpsp']:>8.3f}{row['exact']!s:>7}"
            f"{row['write_s']:>9.2f}{row['read_s']:>8.2f}"
        )
    if "tree" in report:
        t = report["tree"]
        print(
            f"compress_tree: {t['compressed']}/{t['files']} files compressed, "
            f"{t['byte_exact']} decode byte-exact, {t['pixel_exact_only']} pixel-exact "
            f"(--pixels), {t['different']} different; {t['original_bytes']} -> "
            f"{t['compressed_bytes']} bytes in {t['compress_s']} s; errors: {t['errors'] or 'none'}"
        )


if __name__ == "__main__":
    main()
