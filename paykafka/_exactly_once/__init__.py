"""Exactly-once effects on a real database: the idempotent inbox and the transactional outbox.

Kafka delivers at least once. The inbox (:mod:`._inbox`, :mod:`._aio`) makes a tracker's
effects happen once per payment: the payment id is recorded in the same database transaction
as the handler's writes. The outbox (:mod:`._outbox`) makes a service's events leave only with
its committed writes: the event is a row in the same transaction, and a relay publishes it.
Both run on SQLite (stdlib) and PostgreSQL (psycopg 3, ``paykafka[postgres]``); what differs
between the two lives in :mod:`._db`.
"""

from paykafka._exactly_once._aio import AsyncInbox, AsyncPostgresInbox, AsyncSqliteInbox
from paykafka._exactly_once._db import open_database, parse_age
from paykafka._exactly_once._inbox import (
    DEFAULT_WINDOW,
    Inbox,
    InboxOutcome,
    PostgresInbox,
    SqliteInbox,
    content_hash,
)
from paykafka._exactly_once._outbox import Outbox, OutboxRelay, OutboxStatus

__all__ = [
    "DEFAULT_WINDOW",
    "AsyncInbox",
    "AsyncPostgresInbox",
    "AsyncSqliteInbox",
    "Inbox",
    "InboxOutcome",
    "Outbox",
    "OutboxRelay",
    "OutboxStatus",
    "PostgresInbox",
    "SqliteInbox",
    "content_hash",
    "open_database",
    "parse_age",
]
