"""Plot a training run's dev bits per sub-pixel against steps (RUN/log.csv → RUN/curves.png).

python scripts/plot_training.py runs/w64
"""

from __future__ import annotations

import csv
import sys
from itertools import pairwise
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    run = Path(sys.argv[1])
    rows = list(csv.DictReader((run / "log.csv").open()))
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("train_bpsp", "imagenet32", "imagenet64", "kodak_crops"):
        if rows and key in rows[0]:
            ax.plot(steps, [float(r[key]) for r in rows], label=key)
    for r0, r1 in pairwise(rows):
        if r0["stage"] != r1["stage"]:
            ax.axvline(int(r1["step"]), color="grey", lw=0.6, ls="--")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per sub-pixel")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=110)
    print(run / "curves.png")


if __name__ == "__main__":
    main()
