"""Fit a predictive coder's default parameters (docs/INTEGER.md "Predictive coders") on
the training pack's thumbnails, and write them as models/<coder>.json.

    python scripts/fit_predictive.py [--coder iodf-predictive-2] [--pack runs/pack4] [--out models]

A small image cannot pay for parameters fitted to it (two bytes per context it uses): with the
defaults it pays 7 bytes (a scale shift per plane and group of error contexts). The thumbnails
(``whole32`` and ``whole64`` of the pack: each training photo and 15 random crops of it,
resized whole as ImageNet32/64 were made) are what those images look like. Prints the
defaults' SHA-256, which the coder's ``defaults_sha256`` (src/iodfz/codec/predictive.py) pins:
new defaults are a new coder.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import operator
from pathlib import Path

import numpy as np

from iodfz.codec import predictive
from iodfz.flow.data import PACK_RECIPE, SHARED, build_pack, load_pack, pack_recipe

CHUNK = 1000  # thumbnails predicted at once


def thumbnail_counts(coder: predictive.PredictiveCoder, images: np.ndarray) -> predictive.Counts:
    """The samples' counts per context (predictive.histograms) over (N, h, w, 3) images."""
    parts = []
    for i in range(0, len(images), CHUNK):
        x = predictive.to_planes(images[i : i + CHUNK])
        parts.append(predictive.histograms(coder, x, *predictive.predict(coder, x)))
    return functools.reduce(operator.add, parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [coder.name for coder in predictive.CODERS]
    parser.add_argument("--coder", choices=names, default=predictive.CODER.name)
    parser.add_argument("--pack", type=Path, default=Path("runs/pack4"))
    parser.add_argument("--out", type=Path, default=Path("models"))
    args = parser.parse_args()
    coder = next(c for c in predictive.CODERS if c.name == args.coder)
    if pack_recipe(args.pack) == PACK_RECIPE:
        pack = load_pack(args.pack)
    else:
        pack = build_pack(SHARED, max_regions=1)  # only the thumbnails are used
    counts = thumbnail_counts(coder, pack["whole32"]) + thumbnail_counts(coder, pack["whole64"])
    params = predictive.fit(coder, counts)
    packed = predictive.defaults_bytes(params)
    card = {
        "name": coder.name,
        "coder_id": coder.model_id,
        "scales": params[:, 0].tolist(),
        "means": params[:, 1].tolist(),
        "sha256": hashlib.sha256(packed).hexdigest(),
        "data": f"{len(pack['whole32'])} + {len(pack['whole64'])} thumbnails of the training "
        "photos (32×32 and 64×64; scripts/fit_predictive.py)",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / coder.defaults_file
    path.write_text(json.dumps(card, indent=1) + "\n")
    bits = predictive.cost(counts, params) / counts.count.sum()
    print(f"{path}: {bits:.4f} bits per sample on the thumbnails; sha256 {card['sha256']}")


if __name__ == "__main__":
    main()
