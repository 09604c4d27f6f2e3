"""Fit the predictive coder's default parameters (docs/INTEGER.md "Predictive coder") on the
training pack's thumbnails, and write them as models/iodf-predictive-1.json.

    python scripts/fit_predictive.py [--pack runs/pack4] [--out models]

A small image cannot pay for 416 bytes of parameters fitted to it: with the defaults it pays
4 bytes (a scale shift per plane). The thumbnails (``whole32`` and ``whole64`` of the pack:
each training photo and 15 random crops of it, resized whole as ImageNet32/64 were made) are
what those images look like. Prints the defaults' SHA-256, which
``iodfz.codec.predictive.DEFAULTS_SHA256`` pins: new defaults are a new coder.
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


def thumbnail_counts(images: np.ndarray) -> predictive.Counts:
    """The residuals' counts per context (predictive.histograms) over (N, h, w, 3) images."""
    parts = []
    for i in range(0, len(images), CHUNK):
        x = predictive.to_planes(images[i : i + CHUNK])
        pred, error_context = predictive.predict(x)
        parts.append(
            predictive.histograms(x - pred, predictive.contexts_of(error_context, x - pred))
        )
    return functools.reduce(operator.add, parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", type=Path, default=Path("runs/pack4"))
    parser.add_argument("--out", type=Path, default=Path("models"))
    args = parser.parse_args()
    if pack_recipe(args.pack) == PACK_RECIPE:
        pack = load_pack(args.pack)
    else:
        pack = build_pack(SHARED, max_regions=1)  # only the thumbnails are used
    counts = thumbnail_counts(pack["whole32"]) + thumbnail_counts(pack["whole64"])
    params = predictive.fit(counts)
    packed = predictive.pack_params(params)
    card = {
        "name": predictive.NAME,
        "coder_id": predictive.CODER_ID,
        "scales": params[:, 0].tolist(),
        "means": params[:, 1].tolist(),
        "sha256": hashlib.sha256(packed).hexdigest(),
        "data": f"{len(pack['whole32'])} + {len(pack['whole64'])} thumbnails of the training "
        "photos (32×32 and 64×64; scripts/fit_predictive.py)",
    }
    path = args.out / predictive.DEFAULTS_FILE
    path.write_text(json.dumps(card, indent=1) + "\n")
    bits = predictive.cost(counts, params) / counts.count.sum()
    print(f"{path}: {bits:.4f} bits per sample on the thumbnails; sha256 {card['sha256']}")


if __name__ == "__main__":
    main()
