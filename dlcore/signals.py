"""Interrupts: Ctrl-C (SIGINT) and SIGTERM end a run cleanly, never in the middle of a checkpoint write.

- `signals_as_interrupts()`: while it is active, SIGINT and SIGTERM raise `Interrupted` in the main
  thread (SIGTERM's default would kill the process at once, mid-step or mid-write).
- `deferred_signals()`: a block that must finish (a checkpoint write) holds SIGINT and SIGTERM and
  delivers them when it ends.

The `dlcore` command uses both, prints one line and exits with 128 + the signal's number (130, 143).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["Interrupted", "deferred_signals", "signals_as_interrupts"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `signum` says which. A KeyboardInterrupt, so code that handles Ctrl-C
    handles both."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` inside the block (main thread only; elsewhere a no-op)."""
    if not _main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM during the block and deliver the first one after it (main thread only)."""
    if not _main_thread():
        yield
        return
    pending: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if pending:
            signal.raise_signal(pending[0])
