"""Where the bits go: per image set, each level's factored-out half, the top latents, the
coder's overhead and the container's bytes per file (bits per sub-pixel of the image).

    python scripts/bits_breakdown.py ../shared/data/kodak ../shared/data/dev/imagenet32 \
        [--model iodf-w64] [--json out.json]

Ideal code lengths come from the model's own integer tables on the tiles the codec cuts
(padding included); "coder" is what the rANS streams add to them, "container" what the whole
`.iodf` of a binary PPM of the same pixels adds to the streams (header, sections, name).
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
from iodfz.codec import pixels as pixel_codec
from iodfz.codecs import Options
from iodfz.coder import tables as coder_tables
from iodfz.engine import flow
from iodfz.engine.backends import backend_for
from iodfz.engine.model import Model
from iodfz.engine.tables import model_tables

IMAGE_SUFFIXES = {".png", ".ppm", ".bmp", ".tif", ".tiff"}


def ideal_bits(model: Model, backend: flow.Backend, rgb: np.ndarray) -> list[float]:
    """Ideal bits of each level's factored-out half, then of the top, over the codec's tiles."""
    logistic, mixture = model_tables(model)
    h, w, _ = rgb.shape
    hp, wp = (pixel_codec.padded_size(n, model.levels) for n in (h, w))
    image = np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    bits = [0.0] * model.levels
    for rects in pixel_codec.batches(hp, wp, pixel_codec.TILE):
        x = np.stack([image[y : y + th, x0 : x0 + tw] for y, x0, th, tw in rects])
        splits, top = flow.forward(model, backend, x)
        for level, s in enumerate(splits):
            index, offset = coder_tables.logistic_index(s.scale_index, s.mean_fp)
            bits[level] += float(
                coder_tables.symbol_bits(logistic, s.values, index, offset)[0].sum()
            )
        channel = np.broadcast_to(np.arange(top.shape[-1]), top.shape)
        bits[-1] += float(coder_tables.symbol_bits(mixture, top, channel)[0].sum())
    return bits


def ppm(rgb: np.ndarray) -> bytes:
    h, w, _ = rgb.shape
    return b"P6\n%d %d\n255\n" % (w, h) + rgb.tobytes()


def breakdown(model: Model, folder: Path, limit: int | None) -> dict:
    """One set's row. The container columns need the CLI to write every file with this model
    (or zstd), so they are None otherwise: for a model kept only to decode, or one whose card's
    ``pixels`` range leaves these images to another model."""
    backend = backend_for(model)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    level = writing_level(model)
    levels = np.zeros(model.levels)
    stream_bits = container_bits = subpixels = 0.0
    written = level is not None
    for path in files:
        rgb = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
        levels += ideal_bits(model, backend, rgb)
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
    return row


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
    args = ap.parse_args()
    if args.model:
        card = next((c for c in zoo.cards() if c.get("name") == args.model), None)
        if card is None:
            raise SystemExit(f"bits_breakdown: no installed model named {args.model}")
    rows = {}
    for folder in args.sets:
        model = zoo.load_by_id(card["model_id"]) if args.model else default_model(folder)
        name = next(c["name"] for c in zoo.cards() if c["model_id"] == model.model_id)
        rows[str(folder)] = {"model": name, **breakdown(model, folder, args.limit)}
    skip = ("model", "container_bytes_per_file", "files")
    parts = list(dict.fromkeys(k for row in rows.values() for k in row if k not in skip))
    table = Table(title="bits per sub-pixel")
    for k in ["set", "model", *parts, "container B/file"]:
        table.add_column(k, justify="left" if k in ("set", "model") else "right")
    for set_name, row in rows.items():
        cells = ["—" if row.get(k) is None else f"{row[k]:.4f}" for k in parts]
        per_file = row["container_bytes_per_file"]
        per_file_cell = "—" if per_file is None else f"{per_file:.1f}"
        table.add_row(Path(set_name).name, row["model"], *cells, per_file_cell)
    Console(width=max(120, Console().width)).print(table)
    if args.json:
        args.json.write_text(json.dumps({"sets": rows}, indent=1) + "\n")


def default_model(folder: Path) -> Model:
    """The model the default level codes the set's first image with (cards' ``pixels``
    ranges pick by size)."""
    first = next(p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
    width, height = Image.open(first).size
    model = zoo.for_level(Options().level, pixels=width * height)
    if model is None:
        raise SystemExit(f"bits_breakdown: no model for --level {Options().level}")
    return model


if __name__ == "__main__":
    main()
