"""Book each payment into a ledger table exactly once, however often Kafka delivers it.

SQLite by default (ledger.db); ``--db postgresql://user@host/db`` for PostgreSQL
(``pip install 'paykafka[postgres]'``). The ledger row and the inbox's record of the payment id
commit in one transaction, so a crash, a rebalance or a redelivery never books a payment twice.
"""

import argparse
import logging
import sqlite3
from typing import Any

import paykafka

LEDGER = (
    "CREATE TABLE IF NOT EXISTS ledger (payment_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, "
    "amount TEXT NOT NULL, currency TEXT NOT NULL)"
)

BOOK_SQLITE = "INSERT INTO ledger (payment_id, user_id, amount, currency) VALUES (?, ?, ?, ?)"
BOOK_POSTGRES = "INSERT INTO ledger (payment_id, user_id, amount, currency) VALUES (%s, %s, %s, %s)"


def book(event: paykafka.PaymentEvent, tx: Any) -> None:
    """One ledger row, written in the inbox's open transaction (paykafka commits it)."""
    sql = BOOK_SQLITE if isinstance(tx, sqlite3.Connection) else BOOK_POSTGRES
    tx.execute(sql, (str(event.payment_id), event.user, str(event.amount), event.currency))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="ledger.db", help="SQLite path or postgresql:// URL")
    parser.add_argument("--concurrency", type=int, default=1, help="handlers at once")
    parser.add_argument(
        "--until-end", action="store_true", help="stop once every partition is read to its end"
    )
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("paykafka.librdkafka").setLevel(logging.CRITICAL)
    if args.db.startswith(("postgresql://", "postgres://")):
        inbox: paykafka.Inbox = paykafka.PostgresInbox(args.db)
    else:
        inbox = paykafka.SqliteInbox(args.db)
    with inbox:
        conn = inbox.database.connect()
        conn.execute(LEDGER)
        conn.commit()
        conn.close()
        with paykafka.PaymentTracker(inbox=inbox, concurrency=args.concurrency) as tracker:
            tracker.run(book, stop_at_end=args.until_end)
    print(
        f"📒 booked {tracker.handled} payment(s), skipped {tracker.duplicates} redelivered, "
        f"dead-lettered {tracker.dead_lettered}",
        flush=True,
    )


if __name__ == "__main__":
    try:
        main()
    except paykafka.PayKafkaError as exc:
        raise SystemExit(f"❌ {exc}") from None
