"""Graceful stops on SIGINT / SIGTERM for the ``run()`` loops: blocking ones (tracker,
processor) and asyncio ones (their ``paykafka.aio`` faces)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

__all__ = ["call_on_loop", "install_loop_stop_signals", "install_stop_signals"]

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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

    previous = {s: signal.signal(s, on_signal) for s in _SIGNALS}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore


def install_loop_stop_signals(stop: Callable[[], None], after: str) -> Callable[[], None] | None:
    """The same for the running event loop: SIGINT and SIGTERM call ``stop()`` on the loop
    (``loop.add_signal_handler``); returns the function that puts the previous handlers back,
    or ``None`` off the main thread. Where the loop cannot take signal handlers (Windows'
    proactor loop) the signals keep their previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return None
    loop = asyncio.get_running_loop()
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    installed = []

    def on_signal(signum: int) -> None:
        log.info("signal %d: stopping after %s", signum, after)
        stop()

    for s in _SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(s, on_signal, s)
            installed.append(s)

    def restore() -> None:
        for s in installed:
            loop.remove_signal_handler(s)
            handler = previous[s]
            if handler is not None:
                signal.signal(s, handler)

    return restore


def call_on_loop(loop: asyncio.AbstractEventLoop | None, fn: Callable[[], None]) -> bool:
    """Run ``fn`` on ``loop`` from any thread or signal handler: at once on the loop's own
    thread, else handed over with ``call_soon_threadsafe`` (asyncio objects are not
    thread-safe). ``False`` when there is no open loop to run it on; the caller then records
    the request itself, for the next ``run()`` to see."""
    if loop is None or loop.is_closed():
        return False
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn()
    else:
        loop.call_soon_threadsafe(fn)
    return True
