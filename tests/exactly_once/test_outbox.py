"""The outbox on real SQLite and PostgreSQL (no Kafka): rows commit and vanish with the caller."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from _events import make_events

from paykafka import ConfigError, Outbox, PaymentEvent
from paykafka._cli import main
from paykafka._exactly_once._outbox import decode_event, encode_event


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind, by URL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.db'}"
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


def _write(outbox: Outbox, events: list[PaymentEvent], *, commit: bool) -> None:
    conn = outbox.database.connect()
    outbox.database.begin(conn)
    for event in events:
        outbox.add(conn, event)
    if commit:
        conn.commit()
    else:
        conn.rollback()
    conn.close()


def test_rows_follow_the_callers_transaction(db_url: str) -> None:
    """Committed events are pending; rolled-back ones were never written."""
    outbox = Outbox(db_url)
    _write(outbox, make_events(5), commit=True)
    _write(outbox, make_events(3), commit=False)
    status = outbox.status()
    assert (status.pending, status.published) == (5, 0)
    assert status.oldest_age >= 0


def test_rows_keep_the_event_exactly() -> None:
    """A row decodes to the very event (exact amount, timestamp, note)."""
    for event in make_events(20):
        assert decode_event(encode_event(event)) == event
    noted = PaymentEvent(user="a", amount="0.005", currency="KWD", method="blik", note='q"x')
    assert decode_event(encode_event(noted)) == noted


def test_prune_deletes_only_old_published_rows(db_url: str) -> None:
    """Pending rows are never pruned, whatever their age."""
    outbox = Outbox(db_url)
    _write(outbox, make_events(4), commit=True)
    time.sleep(1.1)
    assert outbox.prune(timedelta(seconds=1)) == 0
    assert outbox.status().pending == 4


def test_cli_status_and_prune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``paykafka outbox status --json`` counts rows; ``inbox prune`` parses its age."""
    db = str(tmp_path / "cli.db")
    _write(Outbox(db), make_events(2), commit=True)
    assert main(["outbox", "status", "--db", db, "--json"]) == 0
    assert '"pending": 2' in capsys.readouterr().out
    assert main(["inbox", "prune", "--db", db, "--older-than", "30d"]) == 0
    assert "pruned 0 inbox row(s)" in capsys.readouterr().out
    assert main(["inbox", "prune", "--db", db, "--older-than", "soon"]) == 2


def test_unknown_database_url_is_refused() -> None:
    """Only postgresql:// and SQLite paths are understood."""
    with pytest.raises(ConfigError, match="postgresql://"):
        Outbox("mysql://x/y")


def test_sqlite_add_needs_no_commit_of_its_own(tmp_path: Path) -> None:
    """add() leaves the transaction open: the caller's rollback removes the row."""
    outbox = Outbox(tmp_path / "x.db")
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    conn.execute("BEGIN")
    outbox.add(conn, make_events(1)[0])
    assert conn.in_transaction
    conn.rollback()
    assert outbox.status().pending == 0


def test_async_add_follows_the_transaction(pg_dsn: str) -> None:
    """add_async() with a psycopg AsyncConnection: committed rows count, rolled-back ones not."""
    outbox = Outbox(pg_dsn)

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(pg_dsn) as tx:
            for event in make_events(3):
                await outbox.add_async(tx, event)
            await tx.commit()
            await outbox.add_async(tx, make_events(1)[0])
            await tx.rollback()

    asyncio.run(main())
    assert outbox.status().pending == 3
