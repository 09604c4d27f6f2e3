"""`make demo`: compress and decompress every sample in samples/, check they come back
byte for byte, and print sizes and ratios. Needs only the core install (no torch): without the
neural image path, images go through zstd like any other file."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from iodfz import api  # noqa: E402
from iodfz.codecs import image_codecs  # noqa: E402
from iodfz.container import codec_name  # noqa: E402


def main() -> int:
    console = Console()
    samples = sorted(p for p in (ROOT / "samples").iterdir() if p.is_file())
    image_path = ", ".join(c.name for c in image_codecs()) or "not installed (images use zstd)"
    console.print(f"neural image path: {image_path}")
    table = Table(title="iodfz demo")
    for column in ("sample", "codec", "original", "compressed", "ratio", "round trip"):
        table.add_column(column, justify="left" if column in ("sample", "codec") else "right")
    failed = False
    for path in samples:
        data = path.read_bytes()
        packed = io.BytesIO()
        result = api.compress(io.BytesIO(data), packed, name=path.name.encode())
        restored = io.BytesIO()
        api.decompress(io.BytesIO(packed.getvalue()), restored)
        same = restored.getvalue() == data
        failed |= not same
        table.add_row(
            path.name,
            codec_name(result.codec),
            f"{len(data):,} B",
            f"{result.compressed_size:,} B",
            f"{len(data) / result.compressed_size:.2f}x",
            "[green]identical[/]" if same else "[red]DIFFERENT[/]",
        )
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
