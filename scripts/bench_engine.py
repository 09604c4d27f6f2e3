"""Integer engine throughput per backend: MB/s of raw pixels through the flow, forward
(encode) and inverse (decode), on a 768×512 image (a Kodak image when ../shared is present).

    python scripts/bench_engine.py [--model models/NAME.iodfm] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from iodfz import zoo
from iodfz.engine import flow
from iodfz.engine.backends import (
    BACKEND_NAMES,
    BackendUnavailable,
    check_test_vectors,
    make_backend,
)
from iodfz.engine.model import load
from iodfz.flow.data import SHARED


def test_image() -> np.ndarray:
    path = SHARED / "kodak" / "kodim23.png"
    if path.exists():
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB"))[:512, :768]
    return flow.test_input(3)[0].repeat(32, 0).repeat(32, 1)[:512, :768]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    model = load(args.model) if args.model else zoo.for_level(3)
    x = test_image()
    rows = []
    for name in BACKEND_NAMES:
        try:
            backend = make_backend(name)
        except BackendUnavailable as exc:
            rows.append({"backend": name, "available": False, "reason": str(exc)})
            continue
        exact = not check_test_vectors(model, backend)
        fwd, inv = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            splits, top = flow.forward(model, backend, x[None])
            fwd.append(time.perf_counter() - t)
            t = time.perf_counter()
            stored = [s.values for s in splits]
            back = flow.inverse(model, backend, top, lambda level, si, mf, v=stored: v[level])
            inv.append(time.perf_counter() - t)
        assert np.array_equal(back[0], x)
        mb = x.nbytes / 1e6
        rows.append(
            {
                "backend": name,
                "available": True,
                "test_vectors": "pass" if exact else "DIFFER",
                "forward_mb_s": round(mb / min(fwd), 3),
                "inverse_mb_s": round(mb / min(inv), 3),
            }
        )
    if args.json:
        print(
            json.dumps(
                {"image": list(x.shape), "model": model.model_id[:16], "rows": rows}, indent=1
            )
        )
        return
    table = Table(
        title=f"integer engine, {x.shape[1]}×{x.shape[0]} RGB, model {model.model_id[:12]}"
    )
    for col in ("backend", "test vectors", "forward MB/s", "inverse MB/s"):
        table.add_column(col)
    for r in rows:
        if r["available"]:
            table.add_row(
                r["backend"], r["test_vectors"], str(r["forward_mb_s"]), str(r["inverse_mb_s"])
            )
        else:
            table.add_row(r["backend"], f"not available: {r['reason']}", "", "")
    Console().print(table)


if __name__ == "__main__":
    main()
