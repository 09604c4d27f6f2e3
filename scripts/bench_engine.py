"""Integer engine throughput per backend: MB/s of raw pixels through the flow, forward
(encode) and inverse (decode), on a 768×512 image (a Kodak image when ../shared is present),
one image per call or ``--batch`` images per call (batched tiles, as a GPU wants them).

    python scripts/bench_engine.py [--model models/NAME.iodfm] [--backends numpy ...]
        [--batch 1 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from iodfz import machine, zoo
from iodfz.codecs import FLOW_FROM
from iodfz.engine import flow
from iodfz.engine.backends import (
    BACKEND_NAMES,
    BackendUnavailable,
    check_test_vectors,
    make_backend,
)
from iodfz.engine.model import Model, load
from iodfz.flow.data import SHARED


def test_image() -> np.ndarray:
    path = SHARED / "kodak" / "kodim23.png"
    if path.exists():
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB"))[:512, :768]
    return flow.test_input(3)[0].repeat(32, 0).repeat(32, 1)[:512, :768]


def measure(model: Model, backend: flow.Backend, x: np.ndarray, repeat: int) -> dict:
    """Best-of-``repeat`` forward and inverse MB/s of the batch ``x`` (B, H, W, 3)."""
    fwd, inv = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        splits, top = flow.forward(model, backend, x)
        fwd.append(time.perf_counter() - t)
        t = time.perf_counter()
        back = flow.inverse(model, backend, top, flow.replay(splits))
        inv.append(time.perf_counter() - t)
    assert np.array_equal(back, x)
    mb = x.nbytes / 1e6
    return {"forward_mb_s": round(mb / min(fwd), 3), "inverse_mb_s": round(mb / min(inv), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--backends", nargs="+", default=list(BACKEND_NAMES))
    ap.add_argument("--batch", nargs="+", type=int, default=[1], help="images per call")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model = load(args.model) if args.model else zoo.for_level(FLOW_FROM)
    x = test_image()
    rows = []
    for name in args.backends:
        try:
            backend = make_backend(name)
        except BackendUnavailable as exc:
            rows.append({"backend": name, "available": False, "reason": str(exc)})
            continue
        exact = not check_test_vectors(model, backend)
        for batch in args.batch:
            speed = measure(model, backend, np.stack([x] * batch), args.repeat)
            verdict = "pass" if exact else "DIFFER"
            rows.append(
                {"backend": name, "available": True, "batch": batch, "test_vectors": verdict}
                | speed
            )
    if args.json:
        print(
            json.dumps(
                {
                    "image": list(x.shape),
                    "model": model.model_id[:16],
                    "machine": machine.describe(),
                    "rows": rows,
                },
                indent=1,
            )
        )
        return
    table = Table(
        title=f"integer engine, {x.shape[1]}×{x.shape[0]} RGB, model {model.model_id[:12]}"
    )
    for col in ("backend", "images per call", "test vectors", "forward MB/s", "inverse MB/s"):
        table.add_column(col)
    for r in rows:
        if r["available"]:
            speeds = (str(r["forward_mb_s"]), str(r["inverse_mb_s"]))
            table.add_row(r["backend"], str(r["batch"]), r["test_vectors"], *speeds)
        else:
            table.add_row(r["backend"], "", escape(f"not available: {r['reason']}"), "", "")
    table.caption = machine.caption()
    Console().print(table)


if __name__ == "__main__":
    main()
