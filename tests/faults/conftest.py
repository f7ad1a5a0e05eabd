"""Fault tests: stacks of their own, a tracker in a thread, and the figures each test reports.

Each stack lives in a pytest temp dir on ports no one else uses (the single node on
21092/21081, the cluster on 23092-23094/23081; their controllers sit 1000 above the brokers),
all below Linux's ephemeral range (32768-60999) so no outgoing connection can take them,
so killing a broker here never disturbs the shared ``paykafka stack up`` on 9092. Stacks are
per module (the consumer-group tests have theirs on 24292/24281), so a file lock held by
one module keeps two concurrent runs of these tests from colliding on the ports. A stack that
cannot start is a test error, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _locks import ports_lock

from paykafka._stack import Stack, StackConfig
from paykafka._stack._process import port_is_free

from ._support import Report

SINGLE_KAFKA_PORT = 21092
SINGLE_REGISTRY_PORT = 21081
CLUSTER_KAFKA_PORT = 23092
CLUSTER_REGISTRY_PORT = 23081
GROUP_KAFKA_PORT = 24292
GROUP_REGISTRY_PORT = 24281
# The exactly-once tests (inbox, outbox): Kafka 24910, registry 24911, PostgreSQL 24960.
EXACTLY_ONCE_KAFKA_PORT = 24910
EXACTLY_ONCE_REGISTRY_PORT = 24911

_FIGURES: list[dict[str, Any]] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder as a fault test."""
    for item in items:
        if "/faults/" in str(item.path):
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print every fault test's figures at the end, with or without ``-s``."""
    if not _FIGURES:
        return
    terminalreporter.section("fault figures")
    for row in _FIGURES:
        terminalreporter.write_line(json.dumps(row))


@pytest.fixture(scope="session")
def figures_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One JSON line per fault test, under the session's temp dir."""
    return tmp_path_factory.getbasetemp() / "fault-figures.jsonl"


@pytest.fixture
def report(request: pytest.FixtureRequest, figures_file: Path) -> Report:
    """Record a test's figures: printed, kept for the summary and appended to the file."""

    def write(**figures: Any) -> None:
        row = {"test": request.node.name, **figures}
        _FIGURES.append(row)
        line = json.dumps(row)
        print(f"FAULT FIGURES {line}")
        with figures_file.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    return write


def _wait_for_free_ports(config: StackConfig, wait: float = 240.0) -> None:
    """Wait out a run that holds our ports without the lock (an older checkout of these tests)."""
    ports = [config.registry_port, config.management_port]
    for node in config.node_ids:
        ports += [config.broker_port(node), config.controller_port(node)]
    deadline = time.monotonic() + wait
    while busy := [p for p in ports if not port_is_free(p)]:
        if time.monotonic() >= deadline:
            pytest.fail(f"ports {busy} stayed busy for {wait:.0f}s; stop what holds them")
        time.sleep(1.0)


@contextlib.contextmanager
def _own_stack(tmp: Path, *, brokers: int, kafka_port: int, registry_port: int) -> Iterator[Stack]:
    """Start a stack of our own and always tear it down, data included."""
    config = StackConfig.from_env(
        state_dir=tmp,
        brokers=brokers,
        kafka_port=kafka_port,
        registry_port=registry_port,
        start_timeout=180.0,
    )
    stack = Stack(config)
    with ports_lock(f"paykafka-faults-{kafka_port}", wait=300.0):
        _wait_for_free_ports(config)
        try:
            stack.up()
            yield stack
        finally:
            stack.down(timeout=20.0, purge=True)


def own_stack_fixture(name: str, *, brokers: int, kafka_port: int, registry_port: int) -> Any:
    """A module-scoped fixture: a stack of the suite's own on these ports, purged afterwards.

    Each fault suite restarts and kills its own brokers, so none may share a stack; the ports
    are fixed (and locked) so that two runs on one host queue instead of colliding.
    """

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
        with _own_stack(
            tmp_path_factory.mktemp(name),
            brokers=brokers,
            kafka_port=kafka_port,
            registry_port=registry_port,
        ) as stack:
            yield stack

    return fixture


single_stack = own_stack_fixture(
    "stack-single", brokers=1, kafka_port=SINGLE_KAFKA_PORT, registry_port=SINGLE_REGISTRY_PORT
)
cluster_stack = own_stack_fixture(
    "stack-cluster", brokers=3, kafka_port=CLUSTER_KAFKA_PORT, registry_port=CLUSTER_REGISTRY_PORT
)
group_stack = own_stack_fixture(
    "stack-group", brokers=1, kafka_port=GROUP_KAFKA_PORT, registry_port=GROUP_REGISTRY_PORT
)
exactly_once_stack = own_stack_fixture(
    "stack-exactly-once",
    brokers=1,
    kafka_port=EXACTLY_ONCE_KAFKA_PORT,
    registry_port=EXACTLY_ONCE_REGISTRY_PORT,
)
