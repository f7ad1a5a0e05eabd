"""A tracker with an inbox, as its own process, for the exactly-once fault tests.

``python -m tests.faults._inbox_member DB_URL STATS`` with the settings in ``PAYKAFKA_*``:
``PaymentTracker(inbox=..., concurrency=16).run(book)`` where ``book`` appends one row to
``ledger`` (no unique key: a payment applied twice would show as two rows). SIGTERM stops it
cleanly and writes ``{"handled": .., "duplicates": ..}`` to ``STATS``; a SIGKILL writes nothing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Any

from paykafka import Inbox, PaymentEvent, PaymentTracker, PostgresInbox, Settings, SqliteInbox

LEDGER = "CREATE TABLE IF NOT EXISTS ledger (payment_id TEXT NOT NULL, amount TEXT NOT NULL)"


def book(event: PaymentEvent, tx: Any) -> None:
    sql = "INSERT INTO ledger (payment_id, amount) VALUES (?, ?)"
    if not isinstance(tx, sqlite3.Connection):
        sql = sql.replace("?", "%s")
    tx.execute(sql, (str(event.payment_id), str(event.amount)))


def main() -> None:
    url, stats = sys.argv[1], Path(sys.argv[2])
    logging.basicConfig(level=logging.WARNING)
    inbox: Inbox = PostgresInbox(url) if url.startswith("postgresql://") else SqliteInbox(url)
    overrides = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
    with (
        inbox,
        PaymentTracker(
            Settings.from_env(), inbox=inbox, concurrency=16, kafka_options=overrides
        ) as tracker,
    ):
        tracker.run(book)
    stats.write_text(json.dumps({"handled": tracker.handled, "duplicates": tracker.duplicates}))


if __name__ == "__main__":
    main()
