"""Write each integer network of a model as an int32-only ONNX graph (no float64 anywhere).

    python scripts/export_onnx.py --model iodf-w64 --out graphs/

writes ``graphs/iodf-w64/<net>.onnx`` (``l0.c0`` … ``l2.c3``, ``l0.prior`` …) and
``graphs/iodf-w64/manifest.json`` (model id, nets, input/output channels, the ops used). The
graphs are the ones the onnxruntime and TensorRT backends run (docs/GPU.md): input ``x`` int32
(B, H, W, C_in) latents, output ``y`` int32 (B, H, W, C_out), as in docs/INTEGER.md.
``--model`` takes a shipped model's name or a path to a ``.iodfm`` file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from iodfz import zoo
from iodfz.engine.model import Model, load
from iodfz.engine.onnx_backend import net_to_onnx


def find_model(name: str) -> tuple[str, Model]:
    path = Path(name)
    if path.suffix == ".iodfm" or path.exists():
        return path.stem, load(path)
    for card in zoo.cards():
        if card["name"] == name:
            return name, load(Path(card["path"]))
    known = ", ".join(card["name"] for card in zoo.cards())
    raise SystemExit(f"export_onnx: no model {name!r} (installed: {known})")


def export(model: Model, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    nets = []
    for name, net in model.nets():
        graph = net_to_onnx(net)
        (folder / f"{name}.onnx").write_bytes(graph.SerializeToString())
        nets.append(
            {
                "name": name,
                "file": f"{name}.onnx",
                "c_in": net.conv_in.weight.shape[1],
                "c_out": net.conv_out.weight.shape[2],
                "ops": sorted({node.op_type for node in graph.graph.node}),
            }
        )
    manifest = {"model_id": model.model_id, "input": "x", "output": "y", "nets": nets}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", required=True, help="shipped model name or .iodfm path")
    ap.add_argument("--out", required=True, type=Path, help="output folder")
    args = ap.parse_args()
    name, model = find_model(args.model)
    manifest = export(model, args.out / name)
    print(f"{len(manifest['nets'])} graphs of {name} ({model.model_id[:16]}) in {args.out / name}")


if __name__ == "__main__":
    main()
