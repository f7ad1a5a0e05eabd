"""The ``paykafka`` command line.

Each command group lives in its own module exposing ``register(subparsers)``; this module only
wires them together, turns library errors into one-line messages with meaningful exit codes, and
is the one place (with the examples) allowed to configure logging output.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType

from paykafka._cli import _dlq_cmd, _ops_cmd, _schema_cmd, _stack_cmd, _top_cmd
from paykafka._cli._common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_PIPE_CLOSED,
    EXIT_SECURITY,
    EXIT_TOPIC,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from paykafka._errors import (
    BrokerUnavailableError,
    ConfigError,
    KafkaError,
    PayKafkaError,
    RegistryUnavailableError,
    SecurityError,
    ValidationError,
)
from paykafka._version import __version__

# librdkafka error codes that mean "the topic is not in the state the command needs".
_TOPIC_STATE_CODES = frozenset({"UNKNOWN_TOPIC_OR_PART", "TOPIC_ALREADY_EXISTS"})


def exit_code_for(exc: PayKafkaError) -> int:
    """The documented exit code for a library error that ends a command."""
    if isinstance(exc, ConfigError | ValidationError):
        return EXIT_USAGE
    if isinstance(exc, SecurityError):
        return EXIT_SECURITY
    if isinstance(exc, BrokerUnavailableError | RegistryUnavailableError):
        return EXIT_UNREACHABLE
    if isinstance(exc, KafkaError) and exc.code in _TOPIC_STATE_CODES:
        return EXIT_TOPIC
    return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser; separate from ``main`` so tests can inspect it."""
    parser = argparse.ArgumentParser(
        prog="paykafka",
        description="Schema-governed Kafka for payment events.",
    )
    parser.add_argument("--version", action="version", version=f"paykafka {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (_stack_cmd, _schema_cmd, _ops_cmd, _dlq_cmd, _top_cmd):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # librdkafka logs a line per connection retry: off the terminal unless -v (warnings) or
    # -vv (all); restored afterwards so calling main() in-process leaves logging as it was.
    rdkafka = logging.getLogger("paykafka.librdkafka")
    previous = rdkafka.level
    rdkafka.setLevel({0: logging.CRITICAL + 1, 1: logging.WARNING}.get(args.verbose, level))
    try:
        with _sigterm_interrupts():
            code: int = args.func(args)
    except PayKafkaError as exc:
        print(f"paykafka: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("paykafka: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `paykafka events | head -1`: the reader has gone, which ends the command quietly.
        _silence_stdout()
        return EXIT_PIPE_CLOSED
    finally:
        rdkafka.setLevel(previous)
    return code


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM interrupts like Ctrl+C: every command ends through the same clean-up paths
    (context managers close clients) instead of dying mid-write. Commands that stop
    cooperatively install their own handlers on top (``stop_on_signals``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (tests capture it): nothing will flush to a closed pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
