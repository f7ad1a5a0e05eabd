"""Exactly-once effects: what the inbox costs, and how fast the outbox relay publishes.

.venv/bin/python -m benchmarks.exactly_once_effects --pg-dsn postgresql://user@host/db [--n 5000]

Needs ``paykafka stack up`` (PAYKAFKA_* settings) and, for the PostgreSQL rows, a database the
user may create tables in. Inbox: the same events tracked from a fresh group, the handler writing
one ledger row, ``concurrency`` 1 and 16, on SQLite and PostgreSQL:

- **inbox**: ``PaymentTracker(inbox=...)``, the ledger row and the inbox row in one transaction;
- **hand-written**: the usual way, the handler runs ``INSERT ... ON CONFLICT DO NOTHING`` into its
  own dedup table and commits, then writes the ledger row in a second transaction (which is not
  even correct: a crash between the two loses the payment).

Time per event is from the first handler call to ``run()`` returning (group joins excluded),
best of ``--rounds`` alternating runs; the target is inbox <= 1.5x hand-written. Outbox: rows/s
a relay publishes (and marks) from a backlog of ``--n`` rows, with its batch size, against
``PaymentProducer`` sending the same events with no database (the ceiling).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from benchmarks._common import make_events
from paykafka import (
    Inbox,
    Outbox,
    OutboxRelay,
    PaymentEvent,
    PaymentProducer,
    PaymentTracker,
    PostgresInbox,
    Settings,
    SqliteInbox,
)
from paykafka._admin import KafkaAdmin

LEDGER = "CREATE TABLE IF NOT EXISTS ledger (payment_id TEXT NOT NULL, amount TEXT NOT NULL)"
SEEN = "CREATE TABLE IF NOT EXISTS seen (payment_id TEXT PRIMARY KEY)"


def _fresh_db(kind: str, pg_dsn: str | None, tmp: Path) -> str:
    if kind == "sqlite":
        return str(tmp / f"{uuid.uuid4().hex[:8]}.db")
    import psycopg  # noqa: PLC0415 - the postgres extra

    assert pg_dsn is not None
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg_dsn.rsplit("/", 1)[0] + "/" + name


def _connect(url: str) -> Any:
    if url.startswith("postgresql://"):
        import psycopg  # noqa: PLC0415

        return psycopg.connect(url)
    conn = sqlite3.connect(url, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _sql(url: str, sql: str) -> str:
    return sql if not url.startswith("postgresql://") else sql.replace("?", "%s")


class _Clock:
    """First handler call to the end of ``run()``."""

    def __init__(self) -> None:
        self.first: float | None = None

    def tick(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()


def _track_inbox(settings: Settings, url: str, concurrency: int, n: int) -> float:
    inbox: Inbox = PostgresInbox(url) if url.startswith("postgresql://") else SqliteInbox(url)
    conn = _connect(url)
    conn.execute(LEDGER)
    conn.commit()
    conn.close()
    clock = _Clock()
    insert = _sql(url, "INSERT INTO ledger (payment_id, amount) VALUES (?, ?)")

    def book(event: PaymentEvent, tx: Any) -> None:
        clock.tick()
        tx.execute(insert, (str(event.payment_id), str(event.amount)))

    with inbox, PaymentTracker(settings, inbox=inbox, concurrency=concurrency) as tracker:
        handled = tracker.run(book, stop_at_end=True, idle_timeout=60, handle_signals=False)
        end = time.perf_counter()
    assert handled == n, (handled, n)
    assert clock.first is not None
    return end - clock.first


def _track_by_hand(settings: Settings, url: str, concurrency: int, n: int) -> float:
    setup = _connect(url)
    setup.execute(LEDGER)
    setup.execute(SEEN)
    setup.commit()
    setup.close()
    local = threading.local()
    opened: list[Any] = []
    clock = _Clock()
    check = _sql(url, "INSERT INTO seen (payment_id) VALUES (?) ON CONFLICT DO NOTHING")
    insert = _sql(url, "INSERT INTO ledger (payment_id, amount) VALUES (?, ?)")
    sqlite = not url.startswith("postgresql://")

    def book(event: PaymentEvent) -> None:
        clock.tick()
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = _connect(url)
            opened.append(conn)
        if sqlite:
            conn.execute("BEGIN IMMEDIATE")
        fresh = conn.execute(check, (str(event.payment_id),)).rowcount == 1
        conn.commit()
        if fresh:
            if sqlite:
                conn.execute("BEGIN IMMEDIATE")
            conn.execute(insert, (str(event.payment_id), str(event.amount)))
            conn.commit()

    with PaymentTracker(settings, concurrency=concurrency) as tracker:
        handled = tracker.run(book, stop_at_end=True, idle_timeout=60, handle_signals=False)
        end = time.perf_counter()
    for conn in opened:
        conn.close()
    assert handled == n, (handled, n)
    assert clock.first is not None
    return end - clock.first


def _relay(settings: Settings, url: str, events: list[PaymentEvent], batch: int) -> float:
    outbox = Outbox(url)
    conn = outbox.database.connect()
    for i in range(0, len(events), 1000):
        outbox.database.begin(conn)
        for event in events[i : i + 1000]:
            outbox.add(conn, event)
        conn.commit()
    conn.close()
    with OutboxRelay(outbox, settings, batch_size=batch, max_rate=None) as relay:
        relay.relay_once()  # connect, take the lock, warm the producer (one batch)
        began = time.perf_counter()
        relay.run(stop_when_empty=True)
        took = time.perf_counter() - began
    return (len(events) - batch) / took


def _producer_rate(settings: Settings, events: list[PaymentEvent]) -> float:
    with PaymentProducer(settings) as producer:
        producer.send(events[0])
        producer.flush()
        began = time.perf_counter()
        for event in events:
            producer.send(event)
        producer.flush()
        return len(events) / (time.perf_counter() - began)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg-dsn", help="a PostgreSQL database URL (omit: SQLite only)")
    parser.add_argument("--n", type=int, default=5000, help="events per run (5,000)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per case (2)")
    parser.add_argument("--batch-size", type=int, default=500, help="relay batch size (500)")
    parser.add_argument("--outbox-only", action="store_true", help="only the relay rows")
    args = parser.parse_args(argv)
    base = Settings.from_env()
    name = f"bench-eo-{uuid.uuid4().hex[:8]}"
    KafkaAdmin(base, timeout=30).create_topic(name, partitions=6, replication_factor=1)
    settings = attrs.evolve(base, topic=name, dlq_topic=f"{name}.dlq")
    events = make_events(args.n)
    with PaymentProducer(settings) as producer:
        for event in events:
            producer.send(event)
    kinds = ["sqlite"] + (["postgres"] if args.pg_dsn else [])
    tmp = Path(tempfile.mkdtemp(prefix="paykafka-bench-"))
    print(
        "| database | concurrency | inbox events/s | hand-written events/s "
        "| inbox time/event vs hand-written | target <= 1.5x |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for kind in [] if args.outbox_only else kinds:
        for concurrency in (1, 16):
            track = {"inbox": _track_inbox, "hand": _track_by_hand}
            times: dict[str, list[float]] = {"inbox": [], "hand": []}
            for r in range(args.rounds):
                for case in ("inbox", "hand") if r % 2 == 0 else ("hand", "inbox"):
                    group = attrs.evolve(settings, group_id=f"{name}-{uuid.uuid4().hex[:8]}")
                    url = _fresh_db(kind, args.pg_dsn, tmp)
                    times[case].append(track[case](group, url, concurrency, args.n))
            inbox_s, hand_s = min(times["inbox"]), min(times["hand"])
            ratio = inbox_s / hand_s
            print(
                f"| {kind} | {concurrency} | {args.n / inbox_s:,.0f} | {args.n / hand_s:,.0f} | "
                f"{ratio:.2f}x | {'yes' if ratio <= 1.5 else '**no**'} |",
                flush=True,
            )
    print()
    print(
        "| outbox relay | batch size | rows/s published and marked "
        "| producer alone, no database (events/s) |"
    )
    print("| --- | ---: | ---: | ---: |")
    ceiling = _producer_rate(settings, make_events(args.n, seed=11))
    for kind in kinds:
        url = _fresh_db(kind, args.pg_dsn, tmp)
        rate = _relay(settings, url, make_events(args.n * 2, seed=13), args.batch_size)
        print(f"| {kind} | {args.batch_size} | {rate:,.0f} | {ceiling:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
