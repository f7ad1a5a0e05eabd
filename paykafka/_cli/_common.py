"""What every CLI command shares: connection flags, settings, output as tables or JSON.

Settings precedence is the library's: flags > ``PAYKAFKA_*`` environment > defaults. Commands
print through :func:`emit` so ``--json`` works the same way everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Any

from paykafka._settings import Settings

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PIPE_CLOSED",
    "EXIT_SECURITY",
    "EXIT_TOPIC",
    "EXIT_TROUBLE",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "add_connection_flags",
    "emit",
    "print_table",
    "settings_from_args",
    "stop_on_signals",
]

# One meaning per exit code across every paykafka command, so scripts can rely on them.
EXIT_OK = 0
#: Failed, or refused (an incompatible schema); stderr says why.
EXIT_FAILURE = 1
#: Bad arguments or settings.
EXIT_USAGE = 2
#: Worked, but found trouble: under-replicated partitions, undecodable records, a stack down.
EXIT_TROUBLE = 3
#: The topic does not exist (create-topic: it already exists).
EXIT_TOPIC = 4
#: No Kafka broker or schema registry answered.
EXIT_UNREACHABLE = 5
#: Refused: wrong user or password, a missing ACL, or TLS trouble (untrusted, expired or
#: wrong-host certificate, plaintext against a TLS listener). Retrying will not help.
EXIT_SECURITY = 6
#: Interrupted before it could finish cleanly (a signal during start-up, or a second one).
EXIT_INTERRUPTED = 130
#: Whoever read stdout closed the pipe (``| head``): ended quietly, as ``yes | head`` does.
EXIT_PIPE_CLOSED = 141


def add_connection_flags(
    parser: argparse.ArgumentParser, *, json_flag: bool = True, group_flag: bool = True
) -> None:
    """Flags that override the ``PAYKAFKA_*`` settings for one command (``--group`` only
    where a consumer group means something: not for ``produce``)."""
    group = parser.add_argument_group("connection (default: PAYKAFKA_* environment, then stack)")
    group.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")
    group.add_argument("--registry-url", help="schema registry base URL")
    group.add_argument("--topic", help="payments topic")
    if group_flag:
        group.add_argument("--group", dest="group_id", help="consumer group")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the command's flags on top."""
    overrides = {
        name: getattr(args, name, None)
        for name in ("bootstrap_servers", "registry_url", "topic", "group_id")
    }
    return Settings.from_env(**overrides)


def _default(obj: Any) -> Any:
    return str(obj)


def emit(args: argparse.Namespace, data: Any, human: str) -> None:
    """Print ``data`` as JSON under ``--json``, else the human text."""
    if getattr(args, "json", False):
        print(json.dumps(data, default=_default, ensure_ascii=False))
    else:
        print(human)


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Render rows as an aligned text table (returned, for :func:`emit`)."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def fail(message: str, code: int = 1) -> int:
    """Print a one-line error and return the exit code."""
    print(f"paykafka: error: {message}", file=sys.stderr)
    return code


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[list[str]]:
    """While inside, SIGINT and SIGTERM call ``stop`` instead of killing the command.

    Why: a long-running command (``track``, ``events``, ``dlq replay``...) must finish the
    record in hand, commit what it handled and print its summary whichever signal ends it (a
    service manager sends SIGTERM, a terminal SIGINT). The names of the signals received are
    collected in the yielded list; a second signal interrupts at once (KeyboardInterrupt), for
    an operator who does not want to wait. Outside the main thread this does nothing.
    """
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signal.Signals(signum).name)
        stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
