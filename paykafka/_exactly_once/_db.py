"""The two databases the inbox and the outbox run on, behind one small seam.

SQLite (stdlib ``sqlite3``) is the embedded default; PostgreSQL goes through psycopg 3 (the
``paykafka[postgres]`` extra, imported only when a ``postgresql://`` URL is used). Everything
that differs between them lives here: connecting, the SQL that is not portable, and which
errors mean "the database is not there right now" (retry later) rather than "this is wrong".
"""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paykafka._errors import ConfigError, DatabaseError, DatabaseUnavailableError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "Database",
    "PostgresDatabase",
    "SqliteDatabase",
    "open_database",
    "parse_age",
]

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# How long a SQLite connection waits for another process's write lock before giving up.
_SQLITE_BUSY_SECONDS = 30.0


def check_table(name: str) -> str:
    """A table name we can put into SQL: lower-case letters, digits and underscores."""
    if not _IDENT.fullmatch(name):
        raise ConfigError(f"table name {name!r}: use lower-case letters, digits and underscores")
    return name


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` or ``2w`` as a timedelta (the CLI's ``--older-than``)."""
    match = _AGE.fullmatch(text.strip().lower())
    if match is None:
        raise ConfigError(f"age {text!r}: give a number and a unit s, m, h, d or w (e.g. 30d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _psycopg() -> Any:
    try:
        import psycopg  # noqa: PLC0415 - optional extra, imported only for postgresql:// URLs
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigError("PostgreSQL needs psycopg 3: pip install 'paykafka[postgres]'") from None
    return psycopg


class Database:
    """One database: how to connect and the SQL that differs. ``ph`` is the placeholder."""

    ph = "?"
    kind = ""

    def connect(self) -> Any:
        raise NotImplementedError

    def unavailable(self, exc: BaseException, conn: Any | None) -> bool:
        """Whether ``exc`` (raised on ``conn``) means the database is away, not that the
        statement or the data is wrong."""
        raise NotImplementedError

    def wrap(self, exc: BaseException, what: str, conn: Any | None = None) -> DatabaseError:
        """A paykafka error for a database error raised while doing ``what``."""
        if self.unavailable(exc, conn):
            return DatabaseUnavailableError(
                f"{what}: the {self.kind} database is unavailable ({exc}); retry once it is back"
            )
        return DatabaseError(f"{what}: {self.kind} said {exc}")

    def now(self) -> str:
        """SQL for the current time as the tables store it."""
        raise NotImplementedError

    def age_cutoff(self, older_than: timedelta) -> tuple[str, Any]:
        """SQL and its parameter for "stored before now minus ``older_than``"."""
        raise NotImplementedError

    def age_seconds(self, column: str) -> str:
        """SQL for a stored time's age in seconds."""
        raise NotImplementedError

    def begin(self, conn: Any) -> None:
        """Open a write transaction on ``conn``."""
        raise NotImplementedError


class SqliteDatabase(Database):
    """A SQLite file; one writer at a time (the database serialises them)."""

    kind = "SQLite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"

    def connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=_SQLITE_BUSY_SECONDS,
                isolation_level=None,  # we BEGIN and COMMIT ourselves
                check_same_thread=False,  # a pool hands it to one thread at a time
            )
            # WAL: readers never block the writer. synchronous=NORMAL keeps every commit
            # across a crash of the process (SIGKILL); only a power cut may lose the last.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise self.wrap(exc, f"opening {self.path}") from exc
        return conn

    def unavailable(self, exc: BaseException, conn: Any | None) -> bool:
        text = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and (
            "locked" in text or "busy" in text or "unable to open" in text
        )

    def now(self) -> str:
        return "?"

    def now_value(self) -> float:
        return time.time()

    def age_cutoff(self, older_than: timedelta) -> tuple[str, Any]:
        return "?", time.time() - older_than.total_seconds()

    def age_seconds(self, column: str) -> str:
        return f"(CAST(strftime('%s','now') AS REAL) - {column})"

    def begin(self, conn: Any) -> None:
        # IMMEDIATE takes the write lock now: two writers never both read, then deadlock on
        # upgrading their locks.
        conn.execute("BEGIN IMMEDIATE")


class PostgresDatabase(Database):
    """A PostgreSQL database through psycopg 3; rows are locked, writers run side by side."""

    ph = "%s"
    kind = "PostgreSQL"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.url = dsn
        self._pg = _psycopg()

    def connect(self) -> psycopg.Connection[Any]:
        try:
            conn: psycopg.Connection[Any] = self._pg.connect(self.dsn, connect_timeout=10)
        except self._pg.Error as exc:
            raise self.wrap(exc, "connecting to PostgreSQL") from exc
        return conn

    async def connect_async(self) -> psycopg.AsyncConnection[Any]:
        try:
            conn: psycopg.AsyncConnection[Any] = await self._pg.AsyncConnection.connect(
                self.dsn, connect_timeout=10
            )
        except self._pg.Error as exc:
            raise self.wrap(exc, "connecting to PostgreSQL") from exc
        return conn

    def unavailable(self, exc: BaseException, conn: Any | None) -> bool:
        pg = self._pg
        if isinstance(exc, pg.OperationalError | pg.errors.AdminShutdown):
            return True
        return conn is not None and bool(conn.closed or conn.broken)

    def now(self) -> str:
        return "now()"

    def age_cutoff(self, older_than: timedelta) -> tuple[str, Any]:
        return "now() - %s", older_than

    def age_seconds(self, column: str) -> str:
        return f"EXTRACT(EPOCH FROM now() - {column})"

    def begin(self, conn: Any) -> None:
        """psycopg opens a transaction with the first statement; nothing to do."""


def open_database(db: str | Path) -> Database:
    """``postgresql://...`` (or ``postgres://``) is PostgreSQL; ``sqlite:///path`` or a plain
    path is a SQLite file."""
    text = str(db)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(text)
    if text.startswith("sqlite:///"):
        return SqliteDatabase(text.removeprefix("sqlite:///"))
    if "://" in text:
        raise ConfigError(f"database {text!r}: use postgresql://... or sqlite:///path (or a path)")
    return SqliteDatabase(text)
