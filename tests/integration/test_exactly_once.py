"""Inbox and outbox on the real stack and real databases: once per payment, no dual write."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from _events import make_events

from paykafka import (
    DeadLetterQueue,
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
from paykafka.aio import AsyncPaymentTracker, AsyncPostgresInbox, AsyncSqliteInbox

LEDGER = "CREATE TABLE IF NOT EXISTS ledger (payment_id TEXT PRIMARY KEY, amount TEXT NOT NULL)"


def produce(settings: Settings, events: list[PaymentEvent]) -> None:
    with PaymentProducer(settings) as producer:
        for event in events:
            producer.send(event)


def book(event: PaymentEvent, tx: Any) -> None:
    """The handler: one ledger row, in the inbox's transaction."""
    ph = "?" if isinstance(tx, sqlite3.Connection) else "%s"
    tx.execute(
        f"INSERT INTO ledger (payment_id, amount) VALUES ({ph}, {ph})",
        (str(event.payment_id), str(event.amount)),
    )


def ledger_ids(inbox: Inbox) -> list[str]:
    conn = inbox.database.connect()
    conn.execute(LEDGER)
    conn.commit()
    rows = [r[0] for r in conn.execute("SELECT payment_id FROM ledger").fetchall()]
    conn.close()
    return rows


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind, by URL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


def sync_inbox(url: str) -> Inbox:
    if url.startswith("sqlite:///"):
        return SqliteInbox(url.removeprefix("sqlite:///"))
    return PostgresInbox(url)


def test_tracker_applies_each_payment_once(topic_settings: Settings, db_url: str) -> None:
    """Redelivered payments are skipped and counted; a reused id is dead-lettered, not applied."""
    events = make_events(300, prefix="inbox", users=40)
    conflicting = attrs.evolve(events[0], amount=events[0].amount + 1)
    produce(topic_settings, events + events[:60] + [conflicting])
    inbox = sync_inbox(db_url)
    ledger_ids(inbox)  # creates the ledger table
    with PaymentTracker(topic_settings, inbox=inbox, concurrency=8) as tracker:
        tracker.run(book, stop_at_end=True, idle_timeout=60)
    assert sorted(ledger_ids(inbox)) == sorted(str(e.payment_id) for e in events)
    assert tracker.handled == 300
    assert tracker.duplicates == 60
    assert tracker.dead_lettered == 1
    letters = DeadLetterQueue(topic_settings).letters()
    assert [d.reason for d in letters] == ["conflicting_duplicate"]
    inbox.close()


def test_handler_failure_rolls_back_and_retries(topic_settings: Settings, tmp_path: Path) -> None:
    """A handler failing once after writing leaves no trace of that attempt; the retry applies."""
    events = make_events(20, prefix="retry", users=4)
    produce(topic_settings, events)
    inbox = SqliteInbox(tmp_path / "l.db")
    ledger_ids(inbox)
    failed: set[str] = set()

    def flaky(event: PaymentEvent, tx: Any) -> None:
        book(event, tx)
        if str(event.payment_id) not in failed:
            failed.add(str(event.payment_id))
            raise RuntimeError("transient")

    with PaymentTracker(topic_settings, inbox=inbox, retry_backoff=0.01) as tracker:
        tracker.run(flaky, stop_at_end=True, idle_timeout=60)
    assert sorted(ledger_ids(inbox)) == sorted(str(e.payment_id) for e in events)
    assert tracker.dead_lettered == 0
    inbox.close()


def test_async_tracker_applies_each_payment_once(topic_settings: Settings, db_url: str) -> None:
    """The async face: the same once-per-payment result with concurrent tasks; a reused id is
    dead-lettered there too."""
    events = make_events(200, prefix="ainbox", users=30)
    conflicting = attrs.evolve(events[5], amount=events[5].amount + 1)
    produce(topic_settings, events + events[:40] + [conflicting])
    if db_url.startswith("sqlite:///"):
        ainbox: AsyncSqliteInbox | AsyncPostgresInbox = AsyncSqliteInbox(
            db_url.removeprefix("sqlite:///")
        )
    else:
        ainbox = AsyncPostgresInbox(db_url)
    ledger_ids(ainbox.sync)

    async def abook(event: PaymentEvent, tx: Any) -> None:
        if isinstance(tx, sqlite3.Connection):
            book(event, tx)
        else:
            await tx.execute(
                "INSERT INTO ledger (payment_id, amount) VALUES (%s, %s)",
                (str(event.payment_id), str(event.amount)),
            )

    async def main() -> tuple[int, int, int]:
        async with AsyncPaymentTracker(topic_settings, inbox=ainbox, concurrency=8) as tracker:
            await tracker.run(abook, stop_at_end=True, idle_timeout=60)
        await ainbox.close()
        return tracker.handled, tracker.duplicates, tracker.dead_lettered

    assert asyncio.run(main()) == (200, 40, 1)
    assert [d.reason for d in DeadLetterQueue(topic_settings).letters()] == [
        "conflicting_duplicate"
    ]
    assert sorted(ledger_ids(ainbox.sync)) == sorted(str(e.payment_id) for e in events)


def _checkout(outbox: Outbox, events: list[PaymentEvent], *, commit: bool) -> None:
    """One business transaction: an order row per event and the event, through the outbox."""
    conn = outbox.database.connect()
    ph = outbox.database.ph
    conn.execute("CREATE TABLE IF NOT EXISTS orders (payment_id TEXT PRIMARY KEY)")
    conn.commit()
    outbox.database.begin(conn)
    for event in events:
        conn.execute(f"INSERT INTO orders (payment_id) VALUES ({ph})", (str(event.payment_id),))
        outbox.add(conn, event)
    if commit:
        conn.commit()
    else:
        conn.rollback()
    conn.close()


def test_outbox_publishes_committed_rows_only(topic_settings: Settings, db_url: str) -> None:
    """Committed events reach the topic once, in each user's order; rolled-back ones never."""
    committed = make_events(120, prefix="ob", users=10)
    rolled_back = make_events(15, prefix="rb", users=3)
    outbox = Outbox(db_url)
    for i in range(0, 120, 12):
        _checkout(outbox, committed[i : i + 12], commit=True)
    _checkout(outbox, rolled_back, commit=False)
    assert outbox.status().pending == 120

    with OutboxRelay(outbox, topic_settings, batch_size=50, max_rate=None) as relay:
        assert relay.run(stop_when_empty=True) == 120
    status = outbox.status()
    assert (status.pending, status.published) == (0, 120)

    seen: list[PaymentEvent] = []
    with PaymentTracker(topic_settings) as tracker:
        for record in tracker.records(stop_at_end=True, idle_timeout=60):
            seen.append(record.event)
    assert sorted(str(e.payment_id) for e in seen) == sorted(str(e.payment_id) for e in committed)
    by_user: dict[str, list[str]] = {}
    for e in seen:
        by_user.setdefault(e.user, []).append(str(e.payment_id))
    for user, ids in by_user.items():
        assert ids == [str(e.payment_id) for e in committed if e.user == user]


def test_one_active_relay_and_a_hot_standby(topic_settings: Settings, db_url: str) -> None:
    """A second relay stays standby while the first holds the lock, and takes over after it."""
    outbox = Outbox(db_url)
    first = OutboxRelay(outbox, topic_settings)
    second = OutboxRelay(Outbox(db_url), topic_settings)
    try:
        assert first.relay_once() == 0
        assert first.active
        assert second.relay_once() == 0
        assert not second.active
        first.close()
        _checkout(outbox, make_events(3, prefix="sb"), commit=True)
        assert second.relay_once() == 3
        assert second.active
    finally:
        first.close()
        second.close()


def test_relay_catch_up_rate_is_bounded(topic_settings: Settings, tmp_path: Path) -> None:
    """A backlog of 200 rows at max_rate=400 rows/s takes at least about half a second."""
    outbox = Outbox(tmp_path / "rate.db")
    _checkout(outbox, make_events(200, prefix="rate"), commit=True)
    with OutboxRelay(outbox, topic_settings, batch_size=50, max_rate=400.0) as relay:
        relay.relay_once()  # connect and warm up: the first batch
        began = time.monotonic()
        assert relay.run(stop_when_empty=True) == 150
        took = time.monotonic() - began
    assert took >= 150 / 400 * 0.9
