"""``paykafka stack up | down | status | logs``: the local Kafka + Schema Registry.

Exit codes: 0 success (``up`` also when already up), 1 error (one line on stderr), and for
``status`` 3 when the stack is not (fully) running, as ``systemctl status`` does; the same text
is in ``--help`` (:data:`_EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from paykafka._cli._common import EXIT_TROUBLE
from paykafka._stack import Stack, StackConfig, StackStatus, _secure
from paykafka._stack._config import (
    CONTROLLER_PORT_OFFSET,
    DEFAULT_KAFKA_PORT,
    DEFAULT_REGISTRY_PORT,
    MANAGEMENT_PORT_OFFSET,
    MAX_BROKERS,
)

EXIT_NOT_RUNNING = EXIT_TROUBLE

_PORTS = f"""\
ports (all on 127.0.0.1; they move together):
  broker n           --kafka-port + n - 1        (default 9092, 9093, 9094)
  controller of n    --kafka-port + n - 1 + {CONTROLLER_PORT_OFFSET}  (default 10092, ...)
  registry API       --registry-port             (default 8081)
  registry mgmt      --registry-port + {MANAGEMENT_PORT_OFFSET}      (default 9081)
On moved ports, clients need PAYKAFKA_BOOTSTRAP_SERVERS and PAYKAFKA_REGISTRY_URL: `up`
prints the export lines to use.
"""

_EXIT_CODES = """\
exit codes: 0 success (up: also when already up; down: also when not running), 1 error
(one line on stderr says what and what to do), 2 bad arguments, 3 status: the stack is not
(fully) running, as with systemctl status; 130 up/down interrupted by Ctrl+C or SIGTERM
(run the same command again). logs -f ends on Ctrl+C or SIGTERM with exit 0.
"""


def register(subparsers: Any) -> None:
    """Add the ``stack`` command group to the top-level parser's subparsers."""
    stack = subparsers.add_parser(
        "stack",
        help="run a local Kafka broker and Schema Registry (no Docker)",
        description=(
            "Run Apache Kafka (KRaft) and Apicurio Registry (Confluent-compatible API) on "
            "127.0.0.1, downloaded once from Maven Central."
        ),
        epilog=_PORTS + "\n" + _EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = stack.add_subparsers(dest="stack_command", metavar="ACTION", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="pids, data and logs (env PAYKAFKA_STACK_DIR; default ~/.cache/paykafka/stack)",
    )

    up = commands.add_parser(
        "up",
        parents=[common],
        help="start the stack (idempotent) and wait until it answers",
        epilog=_PORTS + "\n" + _EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument(
        "--brokers",
        type=int,
        default=None,
        choices=range(1, MAX_BROKERS + 1),
        metavar=f"{{1..{MAX_BROKERS}}}",
        help="KRaft nodes; brokers listen on kafka-port, +1, +2... (default 1)",
    )
    up.add_argument(
        "--kafka-port",
        type=int,
        default=None,
        help=(
            "first broker port; brokers use +1, +2, controllers +"
            f"{CONTROLLER_PORT_OFFSET} (env PAYKAFKA_STACK_KAFKA_PORT; default 9092)"
        ),
    )
    up.add_argument(
        "--registry-port",
        type=int,
        default=None,
        help=(
            f"registry HTTP port; its management port is +{MANAGEMENT_PORT_OFFSET} "
            "(env PAYKAFKA_STACK_REGISTRY_PORT; default 8081)"
        ),
    )
    up.add_argument(
        "--secure",
        action="store_true",
        default=None,
        help=(
            "TLS + SASL/SCRAM-SHA-512 + ACLs, users admin, payments-producer, payments-tracker "
            "and nobody; their settings go to owner-only files (env PAYKAFKA_STACK_SECURE)"
        ),
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for the broker and registry to answer (default 120)",
    )
    up.set_defaults(func=_up)

    down = commands.add_parser("down", parents=[common], help="stop every JVM of the stack")
    down.add_argument(
        "--purge", action="store_true", help="also delete Kafka data and registered schemas"
    )
    down.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait after SIGTERM before SIGKILL (default 30)",
    )
    down.set_defaults(func=_down)

    status = commands.add_parser(
        "status",
        parents=[common],
        help="what runs: pid, port, RSS (exit 3 when not fully running)",
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    logs = commands.add_parser("logs", parents=[common], help="show the stack's log files")
    logs.add_argument(
        "target",
        nargs="?",
        default="all",
        choices=("kafka", "registry", "all"),
        help="whose logs (default all)",
    )
    logs.add_argument("-n", "--lines", type=int, default=50, help="last N lines (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(func=_logs)


def _stack(args: argparse.Namespace) -> Stack:
    return Stack(
        StackConfig.from_env(
            state_dir=args.state_dir,
            brokers=getattr(args, "brokers", None),
            kafka_port=getattr(args, "kafka_port", None),
            registry_port=getattr(args, "registry_port", None),
            secure=getattr(args, "secure", None),
            start_timeout=getattr(args, "timeout", None) if args.stack_command == "up" else None,
        )
    )


def _up(args: argparse.Namespace) -> int:
    stack = _stack(args)
    started = stack.up()
    status = stack.status()
    if started:
        print(f"paykafka stack is up ({', '.join(started)} started)")
    else:
        print("paykafka stack is already up")
    print(f"  Kafka bootstrap servers: {status.bootstrap_servers}")
    print(f"  Schema Registry URL:     {status.registry_url}")
    if stack.config.secure:  # every setting, for every user, in the files named here
        _print_secure(stack.config)
        return 0
    for line in _exports(stack.config, status.bootstrap_servers, status.registry_url):
        print(line)
    return 0


def _print_secure(config: StackConfig) -> None:
    """The settings every user needs, without any password: those stay in the user files."""
    common = _secure.user_env(config, _secure.ADMIN, with_password=False)
    print("  Secured: SASL_SSL with SCRAM-SHA-512, ACLs on, registry on HTTPS with basic auth.")
    print("  Settings shared by every user:")
    for key, value in common.items():
        if not key.endswith("USERNAME"):
            print(f"    {key}={value}")
    print("  Per user: PAYKAFKA_SASL_USERNAME / PAYKAFKA_REGISTRY_USERNAME = the user name;")
    print("  the passwords are only in these owner-only files (all settings included):")
    for user in _secure.USERS:
        print(f"    {user:<18} {_secure.user_file(config, user)}")
    print("  Load one in a shell with:  set -a; . <file>; set +a")


def _exports(config: StackConfig, bootstrap: str, registry_url: str) -> list[str]:
    """On moved ports, the ``export`` lines without which clients keep talking to 9092/8081."""
    if (config.kafka_port, config.registry_port) == (DEFAULT_KAFKA_PORT, DEFAULT_REGISTRY_PORT):
        return []  # the library's defaults already point here
    return [
        "Clients default to localhost:9092 and :8081; point them at this stack with:",
        f"  export PAYKAFKA_BOOTSTRAP_SERVERS={bootstrap}",
        f"  export PAYKAFKA_REGISTRY_URL={registry_url}",
    ]


def _down(args: argparse.Namespace) -> int:
    stack = _stack(args)
    stopped = stack.down(timeout=args.timeout, purge=args.purge)
    if stopped:
        print(f"paykafka stack stopped ({', '.join(stopped)})")
    else:
        print("paykafka stack was not running")
    if args.purge:
        print(f"  data deleted from {stack.config.state_dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = _stack(args).status()
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
    else:
        _print_status(status)
    return 0 if status.running else EXIT_NOT_RUNNING


def _print_status(status: StackStatus) -> None:
    print(f"state dir: {status.state_dir}")
    for c in status.components:
        if c.running:
            rss = f"{c.rss_bytes / 2**20:.0f} MiB" if c.rss_bytes is not None else "?"
            print(f"  {c.name:<9} running  pid {c.pid:<7} {c.endpoint:<40} RSS {rss}")
        else:
            print(f"  {c.name:<9} stopped")
    if status.running:
        print(f"bootstrap servers: {status.bootstrap_servers}")
        print(f"registry URL:      {status.registry_url}")


def _logs(args: argparse.Namespace) -> int:
    # Ctrl+C, or SIGTERM (main turns it into one), is how following ends: exit 0.
    with contextlib.suppress(KeyboardInterrupt):
        _show_logs(args)
    return 0


def _show_logs(args: argparse.Namespace) -> None:
    stack = _stack(args)
    files = stack.log_files(args.target)
    if not files:
        whose = "" if args.target == "all" else f"{args.target} "
        print(f"no {whose}logs yet in {stack.config.state_dir / 'logs'}")
        return
    several = len(files) > 1
    for path in files:
        if several:
            print(f"==> {path} <==")
        for line in stack.tail(path, args.lines):
            print(line)
    if args.follow:
        for path, line in stack.follow(files):
            print(f"[{path.stem}] {line}" if several else line, flush=True)
