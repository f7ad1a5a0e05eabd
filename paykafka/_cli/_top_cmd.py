"""``paykafka top``: a live view of topics, groups, lag, dead letters and the registry."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any

from paykafka._admin import DEFAULT_TIMEOUT, KafkaAdmin
from paykafka._cli._common import EXIT_OK, EXIT_USAGE, add_connection_flags, settings_from_args
from paykafka._observability._top import collect, render, view
from paykafka._registry import RegistryClient

__all__ = ["register"]


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "top",
        help="live view: events/s, lag, ISR health, dead letters, registry",
        description=(
            "A live view refreshed every second: events/s in and out per topic, lag per "
            "partition and group, ISR health, dead letters pending and the newest reason, "
            "registry status. Colour on a terminal, plain text when piped. Ctrl+C (or SIGTERM) "
            "leaves. --once prints one snapshot (rates measured over one interval) and exits."
        ),
    )
    add_connection_flags(parser)
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)"
    )
    parser.add_argument(
        "--only-topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="show only this topic (repeatable; default: every topic that is not internal)",
    )
    parser.add_argument(
        "--only-group",
        action="append",
        default=[],
        metavar="GROUP",
        help="show only this group (repeatable; default: every group)",
    )
    parser.set_defaults(func=_top)


def _top(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("paykafka top: --interval must be > 0 seconds", file=sys.stderr)
        return EXIT_USAGE
    if not args.json:
        try:
            import rich  # noqa: F401, PLC0415 - only to say what to install
        except ImportError:
            print(
                "paykafka top draws with rich: pip install 'paykafka[top]' (or use --once --json)",
                file=sys.stderr,
            )
            return EXIT_USAGE
    settings = settings_from_args(args)
    admin = KafkaAdmin(settings, timeout=DEFAULT_TIMEOUT)
    with RegistryClient(settings) as registry:

        def snap() -> Any:
            return collect(
                settings,
                admin,
                registry,
                at=time.monotonic(),
                topics=args.only_topic,
                groups=args.only_group,
            )

        if args.once:
            first = snap()
            time.sleep(args.interval)
            top = view(snap(), first)
            if args.json:
                print(json.dumps(top.to_dict(), indent=2, default=str))
            else:
                _console().print(render(top))
            return EXIT_OK
        return _live(snap, args.interval)


def _live(snap: Any, interval: float) -> int:
    from rich.live import Live  # noqa: PLC0415 - paykafka[top]

    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    previous_handlers = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    console = _console()
    try:
        previous = snap()
        with Live(render(view(previous)), console=console, auto_refresh=False) as live:
            while not stop.wait(interval):
                current = snap()
                live.update(render(view(current, previous)), refresh=True)
                previous = current
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    return EXIT_OK


def _console() -> Any:
    """rich's console; piped output gets a wide page so names are never cut for scripts."""
    from rich.console import Console  # noqa: PLC0415 - paykafka[top]

    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    return console
