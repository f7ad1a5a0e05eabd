"""The inbox for ``AsyncPaymentTracker``: the same table and rules, awaited.

The handler is ``async def handler(event, tx)``. :class:`AsyncPostgresInbox` gives it a
``psycopg.AsyncConnection`` in an open transaction (one per task in flight).
:class:`AsyncSqliteInbox` gives it a plain ``sqlite3.Connection`` (SQLite has no async driver:
its statements take microseconds on a local file, so the handler calls it directly); the calls
that may wait for another process's lock run in a thread, and the tasks of one tracker take
their turn on an ``asyncio.Lock`` since SQLite has one writer at a time anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from paykafka._errors import DatabaseError
from paykafka._event import PaymentEvent
from paykafka._exactly_once._db import PostgresDatabase
from paykafka._exactly_once._inbox import (
    DEFAULT_WINDOW,
    Inbox,
    InboxOutcome,
    PostgresInbox,
    SqliteInbox,
    content_hash,
)

__all__ = ["AsyncInbox", "AsyncPostgresInbox", "AsyncSqliteInbox"]

AsyncHandler = Callable[[PaymentEvent, Any], Awaitable[object]]


class AsyncInbox:
    """What the async tracker calls: ``await inbox.apply(event, handler)``."""

    def __init__(self, sync: Inbox) -> None:
        #: The synchronous inbox over the same table (DDL, pruning, SQL).
        self.sync = sync
        self.window = sync.window

    async def apply(self, event: PaymentEvent, handler: AsyncHandler) -> InboxOutcome:
        raise NotImplementedError

    async def prune(self, older_than: timedelta | None = None) -> int:
        """Delete rows older than ``older_than`` (default: the window), in a thread."""
        return await asyncio.to_thread(self.sync.prune, older_than)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)


class AsyncSqliteInbox(AsyncInbox):
    """An inbox in a SQLite file for the async tracker (see the module docstring)."""

    def __init__(
        self, path: str | Path, *, table: str = "paykafka_inbox", window: timedelta = DEFAULT_WINDOW
    ) -> None:
        super().__init__(SqliteInbox(path, table=table, window=window))
        self._turn: asyncio.Lock | None = None
        self._conn: Any = None

    async def apply(self, event: PaymentEvent, handler: AsyncHandler) -> InboxOutcome:
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:
            if self._conn is None:
                self._conn = await asyncio.to_thread(self._open)
            conn = self._conn
            inbox = self.sync
            db = inbox.database
            payment_id = str(event.payment_id)
            digest = content_hash(event)
            try:
                outcome = await asyncio.to_thread(self._record, conn, payment_id, digest)
            except DatabaseError as exc:
                if exc.retriable:
                    self._drop()
                raise
            if outcome is not None:
                return outcome
            try:
                await handler(event, conn)
            except BaseException as exc:
                await asyncio.to_thread(_rollback, conn)
                if isinstance(exc, Exception) and db.unavailable(exc, conn):
                    self._drop()
                    raise db.wrap(exc, f"handling payment {payment_id}", conn) from exc
                raise
            try:
                await asyncio.to_thread(conn.commit)
            except Exception as exc:
                _rollback(conn)
                error = db.wrap(exc, f"committing payment {payment_id}", conn)
                if error.retriable:
                    self._drop()
                raise error from exc
            return InboxOutcome.APPLIED

    def _open(self) -> Any:
        conn = self.sync.database.connect()
        self.sync._create(conn)
        return conn

    def _record(self, conn: Any, payment_id: str, digest: str) -> InboxOutcome | None:
        """Begin, insert the inbox row; the outcome if it was there already, else None."""
        inbox = self.sync
        db = inbox.database
        try:
            db.begin(conn)
            cursor = conn.execute(inbox._insert, (payment_id, digest, _now(db)))
            if cursor.rowcount == 0:
                row = conn.execute(inbox._select, (payment_id,)).fetchone()
                conn.rollback()
                same = row is not None and row[0] == digest
                return InboxOutcome.DUPLICATE if same else InboxOutcome.CONFLICT
        except Exception as exc:
            _rollback(conn)
            raise db.wrap(exc, f"recording payment {payment_id} in {inbox.table}", conn) from exc
        return None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    async def close(self) -> None:
        self._drop()
        await super().close()


def _now(db: Any) -> float:
    return float(db.now_value())


class AsyncPostgresInbox(AsyncInbox):
    """An inbox in PostgreSQL for the async tracker: a ``psycopg.AsyncConnection`` per task
    in flight, row locks between them."""

    def __init__(
        self, dsn: str, *, table: str = "paykafka_inbox", window: timedelta = DEFAULT_WINDOW
    ) -> None:
        super().__init__(PostgresInbox(dsn, table=table, window=window))
        self._idle: list[Any] = []
        self._created = False

    async def apply(self, event: PaymentEvent, handler: AsyncHandler) -> InboxOutcome:
        inbox = self.sync
        db = inbox.database
        assert isinstance(db, PostgresDatabase)
        if not self._created:
            await asyncio.to_thread(inbox.create_tables)
            self._created = True
        conn = self._idle.pop() if self._idle else await db.connect_async()
        payment_id = str(event.payment_id)
        digest = content_hash(event)
        keep = True
        try:
            try:
                cursor = await conn.execute(inbox._insert, (payment_id, digest))
                if cursor.rowcount == 0:
                    row = await (await conn.execute(inbox._select, (payment_id,))).fetchone()
                    await conn.rollback()
                    same = row is not None and row[0] == digest
                    return InboxOutcome.DUPLICATE if same else InboxOutcome.CONFLICT
            except Exception as exc:
                await _arollback(conn)
                error = db.wrap(exc, f"recording payment {payment_id} in {inbox.table}", conn)
                keep = not error.retriable
                raise error from exc
            try:
                await handler(event, conn)
            except BaseException as exc:
                await _arollback(conn)
                if isinstance(exc, Exception) and db.unavailable(exc, conn):
                    keep = False
                    raise db.wrap(exc, f"handling payment {payment_id}", conn) from exc
                raise
            try:
                await conn.commit()
            except Exception as exc:
                await _arollback(conn)
                error = db.wrap(exc, f"committing payment {payment_id}", conn)
                keep = not error.retriable
                raise error from exc
            return InboxOutcome.APPLIED
        finally:
            if keep and not conn.closed:
                self._idle.append(conn)
            else:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()
        await super().close()


def _rollback(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.rollback()


async def _arollback(conn: Any) -> None:
    with contextlib.suppress(Exception):
        await conn.rollback()
