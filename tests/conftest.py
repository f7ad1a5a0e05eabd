"""Shared fixtures. Integration tests run against the real local stack and FAIL without it.

There is deliberately no skip: a missing broker or registry is a broken environment, and CI
must say so. The fixtures come from paykafka's own pytest plugin (:mod:`paykafka.testing`);
``paykafka_stack = "env"`` in pyproject.toml points it at the stack ``PAYKAFKA_*`` describes.
Start that stack with ``paykafka stack up`` (``make test`` does it for you).
``live_settings`` and ``topic_settings`` are this suite's older names for the plugin's fixtures.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from _locks import ports_lock
from _postgres import PostgresCluster
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from paykafka import Settings
from paykafka.testing import TestStack

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def live_settings(paykafka_stack: TestStack) -> Settings:
    """Settings for the running stack, checked reachable once per session (the plugin's)."""
    return paykafka_stack.settings


def create_topic(settings: Settings, topic: str, *, partitions: int = 1) -> None:
    """Create ``topic`` and wait until the broker has it."""
    admin = AdminClient(settings.admin_config())
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)])
    futures[topic].result(timeout=30)


@pytest.fixture
def topic_settings(paykafka_settings: Settings) -> Settings:
    """Settings on a fresh topic, subject, group and DLQ of their own, removed afterwards."""
    return paykafka_settings


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider whose finished spans land in memory, synchronously, for checking."""
    # Imported here: only the tracing tests need the otel extra.
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
        InMemorySpanExporter,
    )

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


#: The session's PostgreSQL cluster (the exactly-once tests); its own port, never 5432.
POSTGRES_PORT = 24950


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the session; fails the test when it cannot start."""
    with ports_lock(f"paykafka-postgres-{POSTGRES_PORT}", wait=600):
        cluster = PostgresCluster(POSTGRES_PORT)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.destroy()


@pytest.fixture
def pg_dsn(postgres: PostgresCluster) -> str:
    """A fresh database in the session's cluster."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
