"""The transactional outbox: an event leaves only with the writes it belongs to.

Writing to a database and then to Kafka loses the event when the process dies in between (the
dual-write problem). With the outbox, ``outbox.add(tx, event)`` inserts the event as a row in
the caller's own transaction: the business rows and the event commit together or vanish
together. :class:`OutboxRelay` then publishes the committed rows with the idempotent producer
and marks each published only after the broker acknowledged it; a relay killed at any instant
re-publishes at most the rows it had not marked yet, and downstream inboxes absorb those.

Order: rows are published in ``id`` order. SQLite serialises writers, so ids are in commit
order. On PostgreSQL a sequence hands out ids before commit, so ``add`` first takes a
transaction-scoped advisory lock on the event's key (the user): two transactions of one user
cannot interleave, and each user's rows get ids in commit order. Rows of different users may
be published out of their commit order, which Kafka's per-key ordering does not see anyway.

One relay at a time: on PostgreSQL a session advisory lock (it dies with the connection, so a
SIGKILLed relay frees it at once); on SQLite an ``flock`` on ``<db>.relay.lock`` (the kernel
drops it with the process). A second relay waits as a hot standby and takes over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Self, TextIO

import attrs

from paykafka._errors import DeliveryError, PayKafkaError
from paykafka._event import PaymentEvent
from paykafka._exactly_once._db import (
    Database,
    PostgresDatabase,
    SqliteDatabase,
    check_table,
    open_database,
)
from paykafka._producer import DeliveryFuture, PaymentProducer, key_by_user
from paykafka._settings import Settings

__all__ = ["Outbox", "OutboxRelay", "OutboxStatus"]

log = logging.getLogger("paykafka.outbox")

# How long a batch waits for the broker's acknowledgements before trying again.
_FLUSH_SECONDS = 60.0
# The first key of the two-int advisory locks ``add`` takes per user ("pk" "ob").
_USER_LOCK_CLASS = 0x706B6F62 - 2**31


def encode_event(event: PaymentEvent) -> str:
    """The row's text: the event's canonical JSON (exact amount, ISO timestamp)."""
    return event.to_json()


def decode_event(text: str) -> PaymentEvent:
    """The event a row holds."""
    data = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    data["timestamp"] = datetime.fromisoformat(data["timestamp"])
    return PaymentEvent.from_dict(data)


@attrs.frozen
class OutboxStatus:
    """What ``paykafka outbox status`` shows."""

    #: Rows committed and not yet published.
    pending: int
    #: Seconds since the oldest pending row was written (0 when none is pending).
    oldest_age: float
    #: Rows published and not yet pruned.
    published: int


class Outbox:
    """Events written in the caller's transaction, published later by :class:`OutboxRelay`.

    ``Outbox(db)`` with ``db`` a ``postgresql://`` URL, ``sqlite:///path`` or a plain SQLite
    path; the table is created on construction (``create=False``: by the relay, once the
    database answers). ``add(tx, event)`` takes the caller's open
    connection (a ``sqlite3.Connection`` or a ``psycopg.Connection``) and never commits: the
    caller's commit publishes, the caller's rollback un-writes.
    """

    def __init__(
        self,
        db: str | Path,
        *,
        table: str = "paykafka_outbox",
        key: Callable[[PaymentEvent], str] = key_by_user,
        create: bool = True,
    ) -> None:
        self.database: Database = open_database(db)
        self.table = check_table(table)
        self._key = key
        ph = self.database.ph
        self._user_lock = f"SELECT pg_advisory_xact_lock({_USER_LOCK_CLASS}, {ph})"
        self._insert = f"INSERT INTO {self.table} (key, event, created_at) VALUES ({ph}, {ph}, "
        self._insert += f"{self.database.now()})"
        self._created = False
        if create:
            self.create_tables()

    def create_tables(self) -> None:
        """Create the outbox table if missing (idempotent)."""
        db = self.database
        if isinstance(db, PostgresDatabase):
            columns = (
                "id bigserial PRIMARY KEY, key text NOT NULL, event text NOT NULL, "
                "created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz"
            )
        else:
            columns = (
                "id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, event TEXT NOT NULL, "
                "created_at REAL NOT NULL, published_at REAL"
            )
        ddl = [f"CREATE TABLE IF NOT EXISTS {self.table} ({columns})"]
        ddl.append(
            f"CREATE INDEX IF NOT EXISTS {self.table}_pending ON {self.table} (id) "
            "WHERE published_at IS NULL"
        )
        ddl.append(
            f"CREATE INDEX IF NOT EXISTS {self.table}_published ON {self.table} (published_at)"
        )
        conn = db.connect()
        try:
            if isinstance(db, PostgresDatabase):
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
            else:
                db.begin(conn)
            for statement in ddl:
                conn.execute(statement)
            conn.commit()
        except Exception as exc:
            raise db.wrap(exc, f"creating the outbox table {self.table}", conn) from exc
        finally:
            conn.close()
        self._created = True

    def add(self, tx: Any, event: PaymentEvent) -> None:
        """Write ``event`` into the outbox inside ``tx``'s open transaction (no commit)."""
        key = self._key(event)
        db = self.database
        try:
            if isinstance(db, PostgresDatabase):
                # Per user, ids in commit order: see the module docstring.
                tx.execute(self._user_lock, (_signed32(zlib.crc32(key.encode())),))
                tx.execute(self._insert, (key, encode_event(event)))
            else:
                assert isinstance(db, SqliteDatabase)
                tx.execute(self._insert, (key, encode_event(event), db.now_value()))
        except Exception as exc:
            raise db.wrap(exc, f"adding payment {event.payment_id} to {self.table}", tx) from exc

    async def add_async(self, tx: Any, event: PaymentEvent) -> None:
        """:meth:`add` for asyncio code: ``tx`` a ``psycopg.AsyncConnection`` in an open
        transaction (or a ``sqlite3.Connection``, written at once: SQLite has no async driver)."""
        db = self.database
        if not isinstance(db, PostgresDatabase):
            self.add(tx, event)
            return
        key = self._key(event)
        try:
            await tx.execute(self._user_lock, (_signed32(zlib.crc32(key.encode())),))
            await tx.execute(self._insert, (key, encode_event(event)))
        except Exception as exc:
            raise db.wrap(exc, f"adding payment {event.payment_id} to {self.table}", tx) from exc

    def status(self) -> OutboxStatus:
        """Pending rows, the oldest pending row's age, published rows not yet pruned."""
        db = self.database
        conn = db.connect()
        try:
            pending, oldest = conn.execute(
                f"SELECT count(*), {db.age_seconds('min(created_at)')} FROM {self.table} "
                "WHERE published_at IS NULL"
            ).fetchone()
            (published,) = conn.execute(
                f"SELECT count(*) FROM {self.table} WHERE published_at IS NOT NULL"
            ).fetchone()
            conn.rollback()
        except Exception as exc:
            raise db.wrap(exc, f"reading {self.table}", conn) from exc
        finally:
            conn.close()
        return OutboxStatus(int(pending), max(float(oldest or 0.0), 0.0), int(published))

    def prune(self, older_than: timedelta) -> int:
        """Delete rows published more than ``older_than`` ago; returns how many."""
        db = self.database
        sql, value = db.age_cutoff(older_than)
        conn = db.connect()
        try:
            db.begin(conn)
            deleted = conn.execute(
                f"DELETE FROM {self.table} WHERE published_at < {sql}", (value,)
            ).rowcount
            conn.commit()
        except Exception as exc:
            raise db.wrap(exc, f"pruning {self.table}", conn) from exc
        finally:
            conn.close()
        return int(deleted)


def _signed32(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


class _RelayLock:
    """At most one active relay per outbox table."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._file: TextIO | None = None

    def try_take(self, conn: Any) -> bool:
        db = self.outbox.database
        if isinstance(db, PostgresDatabase):
            (got,) = conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s))",
                (f"paykafka.relay.{self.outbox.table}",),
            ).fetchone()
            conn.commit()
            return bool(got)
        assert isinstance(db, SqliteDatabase)
        if self._file is not None:
            return True
        path = db.path.with_name(f"{db.path.name}.{self.outbox.table}.relay.lock")
        handle = path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


class OutboxRelay:
    """Publishes committed outbox rows in order and marks them published once acknowledged.

    ``run()`` loops until :meth:`stop` (or, with ``stop_when_empty``, until nothing is
    pending): take the lock (or wait for it as a hot standby), read up to ``batch_size``
    pending rows in ``id`` order, send them with the idempotent producer, flush, and mark the
    acknowledged ones published in one transaction. ``max_rate`` bounds the rows per second
    published while catching up on a backlog, so a relay that was down does not flood the
    topic (and the consumers behind it) at once. A database or broker that goes away is waited
    for and retried; nothing is marked that the broker did not acknowledge.
    """

    def __init__(
        self,
        db: str | Path | Outbox,
        settings: Settings | None = None,
        *,
        batch_size: int = 500,
        max_rate: float | None = 10_000.0,
        poll_interval: float = 0.2,
        producer: PaymentProducer | None = None,
    ) -> None:
        self.outbox = db if isinstance(db, Outbox) else Outbox(db, create=False)
        self.settings = settings or Settings.from_env()
        self.batch_size = batch_size
        self.max_rate = max_rate
        self.poll_interval = poll_interval
        self._producer = producer
        self._owns_producer = producer is None
        self._stop = threading.Event()
        self._lock = _RelayLock(self.outbox)
        self._conn: Any = None
        #: Rows published (and marked) by this relay so far.
        self.published = 0
        #: Whether this relay holds the lock (the active one) right now.
        self.active = False
        db_ = self.outbox.database
        table = self.outbox.table
        self._select = (
            f"SELECT id, event FROM {table} WHERE published_at IS NULL ORDER BY id LIMIT {db_.ph}"
        )
        self._mark = f"UPDATE {table} SET published_at = {db_.now()} WHERE id = {db_.ph}"
        # PostgreSQL: one statement marks the whole batch (an array of ids).
        self._mark_all = f"UPDATE {table} SET published_at = now() WHERE id = ANY(%s)"

    def stop(self) -> None:
        """Ask :meth:`run` to stop after the batch in hand (thread- and signal-safe)."""
        self._stop.set()

    def run(self, *, stop_when_empty: bool = False) -> int:
        """Relay until stopped; returns how many rows this call published."""
        start = self.published
        try:
            while not self._stop.is_set():
                try:
                    if not self._ensure_active():
                        self._stop.wait(1.0)  # the hot standby: try again in a moment
                        continue
                    sent = self.relay_once()
                except PayKafkaError as exc:
                    # A database or broker that is away is waited for; a bug is raised.
                    if not (exc.retriable or isinstance(exc, DeliveryError)):
                        raise
                    log.warning("outbox relay: %s; retrying in 1 s", exc)
                    self._disconnect()
                    self._stop.wait(1.0)
                    continue
                if sent == 0:
                    if stop_when_empty:
                        break
                    self._stop.wait(self.poll_interval)
        finally:
            self.close()
        return self.published - start

    def relay_once(self) -> int:
        """Publish one batch (if this relay is active); returns how many rows were marked."""
        if not self._ensure_active():
            return 0
        db = self.outbox.database
        conn = self._conn
        began = time.monotonic()
        try:
            rows = conn.execute(self._select, (self.batch_size,)).fetchall()
            conn.rollback()
        except Exception as exc:
            raise db.wrap(exc, f"reading {self.outbox.table}", conn) from exc
        if not rows:
            return 0
        producer = self._producer_started()
        futures: list[tuple[int, DeliveryFuture]] = [
            (row_id, producer.send(decode_event(text))) for row_id, text in rows
        ]
        try:
            producer.flush(_FLUSH_SECONDS)
        except DeliveryError as exc:
            log.warning("outbox relay: %d row(s) not acknowledged: %s", len(exc.undelivered), exc)
        acked = [row_id for row_id, f in futures if f.done() and f.exception(0) is None]
        if acked:
            try:
                db.begin(conn)
                if isinstance(db, SqliteDatabase):
                    now = db.now_value()
                    conn.executemany(self._mark, [(now, row_id) for row_id in acked])
                else:
                    conn.execute(self._mark_all, (acked,))
                conn.commit()
            except Exception as exc:
                with contextlib.suppress(Exception):
                    conn.rollback()
                # Published but not marked: published again next time, absorbed downstream.
                raise db.wrap(exc, f"marking rows of {self.outbox.table} published", conn) from exc
        self.published += len(acked)
        if len(acked) < len(rows):
            raise DeliveryError(
                f"{len(rows) - len(acked)} outbox row(s) were not acknowledged; they stay "
                "pending and are sent again",
                [],
                retriable=True,
            )
        self._pace(len(rows), began)
        return len(acked)

    def _pace(self, rows: int, began: float) -> None:
        """Sleep so that this batch took at least ``rows / max_rate`` seconds."""
        if not self.max_rate:
            return
        left = rows / self.max_rate - (time.monotonic() - began)
        if left > 0:
            self._stop.wait(left)

    def _ensure_active(self) -> bool:
        db = self.outbox.database
        if self._conn is None:
            if not self.outbox._created:
                self.outbox.create_tables()
            self._conn = db.connect()
            self.active = False
        if self.active:
            return True
        try:
            got = self._lock.try_take(self._conn)
        except Exception as exc:
            raise db.wrap(exc, "taking the relay lock", self._conn) from exc
        if got:
            self.active = True
            log.info("outbox relay active on %s", self.outbox.table)
        return got

    def _producer_started(self) -> PaymentProducer:
        if self._producer is None:
            self._producer = PaymentProducer(self.settings)
        return self._producer.start()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self.active = False
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Give up the lock and the connections (a standby takes over)."""
        self._disconnect()
        self._lock.release()
        if self._owns_producer and self._producer is not None:
            with contextlib.suppress(PayKafkaError):
                self._producer.close()
            self._producer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
