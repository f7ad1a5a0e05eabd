"""Exactly-once effects under crashes: the inbox and the outbox lose nothing, apply nothing twice.

Inbox: 20,000 payments on a 6-partition topic; trackers with ``concurrency=16`` and an inbox
book each into a ledger without a unique key (a payment applied twice would be two rows). One
tracker is SIGKILLed twice mid-stream and restarted, a second joins in between (a rebalance).
For SQLite and PostgreSQL: ledger rows = distinct ids = sent, 0 lost.

Outbox: business transactions (an order row + its event through the outbox, one in ten rolled
back) while the relay (``paykafka outbox relay``) is SIGKILLed every few seconds and restarted
and PostgreSQL is restarted once (immediate mode, like a crash); an inbox tracker downstream
books what arrives. Every committed order reaches the topic, no rolled-back one does, and the
ledger holds each committed payment exactly once.

Ports: Kafka 24910, registry 24911 (controller and management 1000 above), PostgreSQL 24960.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from _events import make_events
from _locks import ports_lock
from _postgres import PostgresCluster

from paykafka import Outbox, PaymentEvent, PaymentProducer, PaymentTracker, Settings
from paykafka._stack import Stack

from ._support import ROOT, Report, fresh_settings, member_env

INBOX_EVENTS = 20_000
OUTBOX_TRANSACTIONS = 4_000
# Business transactions per second: the writes span ~10 s, so the relay is killed ~5 times and
# PostgreSQL restarted while they go on.
OUTBOX_RATE = 400
PARTITIONS = 6
PG_PORT = 24960


@pytest.fixture(scope="module")
def fault_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of these tests' own (they restart it)."""
    with ports_lock(f"paykafka-postgres-{PG_PORT}", wait=600):
        cluster = PostgresCluster(PG_PORT)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.destroy()


class Members:
    """Inbox tracker processes of one group, started, killed and stopped by the test."""

    def __init__(self, url: str, settings: Settings, tmp: Path) -> None:
        self.url, self.env, self.tmp = url, member_env(settings), tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stats: list[Path] = []

    def start(self) -> subprocess.Popen[bytes]:
        stats = self.tmp / f"stats-{len(self.procs)}.json"
        self.stats.append(stats)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults._inbox_member", self.url, str(stats)],
            cwd=ROOT,
            env=self.env,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> list[int | None]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(60))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(None)
        return codes

    def kill_all(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    def duplicates(self) -> int:
        """Duplicates the cleanly stopped members absorbed (a SIGKILLed one reports none)."""
        return sum(json.loads(p.read_text())["duplicates"] for p in self.stats if p.exists())


def _ledger(url: str) -> tuple[int, int, set[str]]:
    """(rows, distinct ids, the ids) of the ledger."""
    if url.startswith("postgresql://"):
        with psycopg.connect(url) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS ledger (payment_id TEXT NOT NULL, amount TEXT NOT NULL)"
            )
            conn.commit()
            ids = [r[0] for r in conn.execute("SELECT payment_id FROM ledger").fetchall()]
    else:
        import sqlite3  # noqa: PLC0415

        conn2 = sqlite3.connect(url, timeout=30)
        try:
            conn2.execute(
                "CREATE TABLE IF NOT EXISTS ledger (payment_id TEXT NOT NULL, amount TEXT NOT NULL)"
            )
            conn2.commit()
            ids = [r[0] for r in conn2.execute("SELECT payment_id FROM ledger").fetchall()]
        finally:
            conn2.close()
    return len(ids), len(set(ids)), set(ids)


def _wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_inbox_trackers_killed_and_rebalanced_apply_each_payment_once(
    kind: str,
    exactly_once_stack: Stack,
    fault_postgres: PostgresCluster,
    tmp_path: Path,
    report: Report,
) -> None:
    """SIGKILL twice + a rebalance at concurrency=16: ledger rows = distinct = sent, 0 lost."""
    settings = fresh_settings(exactly_once_stack, partitions=PARTITIONS)
    if kind == "sqlite":
        url = str(tmp_path / "ledger.db")
    else:
        url = fault_postgres.create_database(f"inbox_{uuid.uuid4().hex[:8]}")
    _ledger(url)
    sent = make_events(INBOX_EVENTS, prefix="eo", users=500)
    began = time.monotonic()
    with PaymentProducer(settings) as producer:
        for event in sent:
            producer.send(event)
    members = Members(url, settings, tmp_path)
    kills = 0
    try:
        first = members.start()

        def booked() -> int:
            return _ledger(url)[0]

        assert _wait_for(lambda: booked() >= INBOX_EVENTS // 5, 120), "no progress"
        first.send_signal(signal.SIGKILL)
        kills += 1
        first.wait(10)
        second = members.start()
        assert _wait_for(lambda: booked() >= 2 * INBOX_EVENTS // 5, 120), "no progress"
        members.start()  # a rebalance: the group grows to two
        assert _wait_for(lambda: booked() >= 3 * INBOX_EVENTS // 5, 120), "no progress"
        second.send_signal(signal.SIGKILL)
        kills += 1
        second.wait(10)
        members.start()
        _wait_for(lambda: booked() >= INBOX_EVENTS, 120)
        time.sleep(2.0)  # let redeliveries after the last start settle
        codes = members.stop_all()
    finally:
        members.kill_all()
    rows, distinct, ids = _ledger(url)
    lost = len({str(e.payment_id) for e in sent} - ids)
    report(
        db=kind,
        sent=INBOX_EVENTS,
        ledger_rows=rows,
        distinct=distinct,
        lost=lost,
        duplicates_absorbed=members.duplicates(),
        sigkills=kills,
        members=len(members.procs),
        exit_codes=codes,
        seconds=round(time.monotonic() - began, 1),
    )
    assert lost == 0
    assert rows == distinct == INBOX_EVENTS


class Shop:
    """The business: each transaction writes an order and its event through the outbox; one in
    ten is rolled back. Survives the database restarting (reconnects, tries the next one)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.outbox = Outbox(url)
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE orders (payment_id TEXT PRIMARY KEY)")
            conn.commit()
        self.rolled_back: set[str] = set()
        self.done = threading.Event()
        self.errors = 0

    def run(self, events: list[PaymentEvent]) -> None:
        conn: Any = None
        began = time.monotonic()
        try:
            for i, event in enumerate(events):
                ahead = began + i / OUTBOX_RATE - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.url)
                    conn.execute(
                        "INSERT INTO orders (payment_id) VALUES (%s)", (str(event.payment_id),)
                    )
                    self.outbox.add(conn, event)
                    if i % 10 == 9:
                        conn.rollback()
                        self.rolled_back.add(str(event.payment_id))
                    else:
                        conn.commit()
                except Exception:  # noqa: BLE001 - the database restarting, whatever it raises
                    self.errors += 1
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
                    time.sleep(0.2)
        finally:
            if conn is not None:
                conn.close()
            self.done.set()

    def committed(self) -> set[str]:
        """The ground truth: the orders that are in the database."""
        with psycopg.connect(self.url) as conn:
            return {r[0] for r in conn.execute("SELECT payment_id FROM orders").fetchall()}


def test_outbox_relay_killed_and_postgres_restarted_publishes_every_committed_row(
    exactly_once_stack: Stack,
    fault_postgres: PostgresCluster,
    tmp_path: Path,
    report: Report,
) -> None:
    """Relay SIGKILLed every 2 s, PostgreSQL restarted once: topic = committed orders, and the
    downstream inbox tracker books each exactly once."""
    settings = fresh_settings(exactly_once_stack, partitions=PARTITIONS)
    shop_url = fault_postgres.create_database(f"shop_{uuid.uuid4().hex[:8]}")
    ledger_url = fault_postgres.create_database(f"ledger_{uuid.uuid4().hex[:8]}")
    _ledger(ledger_url)
    shop = Shop(shop_url)
    env = member_env(settings)
    relay_cmd = [
        str(Path(sys.executable).with_name("paykafka")), "outbox", "relay", "--db", shop_url,
        "--batch-size", "200",
    ]  # fmt: skip
    relays: list[subprocess.Popen[bytes]] = []
    members = Members(ledger_url, settings, tmp_path)
    events = make_events(OUTBOX_TRANSACTIONS, prefix="shop", users=300)
    began = time.monotonic()
    writer = threading.Thread(target=shop.run, args=(events,), daemon=True)
    restarted = False
    try:
        members.start()
        relays.append(subprocess.Popen(relay_cmd, cwd=ROOT, env=env))
        writer.start()
        last_kill = time.monotonic()
        while not shop.done.is_set():
            time.sleep(0.2)
            if time.monotonic() - last_kill >= 2.0:
                relays[-1].send_signal(signal.SIGKILL)
                relays[-1].wait(10)
                relays.append(subprocess.Popen(relay_cmd, cwd=ROOT, env=env))
                last_kill = time.monotonic()
            if not restarted and time.monotonic() - began > 4.0:
                fault_postgres.restart()
                restarted = True
        if not restarted:
            fault_postgres.restart()
            restarted = True
        writer.join(30)
        committed = shop.committed()
        assert _wait_for(lambda: shop.outbox.status().pending == 0, 120), "relay stuck"
        assert _wait_for(lambda: _ledger(ledger_url)[0] >= len(committed), 120), "not booked"
        time.sleep(2.0)
        relays[-1].send_signal(signal.SIGTERM)
        relays[-1].wait(30)
        codes = members.stop_all()
    finally:
        members.kill_all()
        for proc in relays:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    published = _topic_ids(settings)
    rows, distinct, booked = _ledger(ledger_url)
    report(
        transactions=OUTBOX_TRANSACTIONS,
        committed=len(committed),
        rolled_back=len(shop.rolled_back),
        failed_during_restart=shop.errors,
        published_records=sum(published.values()),
        published_distinct=len(published),
        lost=len(committed - published.keys()),
        rolled_back_published=len(shop.rolled_back & published.keys()),
        ledger_rows=rows,
        ledger_distinct=distinct,
        relay_sigkills=len(relays) - 1,
        postgres_restarts=1,
        duplicates_absorbed=members.duplicates(),
        exit_codes=codes,
        seconds=round(time.monotonic() - began, 1),
    )
    assert committed - published.keys() == set()
    assert published.keys() <= committed
    assert not shop.rolled_back & published.keys()
    assert rows == distinct == len(committed)
    assert booked == committed


def _topic_ids(settings: Settings) -> dict[str, int]:
    """Every payment id on the topic with how often it is there."""
    counts: dict[str, int] = {}
    reader = attrs.evolve(settings, group_id=f"{settings.group_id}-audit")
    with PaymentTracker(reader, from_beginning=True) as tracker:
        for record in tracker.records(stop_at_end=True, idle_timeout=30):
            key = str(record.event.payment_id)
            counts[key] = counts.get(key, 0) + 1
    return counts
