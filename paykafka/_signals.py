"""Graceful stops on SIGINT / SIGTERM for the blocking ``run()`` loops (tracker, processor)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

__all__ = ["install_stop_signals"]

log = logging.getLogger(__name__)


def install_stop_signals(stop: Callable[[], None], after: str) -> Callable[[], None] | None:
    """Make SIGINT and SIGTERM call ``stop()``; returns the function that puts the previous
    handlers back, or ``None`` off the main thread (where Python cannot install handlers).

    ``after`` says in the log line what the loop finishes before it stops.
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after %s", signum, after)
        stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore
