"""Where the bits go: per image set, each level's factored-out half, the top latents, the
coder's overhead and the container's bytes per file (bits per sub-pixel of the image).

    python scripts/bits_breakdown.py ../shared/data/kodak ../shared/data/dev/imagenet32 \
        [--model iodf-w64] [--json out.json] [--blocks 64]

Ideal code lengths come from the model's own integer tables on the tiles the codec cuts
(padding included); "coder" is what the rANS streams add to them, "container" what the whole
`.iodf` of a binary PPM of the same pixels adds to the streams (header, sections, name).
``--blocks N`` also sets the model's bits on each N×N square against JPEG-XL's on the square
alone, in eighths from JPEG-XL's cheapest squares to its costliest: where a gap to JPEG-XL is.
``--model iodf-predictive-3`` (a predictive coder: no levels) breaks its bits down by plane
(Y, Co, Cg) and parameter part instead.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from iodfz import api, zoo
from iodfz.codec import image as image_codec
from iodfz.codec import pixels as pixel_codec
from iodfz.codec import predictive, tiling
from iodfz.codecs import FLOW_FROM, TRY_ALL_FROM, Options
from iodfz.engine import flow
from iodfz.engine.backends import backend_for
from iodfz.engine.model import Model
from iodfz.engine.tables import latent_bits

IMAGE_SUFFIXES = {".png", ".ppm", ".bmp", ".tif", ".tiff"}


def ideal_bit_maps(model: Model, backend: flow.Backend, rgb: np.ndarray) -> list[np.ndarray]:
    """Ideal bits of each level's factored-out half, then of the top, summed over channels,
    at each position of that level's grid over the padded image (the codec's tiles put back
    in place): level l's map is 2^(l+1) times smaller than the image, the top's 2^levels."""
    h, w, _ = rgb.shape
    hp, wp = (tiling.padded_size(n, model.levels) for n in (h, w))
    image = np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    shifts = range(1, model.levels + 1)  # level l's grid: 2^(l+1) pixels a side; the top's 2^L
    maps = [np.zeros((hp >> k, wp >> k)) for k in shifts]
    for rects in tiling.batches(hp, wp, tiling.TILE):
        x = np.stack([image[y : y + th, x0 : x0 + tw] for y, x0, th, tw in rects])
        parts = latent_bits(model, *flow.forward(model, backend, x))
        for bits, k, grid in zip(parts, shifts, maps, strict=True):
            for tile, (y, x0, th, tw) in zip(bits.sum(-1), rects, strict=True):
                grid[y >> k : (y + th) >> k, x0 >> k : (x0 + tw) >> k] = tile
    return maps


def block_bits(maps: list[np.ndarray], model: Model, block: int) -> np.ndarray:
    """Bits of each block×block square of the padded image (block a multiple of 2^levels)."""
    total = 0
    for grid, k in zip(maps, range(1, model.levels + 1), strict=True):
        f = block >> k
        gh, gw = grid.shape[0] // f, grid.shape[1] // f
        total = total + grid[: gh * f, : gw * f].reshape(gh, f, gw, f).sum((1, 3))
    return total


def ppm(rgb: np.ndarray) -> bytes:
    h, w, _ = rgb.shape
    return b"P6\n%d %d\n255\n" % (w, h) + rgb.tobytes()


def breakdown(model: Model, folder: Path, limit: int | None, block: int | None = None) -> dict:
    """One set's row. The container columns need the CLI to write every file with this model
    (or zstd), so they are None otherwise: for a model kept only to decode, or one whose card's
    ``pixels`` range leaves these images to another model. With ``block``, the row's
    ``blocks`` compare block×block squares against JPEG-XL (:func:`against_jpegxl`)."""
    backend = backend_for(model)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    level = writing_level(model)
    levels = np.zeros(model.levels)
    stream_bits = container_bits = subpixels = 0.0
    written = level is not None
    squares: list[tuple[float, float]] = []
    for path in files:
        rgb = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
        maps = ideal_bit_maps(model, backend, rgb)
        levels += [float(m.sum()) for m in maps]
        if block:
            squares += square_bits(rgb, block_bits(maps, model, block), block)
        stream_bits += 8 * sum(map(len, pixel_codec.encode(model, backend, rgb)))
        if written:
            out = io.BytesIO()
            result = api.compress(io.BytesIO(ppm(rgb)), out, Options(level=level), name=b"a.ppm")
            other = result.model_id and not model.model_id.startswith(result.model_id)
            written = not other  # (no model id: zstd took the file, as it may)
            container_bits += 8 * len(out.getvalue())
        subpixels += rgb.size
    names = [f"level{i}" for i in range(model.levels - 1)] + ["top"]
    row: dict = {name: v / subpixels for name, v in zip(names, levels, strict=True)}
    row["ideal"] = float(levels.sum()) / subpixels
    row["coder"] = (stream_bits - levels.sum()) / subpixels
    row["container"] = (container_bits - stream_bits) / subpixels if written else None
    row["total"] = container_bits / subpixels if written else None
    row["container_bytes_per_file"] = (
        (container_bits - stream_bits) / 8 / len(files) if written else None
    )
    row["files"] = len(files)
    if block:
        row["blocks"] = against_jpegxl(squares, 3 * block * block)
    return row


def predictive_breakdown(
    coder: predictive.PredictiveCoder, folder: Path, limit: int | None
) -> dict:
    """One set's row for a predictive coder (no levels: one residual per sample): the ideal
    bits of each plane (Y, Co, Cg) with the parameters its encoder chooses, the parameter
    part, what the rANS streams add to those, and what the whole `.iodf` of a binary PPM adds
    (None unless the default level writes every file with this coder)."""
    tables = predictive.coding_tables(coder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    planes = np.zeros(3)
    part_bits = stream_bits = container_bits = subpixels = 0.0
    written = True
    for path in files:
        rgb = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
        counts, part, params = predictive.chosen_counts(coder, rgb)
        plane = np.searchsorted(coder.plane_first, counts.context, "right") - 1
        for k in range(3):
            fields = (counts.context, counts.phase, counts.residual, counts.count)
            only = predictive.Counts(*(f[plane == k] for f in fields))
            planes[k] += predictive.cost(only, params, tables)
        part_bits += 8 * len(part)
        stream_bits += 8 * sum(map(len, predictive.encode(rgb, coder)))
        out = io.BytesIO()
        result = api.compress(io.BytesIO(ppm(rgb)), out, Options(), name=b"a.ppm")
        written &= bool(result.model_id) and coder.model_id.startswith(result.model_id)
        container_bits += 8 * len(out.getvalue())
        subpixels += rgb.size
    row: dict = {name: v / subpixels for name, v in zip(("Y", "Co", "Cg"), planes, strict=True)}
    row["params"] = part_bits / subpixels
    row["ideal"] = float(planes.sum()) / subpixels
    row["coder"] = (stream_bits - part_bits - planes.sum()) / subpixels
    row["container"] = (container_bits - stream_bits) / subpixels if written else None
    row["total"] = container_bits / subpixels if written else None
    row["container_bytes_per_file"] = (
        (container_bits - stream_bits) / 8 / len(files) if written else None
    )
    row["files"] = len(files)
    return row


def square_bits(rgb: np.ndarray, bits: np.ndarray, block: int) -> list[tuple[float, float]]:
    """(the model's bits, JPEG-XL e7's bits coding it alone) of every block×block square
    inside the image (padding left out); ``bits`` from :func:`block_bits`."""
    import imagecodecs

    pairs = []
    for by in range(rgb.shape[0] // block):
        for bx in range(rgb.shape[1] // block):
            square = rgb[by * block : (by + 1) * block, bx * block : (bx + 1) * block]
            coded = imagecodecs.jpegxl_encode(np.ascontiguousarray(square), lossless=True, effort=7)
            pairs.append((float(bits[by, bx]), 8.0 * len(coded)))
    return pairs


def against_jpegxl(squares: list[tuple[float, float]], subpixels: int) -> list[list[float]]:
    """The squares sorted by JPEG-XL's cost and cut into eighths: per eighth, JPEG-XL's and
    the model's bpsp and the model's excess as a share of the set's bits per sub-pixel."""
    ours, theirs = (np.array(column) / subpixels for column in zip(*squares, strict=True))
    rows = []
    for part in np.array_split(np.argsort(theirs, kind="stable"), 8):
        excess = float((ours[part] - theirs[part]).sum()) / len(ours)
        rows.append([float(theirs[part].mean()), float(ours[part].mean()), excess])
    return rows


def writing_level(model: Model) -> int | None:
    """The first ``--level`` that writes with this model; None for a decode-only model."""
    card = next(c for c in zoo.cards() if c["model_id"] == model.model_id)
    return next(iter(zoo.served_levels(card)), None)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("sets", type=Path, nargs="+", help="folders of images")
    ap.add_argument(
        "--model", help="model name (default: the default level's model for each set's images)"
    )
    ap.add_argument("--limit", type=int, help="at most this many files per set")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument(
        "--blocks",
        type=int,
        metavar="N",
        help="also compare N×N squares against JPEG-XL e7 on each square alone (imagecodecs)",
    )
    args = ap.parse_args()
    coder = next((c for c in predictive.CODERS if c.name == args.model), None)
    if args.model and coder is None:
        card = next((c for c in zoo.cards() if c.get("name") == args.model), None)
        if card is None:
            raise SystemExit(f"bits_breakdown: no installed model named {args.model}")
    rows = {}
    for folder in args.sets:
        if coder is not None:
            rows[str(folder)] = {
                "model": coder.name,
                **predictive_breakdown(coder, folder, args.limit),
            }
            continue
        model = zoo.load_by_id(card["model_id"]) if args.model else default_model(folder)
        name = next(c["name"] for c in zoo.cards() if c["model_id"] == model.model_id)
        if args.blocks and args.blocks % (1 << model.levels):
            raise SystemExit(f"bits_breakdown: --blocks must be a multiple of {1 << model.levels}")
        rows[str(folder)] = {"model": name, **breakdown(model, folder, args.limit, args.blocks)}
    skip = ("model", "container_bytes_per_file", "files", "blocks")
    parts = list(dict.fromkeys(k for row in rows.values() for k in row if k not in skip))
    table = Table(title="bits per sub-pixel")
    for k in ["set", "model", *parts, "container B/file"]:
        table.add_column(k, justify="left" if k in ("set", "model") else "right")
    for set_name, row in rows.items():
        cells = ["—" if row.get(k) is None else f"{row[k]:.4f}" for k in parts]
        per_file = row["container_bytes_per_file"]
        per_file_cell = "—" if per_file is None else f"{per_file:.1f}"
        table.add_row(Path(set_name).name, row["model"], *cells, per_file_cell)
    console = Console(width=max(120, Console().width))
    console.print(table)
    for set_name, row in rows.items():
        if "blocks" not in row:
            continue
        blocks = Table(
            title=f"{Path(set_name).name}: {args.blocks}×{args.blocks} squares by JPEG-XL's cost"
        )
        for k in ("eighth", "JPEG-XL e7 alone", row["model"], "excess, bpsp of the set"):
            blocks.add_column(k, justify="right")
        for i, (jxl, model_bpsp, excess) in enumerate(row["blocks"], 1):
            blocks.add_row(str(i), f"{jxl:.3f}", f"{model_bpsp:.3f}", f"{excess:+.4f}")
        console.print(blocks)
    if args.json:
        args.json.write_text(json.dumps({"sets": rows}, indent=1) + "\n")


def default_model(folder: Path) -> Model:
    """The flow ``--level FLOW_FROM`` tries on the set's first image (cards' ``pixels`` ranges
    pick by size; the default level codes every image with the predictive coder alone); for an
    image that level also gives to the predictive coder alone (more than
    ``PREDICTIVE_FROM_PIXELS``), the flow whose card's range holds it at the max levels."""
    first = next(p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
    width, height = Image.open(first).size
    pixels = width * height
    if pixels > image_codec.PREDICTIVE_FROM_PIXELS:
        for card in zoo.cards():
            low, high = zoo.served_pixels(card)
            if (
                TRY_ALL_FROM in zoo.served_levels(card)
                and low <= pixels <= high
                and card.get("pixels")
            ):
                return zoo.load_by_id(card["model_id"])
    model = zoo.for_level(FLOW_FROM, pixels=pixels)
    if model is None:
        raise SystemExit(f"bits_breakdown: no model for --level {FLOW_FROM}")
    return model


if __name__ == "__main__":
    main()
