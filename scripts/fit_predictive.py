"""Fit a predictive coder's shipped tables (docs/INTEGER.md "Predictive coders") on the
training pack, and write them as models/<coder>.json.

    python scripts/fit_predictive.py [--coder iodf-predictive-3] [--pack runs/pack4] [--out models]

Texture biases (coders that have them) come first: each texture key's mean residual against
the prediction before the bias, over all of the pack (regions, smooth regions, thumbnails):
like a network's weights, a correction that holds across photos.

A small image cannot pay for parameters fitted to it (two bytes per context it uses): with the
defaults it pays 7 bytes (a scale shift per plane and group of error contexts). The thumbnails
(``whole32`` and ``whole64`` of the pack: each training photo and 15 random crops of it,
resized whole as ImageNet32/64 were made) are what those images look like. Prints the
tables' SHA-256, which the coder's ``defaults_sha256`` (src/iodfz/codec/predictive.py) pins:
new tables are a new coder. (``iodf-predictive-4`` codes with version 3's card.)
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
from iodfz.coder import tables as coder_tables
from iodfz.flow.data import PACK_RECIPE, SHARED, build_pack, load_pack, pack_recipe

CHUNK = 1000  # thumbnails predicted at once
THUMBNAILS = ("whole32", "whole64")
REGIONS = 12_000  # regions of a pack built here (scripts/pack_data.py's default)
GROUP = 16  # images whose parameters are fitted together when tallying the tables' symbols
TABLE_PRIOR = 1000.0  # samples of the logistic table a learned table starts from
LOGISTIC_FLOOR = 0.02  # share of the logistic table every learned table keeps
BIAS_CLIP = 64 * 8  # residuals (eighths) beyond ±64 samples count as ±64 in a bias's mean
BIAS_PRIOR = 16  # samples of residual 0 each bias's mean starts from (rare keys stay near 0)


def thumbnail_counts(
    coder: predictive.PredictiveCoder, images: np.ndarray, bias: np.ndarray | None
) -> predictive.Counts:
    """The samples' counts per context (predictive.histograms) over (N, h, w, 3) images, with
    texture biases ``bias`` for a coder that has them."""
    parts = []
    for i in range(0, len(images), CHUNK):
        x = predictive.to_planes(images[i : i + CHUNK])
        parts.append(predictive.histograms(coder, x, *predictive.predict(coder, x, bias)))
    return functools.reduce(operator.add, parts)


def texture_bias(coder: predictive.PredictiveCoder, sets: list[np.ndarray]) -> np.ndarray:
    """Each texture key's bias (eighths of a sample, int8 range): the mean residual of the
    key's samples against the prediction before the bias, over (N, h, w, 3) image sets."""
    sums = np.zeros(predictive.TEXTURE_KEYS)
    counts = np.zeros(predictive.TEXTURE_KEYS)
    for images in sets:
        per_chunk = max(1, CHUNK * 1024 // (images.shape[1] * images.shape[2]))
        for i in range(0, len(images), per_chunk):
            x = predictive.to_planes(images[i : i + per_chunk])
            pred, keys = predictive.texture_keys(coder, x)
            residual = np.clip((x << coder.frac_bits) - pred, -BIAS_CLIP, BIAS_CLIP)
            sums += np.bincount(keys.ravel(), residual.ravel(), predictive.TEXTURE_KEYS)
            counts += np.bincount(keys.ravel(), None, predictive.TEXTURE_KEYS)
    return np.clip(np.round(sums / (counts + BIAS_PRIOR)), -128, 127).astype(np.int64)


def table_statistics(
    coder: predictive.PredictiveCoder, sets: list[np.ndarray], bias: np.ndarray | None
) -> np.ndarray:
    """How often each symbol of each logistic table (escapes included) codes a sample of the
    (N, h, w, 3) image sets, GROUP images at a time with parameters fitted to them on the
    logistic tables."""
    grid = predictive.logistic_tables()
    tally = np.zeros(len(grid.freq))
    for images in sets:
        for i in range(0, len(images), GROUP):
            x = predictive.to_planes(images[i : i + GROUP])
            counts = predictive.histograms(coder, x, *predictive.predict(coder, x, bias))
            params = predictive.fit(coder, counts, grid)[counts.context]
            total = counts.phase + params[:, 1]
            table = params[:, 0] * coder_tables.NUM_PHASES + (total & 7)
            symbol = counts.residual - (total >> 3) - grid.lo[table]
            inside = (symbol >= 0) & (symbol < grid.nsym[table])
            np.add.at(
                tally, grid.base[table] + np.where(inside, symbol, grid.nsym[table]), counts.count
            )
    return tally


def fit_tables(tally: np.ndarray) -> coder_tables.Tables:
    """Each logistic table's frequencies replaced by its symbols' share of ``tally``, leaning
    on the logistic table where the table coded few samples (TABLE_PRIOR) and keeping
    LOGISTIC_FLOOR of it everywhere, so that no symbol becomes needlessly dear."""
    grid = predictive.logistic_tables()
    freqs = []
    for t in range(grid.count):
        at = slice(grid.base[t], grid.base[t] + grid.nsym[t] + 1)
        logistic = grid.freq[at] / float(1 << grid.precision)
        seen = tally[at].sum()
        share = tally[at] / max(seen, 1.0)
        trust = seen / (seen + TABLE_PRIOR)
        pmf = trust * share + (1 - trust) * logistic
        pmf = (1 - LOGISTIC_FLOOR) * pmf + LOGISTIC_FLOOR * logistic
        freqs.append(coder_tables.quantize_pmf(pmf, grid.precision))
    return coder_tables.tables_from_freqs(grid.lo.tolist(), freqs, grid.precision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [coder.name for coder in predictive.CODERS if not coder.card]  # each its own card
    parser.add_argument("--coder", choices=names, default=names[0])
    parser.add_argument("--pack", type=Path, default=Path("runs/pack4"))
    parser.add_argument("--out", type=Path, default=Path("models"))
    args = parser.parse_args()
    coder = next(c for c in predictive.CODERS if c.name == args.coder)
    if pack_recipe(args.pack) == PACK_RECIPE:
        pack = load_pack(args.pack)
    else:
        pack = build_pack(SHARED, max_regions=REGIONS)
    bias = None
    if coder.texture_bias:
        bias = texture_bias(coder, [pack[name] for name in ("regions", "smooth", *THUMBNAILS)])
    tables = predictive.logistic_tables()
    if coder.learned_tables:
        sets = [pack[name] for name in ("regions", "smooth", *THUMBNAILS)]
        tables = fit_tables(table_statistics(coder, sets, bias))
    counts = functools.reduce(
        operator.add, (thumbnail_counts(coder, pack[name], bias) for name in THUMBNAILS)
    )
    params = predictive.fit(coder, counts, tables)
    packed = predictive.defaults_bytes(params)
    card = {
        "name": coder.name,
        "coder_id": coder.model_id,
        "scales": params[:, 0].tolist(),
        "means": params[:, 1].tolist(),
    }
    data = (
        f"{len(pack['whole32'])} + {len(pack['whole64'])} thumbnails of the training "
        "photos (32×32 and 64×64; scripts/fit_predictive.py)"
    )
    if bias is not None:
        packed += bias.astype(np.int8).tobytes()
        card["biases"] = predictive.card_array(bias.astype(np.int8).tobytes())
        data += (
            f"; texture biases: these and {len(pack['regions'])} regions and {len(pack['smooth'])} "
            "smooth regions (64×64) of the training photos downsampled"
        )
    if coder.learned_tables:
        packed += tables.freq.astype("<u2").tobytes()
        card["tables"] = predictive.card_array(tables.freq.astype("<u2").tobytes())
        data += "; tables: their symbols' shares, parameters fitted to 16 images at a time"
    card |= {"sha256": hashlib.sha256(packed).hexdigest(), "data": data}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / coder.defaults_file
    path.write_text(json.dumps(card, indent=1) + "\n")
    bits = predictive.cost(counts, params, tables) / counts.count.sum()
    print(f"{path}: {bits:.4f} bits per sample on the thumbnails; sha256 {card['sha256']}")


if __name__ == "__main__":
    main()
