"""Shared fixtures. Integration tests run against the real local stack and FAIL without it.

There is deliberately no skip: a missing broker or registry is a broken environment, and CI
must say so. Start the stack with ``paykafka stack up`` (``make test`` does it for you).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import attrs
import pytest
from _locks import ports_lock
from _postgres import PostgresCluster
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from paykafka import RegistryClient, RegistryUnavailableError, Settings


@pytest.fixture(scope="session")
def live_settings() -> Settings:
    """Settings for the running stack, checked reachable once per session."""
    settings = Settings.from_env()
    admin = AdminClient(settings.admin_config())
    try:
        admin.list_topics(timeout=15)
    except Exception as exc:  # noqa: BLE001 - any failure here means "no broker"
        pytest.fail(
            f"no Kafka broker at {settings.bootstrap_servers} ({exc}); start the stack with "
            "`paykafka stack up` (make test does it)",
            pytrace=False,
        )
    with RegistryClient(settings) as registry:
        try:
            registry.subjects()
        except RegistryUnavailableError as exc:
            pytest.fail(f"{exc}", pytrace=False)
    return settings


def create_topic(settings: Settings, topic: str, *, partitions: int = 1) -> None:
    """Create ``topic`` and wait until the broker has it."""
    admin = AdminClient(settings.admin_config())
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)])
    futures[topic].result(timeout=30)


@pytest.fixture
def topic_settings(live_settings: Settings) -> Iterator[Settings]:
    """Settings on a fresh topic, subject and group of their own, removed afterwards."""
    name = f"payments-test-{uuid.uuid4().hex[:10]}"
    create_topic(live_settings, name, partitions=3)
    settings = attrs.evolve(
        live_settings, topic=name, group_id=f"{name}-group", dlq_topic=f"{name}.dlq"
    )
    yield settings
    admin = AdminClient(settings.admin_config())
    # Cleanup is best effort (the DLQ topic may never have been created); names are unique.
    for f in admin.delete_topics([name, settings.dlq_topic]).values():
        with contextlib.suppress(Exception):
            f.result(timeout=30)
    with RegistryClient(settings) as registry, contextlib.suppress(Exception):
        registry.delete_subject(settings.subject, permanent=True)


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
