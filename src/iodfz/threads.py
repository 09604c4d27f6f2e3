"""Worker threads leave termination signals to the main thread.

The kernel may deliver SIGINT, SIGTERM or SIGHUP to any thread of the process. Python runs
its handlers in the main thread only, so a signal that lands on a worker merely sets a flag
while the main thread stays blocked (e.g. reading a pipe) — the process would not unwind until
that read returns. Pool threads therefore block these signals, and the kernel delivers them to
the main thread, whose blocked call is interrupted.
"""

from __future__ import annotations

import signal

TERMINATION_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def block_termination_signals() -> None:
    """Initializer for pool threads (``ThreadPoolExecutor(initializer=...)``)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATION_SIGNALS)
