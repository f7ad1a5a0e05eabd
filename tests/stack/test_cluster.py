"""A real three-node KRaft cluster of our own: three brokers in metadata, replicated topics,
and the node controls fault tests rely on (kill, restart)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported, not in __all__
    AdminClient,
    NewTopic,
)

from paykafka._stack import Stack
from paykafka._stack._kafka import node_ready

from ._support import KAFKA_PORT, jvms_of, running_stack

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Three combined broker+controller nodes on 19092-19094 and a registry on 18081."""
    with running_stack(tmp_path_factory.mktemp("cluster"), brokers=3) as running:
        yield running


@pytest.fixture
def admin(cluster: Stack) -> AdminClient:
    """An admin client bootstrapped from all three brokers."""
    return AdminClient({"bootstrap.servers": cluster.config.bootstrap_servers})


def test_three_brokers_in_metadata(cluster: Stack, admin: AdminClient) -> None:
    """Metadata lists brokers 1, 2, 3 on consecutive ports, advertised as localhost."""
    metadata = admin.list_topics(timeout=10)
    brokers = {b.id: f"{b.host}:{b.port}" for b in metadata.brokers.values()}
    assert brokers == {n: f"localhost:{KAFKA_PORT + n - 1}" for n in (1, 2, 3)}
    assert len(jvms_of(cluster.config.state_dir)) == 4


def test_topic_replicates_to_all_three(admin: AdminClient) -> None:
    """A replication-factor-3 topic gets three replicas, spread over the brokers."""
    topic = f"stack-rf3-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(
        timeout=30
    )
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
    assert all(sorted(p.replicas) == [1, 2, 3] for p in partitions)
    assert {p.leader for p in partitions} <= {1, 2, 3}


def test_killed_node_can_be_started_again(cluster: Stack) -> None:
    """``kill_node`` ends the JVM at once; ``start_node`` brings the same node id back."""
    old_pid = cluster.node_pid(3)
    assert old_pid is not None

    cluster.kill_node(3)
    assert cluster.node_pid(3) is None
    assert old_pid not in jvms_of(cluster.config.state_dir)

    cluster.start_node(3)
    new_pid = cluster.node_pid(3)
    assert new_pid not in (None, old_pid)
    assert node_ready(3, cluster.config.broker_port(3))
