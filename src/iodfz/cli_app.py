"""The typer app of the ``iodfz`` command line: its commands, options and help (the
commands themselves are in :mod:`iodfz.cli`). Imported only when a command line needs it (see
:func:`iodfz.cli.main`); other modules add subcommands with ``@app.command()`` (see the import
of ``iodfz.cli_extra`` at the end).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any, get_type_hints

import typer
from typer.core import TyperGroup

from iodfz import __version__, cli
from iodfz.cli import USAGE_EXIT, UsageError, _expand_aliases, _say

try:  # recent typer carries its own copy of click: its exceptions are the ones raised
    from typer._click import exceptions as click
except ImportError:  # older typer uses click itself
    from click import exceptions as click  # type: ignore[no-redef]
from iodfz.codecs import DEFAULT_LEVEL, FLOW_FROM, MAX_LEVEL, MIN_LEVEL, TRY_ALL_FROM


class _Group(TyperGroup):
    """The command group: gzip's short forms (:func:`_expand_aliases`), and every usage error
    as one ``iodfz:`` line with exit status 2 instead of click's boxed message."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            argv = _expand_aliases(list(sys.argv[1:] if args is None else args), self.commands)
            code = super().main(argv, prog_name or "iodfz", complete_var, False, **extra)
        except click.NoArgsIsHelpError as exc:
            typer.echo(exc.format_message())
            code = 0
        except click.ClickException as exc:
            if not standalone_mode:
                raise
            _say(exc.format_message().replace("\n", " "))
            sys.exit(USAGE_EXIT if isinstance(exc, click.UsageError) else exc.exit_code)
        except UsageError as exc:  # the commands' own (iodfz.cli._usage)
            if not standalone_mode:
                raise
            _say(str(exc))
            sys.exit(USAGE_EXIT)
        except typer.Abort:
            if not standalone_mode:
                raise
            sys.exit(130)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="iodfz",
    cls=_Group,
    help="Lossless file compressor: neural codec for images, zstd for everything else.",
    epilog="Without a command, -d/-t/-l mean decompress/test/info, other options compress.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


_FILES = typer.Argument(None, metavar="FILE", show_default=False, hidden=True)
_STDOUT = typer.Option(False, "-c", "--stdout", help="Write to stdout, keep inputs.")
_KEEP = typer.Option(False, "-k", "--keep", help="Keep input files (the default).")
_RM = typer.Option(False, "--rm", help="Remove each input once its output is verified.")
_FORCE = typer.Option(
    False, "-f", "--force", help="Overwrite outputs; read FIFOs and devices; read a terminal."
)
_OUTPUT = typer.Option(None, "-o", "--output", metavar="FILE", help="Output file (one input).")
_OUTPUT_DIR = typer.Option(
    None, "--output-dir", metavar="DIR", help="Write outputs under DIR, mirroring the tree."
)
_RECURSIVE = typer.Option(False, "-r", "--recursive", help="Process every file in directories.")
_THREADS = typer.Option(
    1, "-T", "--threads", metavar="N", show_default=False, help="Files in parallel (0: all cores)."
)
_QUIET = typer.Option(False, "-q", "--quiet", help="Only errors.")
_VERBOSE = typer.Option(False, "-v", "--verbose", help="One line per file: sizes, codec, model.")
_DEBUG = typer.Option(False, "--debug", help="Show tracebacks of errors.")


_LEVEL = typer.Option(
    DEFAULT_LEVEL,
    "--level",
    metavar="N",
    show_default=False,
    help=(
        f"{MIN_LEVEL} (fast) to {MAX_LEVEL}, or -1 … -19 (default {DEFAULT_LEVEL}); images: below"
        f" {FLOW_FROM} no network, from {FLOW_FROM} small ones also through a flow, from"
        f" {TRY_ALL_FROM} through every flow (large ones through every colour transform), at"
        f" {MAX_LEVEL} every model and transform on every image; the smallest kept."
    ),
)
_PIXELS = typer.Option(
    False,
    "--pixels",
    help="PNG: accept the same pixels re-encoded when the bytes cannot be rebuilt.",
)
_NO_NAME = typer.Option(
    False,
    "-n",
    "--no-name",
    help="Store no name, mode or mtime in the file (as gzip -n; the output still gets them).",
)
_JSON = typer.Option(False, "--json", help="Machine-readable output.")
_COMMON = {"files": _FILES, "verbose": _VERBOSE, "debug": _DEBUG}
_BATCH = {**_COMMON, "recursive": _RECURSIVE, "threads": _THREADS, "quiet": _QUIET}
_WRITE = {**_BATCH, "stdout": _STDOUT, "keep": _KEEP, "rm": _RM, "force": _FORCE}
_OUTPUTS = {**_WRITE, "output": _OUTPUT, "output_dir": _OUTPUT_DIR}


def _command(run: Callable[..., None], params: dict[str, Any]) -> Callable[..., None]:
    """A typer command that runs ``run`` (a command of :mod:`iodfz.cli`): its parameters, their
    types and its help as ``run`` declares them, each parameter's option or argument from
    ``params`` — so that a command's parameters are declared once, in iodfz.cli."""
    hints = get_type_hints(run)
    signature = inspect.signature(run)
    parameters = [
        p.replace(annotation=hints[p.name], default=params[p.name])
        for p in signature.parameters.values()
    ]

    def command(**kwargs: Any) -> None:
        run(**kwargs)

    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    command.__name__, command.__doc__ = run.__name__, run.__doc__
    return command


app.command()(
    _command(cli.compress, {**_OUTPUTS, "level": _LEVEL, "pixels": _PIXELS, "no_name": _NO_NAME})
)
app.command()(_command(cli.decompress, _OUTPUTS))
app.command("test")(_command(cli.test_cmd, _BATCH))
info = _command(cli.info, {**_COMMON, "as_json": _JSON})
app.command()(info)
app.command("list", hidden=True, help="Alias of info.")(info)


def _version(value: bool) -> None:
    if value:
        print(f"iodfz {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Lossless file compressor: neural codec for images, zstd for everything else."""


with contextlib.suppress(ImportError):  # subcommands added by other modules (selftest, bench)
    import iodfz.cli_extra  # noqa: F401
