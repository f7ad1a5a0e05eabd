"""Helpers the fault tests share: fresh topics, paced events, a tracker in a thread."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from paykafka import PaymentEvent, PaymentTracker, Settings, StackError
from paykafka._admin import KafkaAdmin
from paykafka._stack import Stack

#: What the ``report`` fixture gives a test: ``report(sent=..., lost=...)``.
Report = Callable[..., None]
#: The checkout: member subprocesses import paykafka and the tests' helpers from it.
ROOT = Path(__file__).resolve().parents[2]


def member_env(settings: Settings) -> dict[str, str]:
    """The environment of a member subprocess on ``settings``' topic, group and DLQ.

    Why not ``os.environ`` as it is: a developer's own ``PAYKAFKA_*`` variables (another stack,
    another topic) would leak into the member and point it elsewhere.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYKAFKA_")}
    env.update(
        PAYKAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        PAYKAFKA_REGISTRY_URL=settings.registry_url,
        PAYKAFKA_TOPIC=settings.topic,
        PAYKAFKA_GROUP_ID=settings.group_id,
        PAYKAFKA_DLQ_TOPIC=settings.dlq_topic,
        PAYKAFKA_CREATE_TOPIC="false",
        PYTHONPATH=str(ROOT),
    )
    return env


def stack_settings(stack: Stack) -> Settings:
    """Settings pointing at ``stack``; short registry timeout so outages show quickly."""
    return Settings(
        bootstrap_servers=stack.config.bootstrap_servers,
        registry_url=stack.config.registry_url,
        registry_timeout=3.0,
        create_topic=False,
    )


def fresh_settings(
    stack: Stack,
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    configs: dict[str, str] | None = None,
) -> Settings:
    """Settings on a new topic, DLQ, group and subject of their own on ``stack``."""
    name = f"payments-fault-{uuid.uuid4().hex[:8]}"
    settings = attrs.evolve(
        stack_settings(stack), topic=name, group_id=f"{name}-group", dlq_topic=f"{name}.dlq"
    )
    KafkaAdmin(settings, timeout=30.0).create_topic(
        name, partitions=partitions, replication_factor=replication_factor, configs=configs
    )
    return settings


class KilledNode:
    """A SIGKILLed broker whose ports are kept reserved until it is started again.

    Why: between the kill and the restart nothing else on the host may take the broker's
    ports, or the broker could never listen again. The fault ports lie below Linux's ephemeral
    range, so the kernel never hands them out as source ports; a socket bound (not listening)
    to each port also keeps any other process from binding them, while connection attempts
    are still refused as on a real crash.
    """

    def __init__(self, stack: Stack, node_id: int) -> None:
        self.stack = stack
        self.node_id = node_id
        self._held: list[socket.socket] = []

    def kill(self) -> KilledNode:
        self.stack.kill_node(self.node_id)
        ports = (
            self.stack.config.broker_port(self.node_id),
            self.stack.config.controller_port(self.node_id),
        )
        deadline = time.monotonic() + 10
        for port in ports:
            while True:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    sock.close()
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)  # the dying JVM still has it
                else:
                    self._held.append(sock)
                    break
        return self

    def restart(self, *, timeout: float = 60.0) -> None:
        """Release the ports and start the broker again (retrying while a port is busy)."""
        for sock in self._held:
            sock.close()
        self._held.clear()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.stack.start_node(self.node_id)
            except StackError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
            else:
                return


class TrackerThread:
    """A :class:`PaymentTracker` running in the background, counting what it sees.

    ``seen`` counts deliveries per payment id, so duplicates (at-least-once) and losses are
    both visible; ``errors`` keeps anything that escaped the tracker.
    """

    def __init__(self, settings: Settings, **tracker_options: Any) -> None:
        self.tracker = PaymentTracker(settings, **tracker_options)
        self.seen: Counter[uuid.UUID] = Counter()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fault-tracker", daemon=True)

    def _handle(self, event: PaymentEvent) -> None:
        with self._lock:
            self.seen[event.payment_id] += 1

    def _run(self) -> None:
        try:
            with self.tracker:
                self.tracker.run(self._handle, handle_signals=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            self.errors.append(exc)

    def start(self) -> TrackerThread:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def distinct(self) -> int:
        with self._lock:
            return len(self.seen)

    def total(self) -> int:
        with self._lock:
            return sum(self.seen.values())

    def wait_for(self, ids: set[uuid.UUID], timeout: float) -> bool:
        """Wait until every id in ``ids`` was tracked, the thread died, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive:
            with self._lock:
                if ids <= self.seen.keys():
                    return True
            time.sleep(0.2)
        with self._lock:
            return ids <= self.seen.keys()

    def stop(self) -> None:
        self.tracker.stop()
        self._thread.join(30)
