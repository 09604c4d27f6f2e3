"""``iodfz selftest`` and ``iodfz bench``: subcommands of the neural image path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from iodfz.cli import app

if TYPE_CHECKING:  # rich is imported where a table is printed: other commands never load it
    from rich.table import Table


@app.command()
def selftest() -> None:
    """Check every backend against every shipped model's test vectors, and the predictive
    coder."""
    from iodfz import zoo
    from iodfz.coder.errors import CoderError
    from iodfz.engine.backends import (
        BACKEND_NAMES,
        BackendUnavailable,
        check_test_vectors,
        make_backend,
    )
    from iodfz.engine.model import ModelError, load
    from iodfz.engine.tables import model_tables

    failed = False
    cards = zoo.cards()
    if not cards:
        typer.echo("no models installed")
        raise typer.Exit(1)
    for card in cards:
        name = card["name"]
        try:
            model = load(Path(card["path"]))
            model_tables(model)
        except (ModelError, CoderError) as exc:
            typer.echo(f"{name:16} {'model':15} DAMAGED  {exc}")
            failed = True
            continue
        for backend_name in BACKEND_NAMES:
            try:
                backend = make_backend(backend_name)
            except BackendUnavailable as exc:
                typer.echo(f"{name:16} {backend_name:15} not available: {exc}")
                continue
            differs = check_test_vectors(model, backend)
            status = "pass" if not differs else f"DIFFERS ({', '.join(differs)})"
            failed |= bool(differs)
            typer.echo(f"{name:16} {backend_name:15} {status}")
    failed |= not _predictive_selftest()
    raise typer.Exit(1 if failed else 0)


def _predictive_selftest() -> bool:
    """One line per predictive coder: its default parameters found intact, and a small image
    and a tiled one back exactly (it has one backend, numpy)."""
    import numpy as np

    from iodfz.codec import predictive

    passed = True
    for coder in predictive.CODERS:
        name = coder.name
        if predictive.default_params(coder) is None:
            typer.echo(f"{name:16} {'numpy':15} DAMAGED  {coder.defaults_file} missing or altered")
            passed = False
            continue
        rng = np.random.default_rng(0)
        for h, w in ((24, 40), (300, 270)):
            ramp = np.add.outer(np.arange(h), np.arange(w))[..., None] + np.arange(3) * 40
            rgb = np.clip(ramp + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)
            if not np.array_equal(
                predictive.decode(predictive.encode(rgb, coder), h, w, coder), rgb
            ):
                typer.echo(f"{name:16} {'numpy':15} DIFFERS  {h}x{w} round trip")
                passed = False
                break
        else:
            typer.echo(f"{name:16} {'numpy':15} pass")
    return passed


@app.command()
def bench(
    folder: Path = typer.Argument(
        ..., metavar="FOLDER", exists=True, file_okay=False, show_default=False, hidden=True
    ),
    level: list[int] | None = typer.Option(
        None,
        "--level",
        "-l",
        metavar="N",
        help="An iodfz level to measure, repeatable (default: one per shipped model).",
    ),
    limit: int = typer.Option(
        0, metavar="N", show_default=False, help="Use only the first N images (0: all)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    plot: Path | None = typer.Option(
        None, metavar="FILE", help="Write a bpsp-vs-speed plot (needs matplotlib)."
    ),
) -> None:
    """bpsp and MB/s of iodfz next to PNG, WebP and JPEG-XL lossless on FOLDER's images."""
    from iodfz import machine, zoo
    from iodfz.bench import bench_folder, plot_rows

    rows = bench_folder(folder, level or zoo.first_levels(), limit or None)
    if as_json:
        out = {"folder": str(folder), "machine": machine.describe(), "rows": rows}
        typer.echo(json.dumps(out, indent=1))
    else:
        from rich.console import Console

        table = rows_table(str(folder), rows)
        table.caption = machine.caption()
        Console().print(table)
    if plot:
        plot_rows({str(folder): rows}, plot)


def rows_table(title: str, rows: list[dict]) -> Table:
    from rich.table import Table

    table = Table(title=title)
    for col in ("codec", "files", "bpsp", "encode MB/s", "decode MB/s", "notes"):
        table.add_column(col, justify="left" if col in ("codec", "notes") else "right")
    for r in rows:
        notes = ", ".join(
            f"{k} {v}"
            for k, v in r.items()
            if k not in {"codec", "files", "bpsp", "encode_mb_s", "decode_mb_s"}
        )
        table.add_row(
            r["codec"],
            str(r["files"]),
            f"{r['bpsp']:.3f}",
            str(r["encode_mb_s"]),
            str(r["decode_mb_s"]),
            notes,
        )
    return table
