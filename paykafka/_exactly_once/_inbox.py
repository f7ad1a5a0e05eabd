"""The idempotent inbox: each payment applied once, in the same transaction as its effects.

Kafka delivers at least once, so a tracker sees some payments twice (after a crash, a
rebalance, a relay re-publishing). With an inbox the handler gets ``(event, tx)``: ``tx`` is a
database connection inside an open transaction. The inbox first records the payment id and a
hash of its content in its own table *in that transaction*, then calls the handler, then
commits; only after the commit does the tracker mark the offset handled. So:

- the handler's writes and the inbox row commit together or not at all (a crash in between
  leaves neither, and the redelivered record is applied then);
- a payment whose id is in the table was applied: it is not handed to the handler again
  (``DUPLICATE``), the tracker counts it and moves on;
- the same id with other content is a producer reusing ids (``CONFLICT``): never applied,
  dead-lettered as ``conflicting_duplicate``;
- a handler that raises rolls everything back; the tracker's retry rules apply.

Concurrent deliveries of one id (two trackers during a rebalance) cannot both apply it: on
PostgreSQL the second ``INSERT`` waits on the first one's row lock and then finds the row; on
SQLite writers are serialised (``BEGIN IMMEDIATE``). Rows older than the window are pruned
(:meth:`Inbox.prune`): the window must exceed the topic's retention plus the longest delay
before a dead letter is replayed, or an old payment read again would be applied again.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Self

from paykafka._errors import DatabaseError
from paykafka._event import PaymentEvent
from paykafka._exactly_once._db import (
    Database,
    PostgresDatabase,
    SqliteDatabase,
    check_table,
)

__all__ = ["Inbox", "InboxOutcome", "PostgresInbox", "SqliteInbox", "content_hash"]

log = logging.getLogger("paykafka.inbox")

#: How long inbox rows are kept by default (and the age past which the tracker warns).
DEFAULT_WINDOW = timedelta(days=30)


class InboxOutcome(enum.Enum):
    """What the inbox did with one event."""

    #: First time seen: the handler ran and its transaction committed with the inbox row.
    APPLIED = "applied"
    #: Seen before with the same content: not handed to the handler again.
    DUPLICATE = "duplicate"
    #: Seen before with different content: never applied.
    CONFLICT = "conflict"


def content_hash(event: PaymentEvent) -> str:
    """A digest of everything the event says, to tell a redelivery (same digest) from a reused
    id (another one). Every field in a fixed order, the amount exact, the timestamp in ISO 8601;
    BLAKE2b with 16 bytes: a collision needs an adversary, not a redelivery."""
    text = (
        f"{event.payment_id}\x1f{event.user}\x1f{event.amount}\x1f{event.currency}\x1f"
        f"{event.method.value}\x1f{event.timestamp.isoformat()}\x1f{event.note}"
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class Inbox:
    """The part both databases share: the table, the transaction around the handler, pruning,
    and a pool of connections (one per worker thread that uses it)."""

    def __init__(self, database: Database, *, table: str, window: timedelta) -> None:
        self.database = database
        self.table = check_table(table)
        #: Rows younger than this are kept; the tracker warns about records older than it.
        self.window = window
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        self._created = False
        # SQLite takes one writer at a time anyway: queue our own threads here (fairly)
        # instead of letting them poll the database's busy lock.
        self._serial: threading.Lock | None = (
            threading.Lock() if isinstance(database, SqliteDatabase) else None
        )
        ph = database.ph
        self._insert = (
            f"INSERT INTO {self.table} (payment_id, content_hash, received_at) "
            f"VALUES ({ph}, {ph}, {database.now()}) ON CONFLICT (payment_id) DO NOTHING"
        )
        self._select = f"SELECT content_hash FROM {self.table} WHERE payment_id = {ph}"

    # -- the schema ------------------------------------------------------------------------

    def _ddl(self) -> list[str]:
        if isinstance(self.database, PostgresDatabase):
            columns = (
                "payment_id uuid PRIMARY KEY, content_hash text NOT NULL, "
                "received_at timestamptz NOT NULL DEFAULT now()"
            )
        else:
            columns = (
                "payment_id TEXT PRIMARY KEY, content_hash TEXT NOT NULL, received_at REAL NOT NULL"
            )
        # SQLite: WITHOUT ROWID keeps the rows in the primary key's b-tree (one b-tree less to
        # write per payment).
        rowid = "" if isinstance(self.database, PostgresDatabase) else " WITHOUT ROWID"
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table} ({columns}){rowid}",
            f"CREATE INDEX IF NOT EXISTS {self.table}_received_at ON {self.table} (received_at)",
        ]

    def create_tables(self) -> None:
        """Create the inbox table if missing (done on first use; idempotent)."""
        with self._connection() as conn:
            self._create(conn)

    def _create(self, conn: Any) -> None:
        if self._created:
            return
        db = self.database
        try:
            if isinstance(db, PostgresDatabase):
                # Two trackers starting at once both CREATE ... IF NOT EXISTS: serialise them.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
            else:
                db.begin(conn)
            for statement in self._ddl():
                conn.execute(statement)
            conn.commit()
        except Exception as exc:
            _rollback(conn)
            raise db.wrap(exc, f"creating the inbox table {self.table}", conn) from exc
        self._created = True

    # -- applying --------------------------------------------------------------------------

    def apply(
        self, event: PaymentEvent, handler: Callable[[PaymentEvent, Any], object]
    ) -> InboxOutcome:
        """Run ``handler(event, tx)`` once per payment id, in one transaction with the inbox
        row. A handler's exception rolls back and propagates; a database that is away raises
        :class:`~paykafka.DatabaseUnavailableError` (retriable)."""
        db = self.database
        serial = self._serial
        with self._connection() as conn:
            self._create(conn)
            if serial is not None:
                serial.acquire()
            try:
                return self._apply(conn, db, event, handler)
            finally:
                if serial is not None:
                    serial.release()

    def _apply(
        self,
        conn: Any,
        db: Database,
        event: PaymentEvent,
        handler: Callable[[PaymentEvent, Any], object],
    ) -> InboxOutcome:
        payment_id = str(event.payment_id)
        digest = content_hash(event)
        try:
            db.begin(conn)
            params: tuple[Any, ...] = (payment_id, digest)
            if isinstance(db, SqliteDatabase):
                params += (db.now_value(),)
            cursor = conn.execute(self._insert, params)
            if cursor.rowcount == 0:
                row = conn.execute(self._select, (payment_id,)).fetchone()
                conn.rollback()
                same = row is not None and row[0] == digest
                return InboxOutcome.DUPLICATE if same else InboxOutcome.CONFLICT
        except Exception as exc:
            _rollback(conn)
            raise db.wrap(exc, f"recording payment {payment_id} in {self.table}", conn) from exc
        try:
            handler(event, conn)
        except BaseException as exc:
            _rollback(conn)
            if isinstance(exc, Exception) and db.unavailable(exc, conn):
                raise db.wrap(exc, f"handling payment {payment_id}", conn) from exc
            raise
        try:
            conn.commit()
        except Exception as exc:
            _rollback(conn)
            raise db.wrap(exc, f"committing payment {payment_id}", conn) from exc
        return InboxOutcome.APPLIED

    def seen(self, payment_id: str) -> bool:
        """Whether the inbox holds ``payment_id`` (for tests and operators)."""
        with self._connection() as conn:
            self._create(conn)
            try:
                row = conn.execute(self._select, (payment_id,)).fetchone()
                conn.rollback()
            except Exception as exc:
                _rollback(conn)
                raise self.database.wrap(exc, "reading the inbox", conn) from exc
        return row is not None

    # -- housekeeping ----------------------------------------------------------------------

    def prune(self, older_than: timedelta | None = None) -> int:
        """Delete rows older than ``older_than`` (default: the window); returns how many.

        A payment read again after its row was pruned would be applied again: keep the window
        longer than the topic's retention plus the longest delay before a DLQ replay."""
        age = self.window if older_than is None else older_than
        db = self.database
        sql, value = db.age_cutoff(age)
        with self._connection() as conn:
            self._create(conn)
            try:
                db.begin(conn)
                deleted = conn.execute(
                    f"DELETE FROM {self.table} WHERE received_at < {sql}", (value,)
                ).rowcount
                conn.commit()
            except Exception as exc:
                _rollback(conn)
                raise db.wrap(exc, f"pruning {self.table}", conn) from exc
        log.info("pruned %d inbox row(s) older than %s from %s", deleted, age, self.table)
        return int(deleted)

    def close(self) -> None:
        """Close every connection of the pool (idle ones at once; busy ones when returned)."""
        with self._conns_lock:
            conns, self._conns = self._conns, []
            self._idle = queue.SimpleQueue()
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pool --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self.database.connect()
            with self._conns_lock:
                self._conns.append(conn)
        broken = False
        try:
            yield conn
        except BaseException as exc:
            broken = isinstance(exc, DatabaseError) and exc.retriable
            raise
        finally:
            if broken:
                # A lost connection is not handed out again: the next call connects afresh.
                with self._conns_lock:
                    if conn in self._conns:
                        self._conns.remove(conn)
                with contextlib.suppress(Exception):
                    conn.close()
            else:
                self._idle.put(conn)


def _rollback(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.rollback()


class SqliteInbox(Inbox):
    """An inbox in a SQLite file (stdlib ``sqlite3``): the embedded default.

    The handler's ``tx`` is a ``sqlite3.Connection`` inside ``BEGIN IMMEDIATE``; write your
    ledger rows with it and do not commit (the inbox does). Writers are serialised by SQLite,
    so ``concurrency`` adds little here beyond overlapping the handlers' other work."""

    def __init__(
        self,
        path: str | Path,
        *,
        table: str = "paykafka_inbox",
        window: timedelta = DEFAULT_WINDOW,
    ) -> None:
        super().__init__(SqliteDatabase(path), table=table, window=window)


class PostgresInbox(Inbox):
    """An inbox in PostgreSQL (psycopg 3, ``pip install 'paykafka[postgres]'``).

    The handler's ``tx`` is a ``psycopg.Connection`` in an open transaction (do not commit
    it). Each worker uses its own connection; concurrent deliveries of one id wait on its row
    lock, so it is applied once."""

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "paykafka_inbox",
        window: timedelta = DEFAULT_WINDOW,
    ) -> None:
        super().__init__(PostgresDatabase(dsn), table=table, window=window)
