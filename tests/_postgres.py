"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` in a temp dir, on a port.

PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres``
system user (created with ``useradd`` when the machine has none). The binaries are found on
``PATH`` or in Debian's ``/usr/lib/postgresql/<version>/bin``. A cluster that cannot start is
a test failure, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

_USER = "postgres"


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    pytest.fail(f"PostgreSQL's {name} is not installed (apt-get install postgresql)", pytrace=False)


def _as_user() -> list[str]:
    """The command prefix that runs a PostgreSQL binary as a non-root user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _USER],
            check=True,
        )
    return ["runuser", "-u", _USER, "--"]


class PostgresCluster:
    """One cluster: ``start``, ``stop``, ``restart``, ``dsn(db)`` and ``create_database``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix=f"paykafka-pg-{port}-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._prefix = _as_user()
        if self._prefix:
            entry = pwd.getpwnam(_USER)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self._prefix, *args], capture_output=True, text=True, check=False, timeout=120
        )
        if check and proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(
                f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr}{proc.stdout}\n"
                f"{log[-2000:]}",
                pytrace=False,
            )
        return proc

    def start(self) -> None:
        if not self.data.exists():
            self._run(
                _bin("initdb"), "-D", str(self.data), "-U", "paykafka", "--auth=trust", "-E", "UTF8"
            )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            # Throwaway data: skip fsync (a killed *process* loses nothing either way).
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "immediate") -> None:
        """Stop (``immediate``: like a crash) and start again on the same port and data."""
        self.stop(mode)
        self.start()

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://paykafka@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its DSN."""
        import psycopg  # noqa: PLC0415 - the postgres extra is a test dependency

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.dsn(), autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                    conn.execute(f'CREATE DATABASE "{name}"')
                return self.dsn(name)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def destroy(self) -> None:
        self.stop("immediate")
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)
