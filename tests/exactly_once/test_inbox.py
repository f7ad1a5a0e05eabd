"""The inbox on real SQLite and PostgreSQL (no Kafka): once per id, atomically with the handler."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest

from paykafka import (
    ConfigError,
    DatabaseUnavailableError,
    Inbox,
    InboxOutcome,
    PaymentEvent,
    PaymentTracker,
    PostgresInbox,
    Settings,
    SqliteInbox,
)
from paykafka._exactly_once import parse_age
from paykafka.aio import AsyncPostgresInbox, AsyncSqliteInbox

LEDGER = "CREATE TABLE IF NOT EXISTS ledger (payment_id TEXT PRIMARY KEY, amount TEXT NOT NULL)"


def _event(user: str = "ola") -> PaymentEvent:
    return PaymentEvent(user=user, amount=Decimal("12.50"), currency="PLN", method="blik")


def _book(event: PaymentEvent, tx: Any) -> None:
    ph = "?" if isinstance(tx, sqlite3.Connection) else "%s"
    tx.execute(
        f"INSERT INTO ledger (payment_id, amount) VALUES ({ph}, {ph})",
        (str(event.payment_id), str(event.amount)),
    )


def _setup_ledger(inbox: Inbox) -> None:
    conn = inbox.database.connect()
    conn.execute(LEDGER)
    conn.commit()
    conn.close()


def _ledger(inbox: Inbox) -> list[str]:
    conn = inbox.database.connect()
    rows = [r[0] for r in conn.execute("SELECT payment_id FROM ledger").fetchall()]
    conn.close()
    return rows


@pytest.fixture(params=["sqlite", "postgres"])
def make_inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Inbox]]:
    """A factory of inboxes on one fresh database of each kind."""
    made: list[Inbox] = []
    if request.param == "sqlite":
        path = tmp_path / "inbox.db"

        def make(**kw: Any) -> Inbox:
            made.append(SqliteInbox(path, **kw))
            return made[-1]
    else:
        dsn = request.getfixturevalue("pg_dsn")

        def make(**kw: Any) -> Inbox:
            made.append(PostgresInbox(dsn, **kw))
            return made[-1]

    yield make
    for inbox in made:
        inbox.close()


def test_applies_once_then_counts_duplicates(make_inbox: Callable[..., Inbox]) -> None:
    """The first delivery runs the handler and commits its row; the second does not run it."""
    inbox = make_inbox()
    _setup_ledger(inbox)
    event = _event()
    assert inbox.apply(event, _book) is InboxOutcome.APPLIED
    assert inbox.apply(event, _book) is InboxOutcome.DUPLICATE
    assert _ledger(inbox) == [str(event.payment_id)]
    assert inbox.seen(str(event.payment_id))


def test_same_id_other_content_is_a_conflict(make_inbox: Callable[..., Inbox]) -> None:
    """A reused payment id with another amount is reported as a conflict, never applied."""
    inbox = make_inbox()
    _setup_ledger(inbox)
    event = _event()
    inbox.apply(event, _book)
    other = attrs.evolve(event, amount=Decimal("99.00"))
    assert inbox.apply(other, _book) is InboxOutcome.CONFLICT
    assert _ledger(inbox) == [str(event.payment_id)]


def test_raising_handler_rolls_back_both(make_inbox: Callable[..., Inbox]) -> None:
    """A handler that raises after writing leaves neither its row nor the inbox row."""
    inbox = make_inbox()
    _setup_ledger(inbox)
    event = _event()

    def half(ev: PaymentEvent, tx: Any) -> None:
        _book(ev, tx)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        inbox.apply(event, half)
    assert _ledger(inbox) == []
    assert not inbox.seen(str(event.payment_id))
    assert inbox.apply(event, _book) is InboxOutcome.APPLIED


def test_threads_racing_on_one_id_apply_it_once(make_inbox: Callable[..., Inbox]) -> None:
    """Eight threads delivering the same payment at once (a rebalance overlap): one applies."""
    inbox = make_inbox()
    _setup_ledger(inbox)
    event = _event()
    barrier = threading.Barrier(8)
    outcomes: list[InboxOutcome] = []

    def slow_book(ev: PaymentEvent, tx: Any) -> None:
        _book(ev, tx)
        threading.Event().wait(0.05)  # hold the transaction open while the others arrive

    def deliver() -> None:
        barrier.wait()
        outcomes.append(inbox.apply(event, slow_book))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.value for o in outcomes) == ["applied"] + ["duplicate"] * 7
    assert len(_ledger(inbox)) == 1


def test_prune_by_age(make_inbox: Callable[..., Inbox]) -> None:
    """Rows older than the given age are deleted; younger ones stay."""
    inbox = make_inbox()
    _setup_ledger(inbox)
    inbox.apply(_event(), _book)
    assert inbox.prune(timedelta(days=1)) == 0
    threading.Event().wait(1.1)
    assert inbox.prune(timedelta(seconds=1)) == 1
    assert inbox.prune() == 0


def test_unreachable_postgres_is_retriable() -> None:
    """No server on the port: a DatabaseUnavailableError the tracker retries without limit."""
    inbox = PostgresInbox("postgresql://nobody@127.0.0.1:24999/none")
    with pytest.raises(DatabaseUnavailableError) as info:
        inbox.apply(_event(), _book)
    assert info.value.retriable


def test_parse_age() -> None:
    """The CLI's ``--older-than`` units."""
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("1.5m") == timedelta(seconds=90)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_async_inbox_applies_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The async inboxes: once per id under concurrent tasks, rollback on error."""
    if kind == "sqlite":
        ainbox: AsyncSqliteInbox | AsyncPostgresInbox = AsyncSqliteInbox(tmp_path / "a.db")
    else:
        ainbox = AsyncPostgresInbox(request.getfixturevalue("pg_dsn"))
    sync = ainbox.sync
    _setup_ledger(sync)
    events = [_event(f"u{i}") for i in range(20)]

    async def book(ev: PaymentEvent, tx: Any) -> None:
        await asyncio.sleep(0.001)
        if isinstance(tx, sqlite3.Connection):
            _book(ev, tx)
        else:
            await tx.execute(
                "INSERT INTO ledger (payment_id, amount) VALUES (%s, %s)",
                (str(ev.payment_id), str(ev.amount)),
            )

    async def fail(ev: PaymentEvent, tx: Any) -> None:
        raise RuntimeError("no")

    async def main() -> list[InboxOutcome]:
        try:
            with pytest.raises(RuntimeError):
                await ainbox.apply(events[0], fail)
            return list(await asyncio.gather(*(ainbox.apply(ev, book) for ev in events + events)))
        finally:
            await ainbox.close()

    outcomes = asyncio.run(main())
    assert outcomes.count(InboxOutcome.APPLIED) == 20
    assert outcomes.count(InboxOutcome.DUPLICATE) == 20
    assert len(_ledger(sync)) == 20


def test_tracker_warns_about_records_older_than_the_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A record older than the inbox window is logged once (its row may be pruned already)."""
    inbox = SqliteInbox(tmp_path / "w.db", window=timedelta(days=1))
    tracker = PaymentTracker(Settings(), inbox=inbox)
    now_ms = int(time.time() * 1000)

    def work(age_ms: int) -> Any:
        record = SimpleNamespace(timestamp=lambda: (1, now_ms - age_ms))
        return SimpleNamespace(record=record, topic="payments", partition=0, offset=7)

    with caplog.at_level("WARNING", logger="paykafka.tracker"):
        tracker._check_age(work(1000))
        assert caplog.records == []
        tracker._check_age(work(2 * 86_400_000))
        tracker._check_age(work(3 * 86_400_000))
    assert len(caplog.records) == 1
    assert "older than the inbox window" in caplog.text


def test_a_sync_tracker_refuses_an_async_inbox(tmp_path: Path) -> None:
    """The faces do not mix: PaymentTracker takes SqliteInbox / PostgresInbox only."""
    with pytest.raises(ConfigError, match="AsyncPaymentTracker"):
        PaymentTracker(Settings(), inbox=AsyncSqliteInbox(tmp_path / "x.db"))
