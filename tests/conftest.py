"""Shared fixtures. Integration tests run against the real local stack and FAIL without it.

There is deliberately no skip: a missing broker or registry is a broken environment, and CI
must say so. The fixtures come from paykafka's own pytest plugin (:mod:`paykafka.testing`);
``paykafka_stack = "env"`` in pyproject.toml points it at the stack ``PAYKAFKA_*`` describes.
Start that stack with ``paykafka stack up`` (``make test`` does it for you).
``live_settings`` and ``topic_settings`` are this suite's older names for the plugin's fixtures.
"""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from paykafka import Settings
from paykafka.testing import TestStack

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
