"""``paykafka outbox relay | status | prune`` and ``paykafka inbox prune``.

The library does the work (:mod:`paykafka._exactly_once`); this module parses flags and prints.
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

from paykafka._cli._common import EXIT_OK, add_connection_flags, emit, settings_from_args
from paykafka._exactly_once import Outbox, OutboxRelay, open_database, parse_age
from paykafka._exactly_once._inbox import Inbox

_DB_HELP = "postgresql://user@host:port/db, sqlite:///path or a SQLite file path"


def register(sub: Any) -> None:
    """Add the ``outbox`` and ``inbox`` command groups."""
    outbox = sub.add_parser(
        "outbox",
        help="publish and inspect a transactional outbox",
        description=(
            "Events written with Outbox.add(tx, event) in a database transaction are published "
            "by a relay once committed, and marked published once the broker acknowledged them."
        ),
    )
    actions = outbox.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)

    relay = actions.add_parser(
        "relay",
        help="publish committed outbox rows (one active relay; others wait as hot standbys)",
        description=(
            "Publish pending rows in order with the idempotent producer and mark them published "
            "after the broker's acknowledgement. SIGINT/SIGTERM stop it after the batch in hand."
        ),
    )
    relay.add_argument("--db", required=True, help=_DB_HELP)
    relay.add_argument("--table", default="paykafka_outbox", help="outbox table")
    relay.add_argument("--batch-size", type=int, default=500, help="rows per batch (500)")
    relay.add_argument(
        "--max-rate", type=float, default=10_000.0, help="rows/s at most while catching up"
    )
    relay.add_argument("--until-empty", action="store_true", help="stop once nothing is pending")
    add_connection_flags(relay, json_flag=False)
    relay.set_defaults(func=_relay)

    status = actions.add_parser("status", help="pending rows and the oldest one's age")
    status.add_argument("--db", required=True, help=_DB_HELP)
    status.add_argument("--table", default="paykafka_outbox", help="outbox table")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    prune = actions.add_parser("prune", help="delete rows published longer ago than an age")
    prune.add_argument("--db", required=True, help=_DB_HELP)
    prune.add_argument("--table", default="paykafka_outbox", help="outbox table")
    prune.add_argument("--older-than", required=True, help="e.g. 7d, 12h")
    prune.set_defaults(func=_outbox_prune)

    inbox = sub.add_parser(
        "inbox",
        help="housekeeping of an idempotent inbox",
        description="The inbox remembers applied payment ids; old ones can be pruned.",
    )
    inbox_actions = inbox.add_subparsers(dest="inbox_command", metavar="ACTION", required=True)
    iprune = inbox_actions.add_parser(
        "prune",
        help="forget payment ids older than an age",
        description=(
            "Delete inbox rows older than --older-than. Keep it longer than the topic's "
            "retention plus the longest delay before a dead-letter replay: a payment read "
            "again after its row is gone would be applied again."
        ),
    )
    iprune.add_argument("--db", required=True, help=_DB_HELP)
    iprune.add_argument("--table", default="paykafka_inbox", help="inbox table")
    iprune.add_argument("--older-than", required=True, help="e.g. 30d")
    iprune.set_defaults(func=_inbox_prune)


def _relay(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    relay = OutboxRelay(
        Outbox(args.db, table=args.table, create=False),  # the relay waits for the database
        settings,
        batch_size=args.batch_size,
        max_rate=args.max_rate or None,
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: relay.stop())
    published = relay.run(stop_when_empty=args.until_empty)
    print(f"published {published} row(s)")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    status = Outbox(args.db, table=args.table).status()
    data = {
        "pending": status.pending,
        "oldest_age_seconds": round(status.oldest_age, 3),
        "published": status.published,
    }
    human = (
        f"pending: {status.pending}\noldest pending age: {status.oldest_age:.1f} s\n"
        f"published (not pruned): {status.published}"
    )
    emit(args, data, human)
    return EXIT_OK


def _outbox_prune(args: argparse.Namespace) -> int:
    deleted = Outbox(args.db, table=args.table).prune(parse_age(args.older_than))
    print(f"pruned {deleted} published outbox row(s)")
    return EXIT_OK


def _inbox_prune(args: argparse.Namespace) -> int:
    inbox = Inbox(open_database(args.db), table=args.table, window=parse_age(args.older_than))
    try:
        deleted = inbox.prune()
    finally:
        inbox.close()
    print(f"pruned {deleted} inbox row(s)")
    return EXIT_OK
