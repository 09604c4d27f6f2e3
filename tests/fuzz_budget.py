"""Wall-clock budget for the fuzz targets (tests/test_fuzz_*.py).

Each target is a hypothesis test sized to run in seconds under ``make test``;
``make fuzz SECONDS=N`` sets ``IODFZ_FUZZ_SECONDS`` and every target then keeps drawing new
examples for N seconds. A failure found that way is shrunk by hypothesis, kept in its example
database, and belongs in a regression test.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

SECONDS = float(os.environ.get("IODFZ_FUZZ_SECONDS", "0") or 0)


def run(target: Callable[[], None]) -> None:
    """Run the ``@given`` test ``target`` once, then again until the budget is spent."""
    deadline = time.monotonic() + SECONDS
    target()
    while time.monotonic() < deadline:
        target()
