"""The secured 3-broker cluster: replication runs over SASL_SSL between brokers and the KRaft
quorum over mutual TLS, and the users' ACLs hold cluster-wide.

Lean on purpose: only the three Kafka nodes are started (the registry's HTTPS side is covered by
tests/stack/test_secure.py), and the users' clients are plain librdkafka ones built from their
Settings, so no schema is needed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _locks import ports_lock
from confluent_kafka import Consumer, Producer

from paykafka import AuthorizationError, KafkaAdmin, TopicHealth
from paykafka._stack import Stack, StackConfig, _kafka, _secure

from ._support import jvms_of

pytestmark = pytest.mark.stack

KAFKA_PORT = 24720
REGISTRY_PORT = 24780


@pytest.mark.timeout(300)
def test_three_secured_brokers_replicate_over_tls(tmp_path: Path) -> None:
    """3 brokers, SASL_SSL only: payments has 3 in-sync replicas (followers fetch over the
    SASL_SSL inter-broker listener), the producer user writes, the tracker user reads, and the
    tracker user's write is refused."""
    config = StackConfig.from_env(
        state_dir=tmp_path,
        kafka_port=KAFKA_PORT,
        registry_port=REGISTRY_PORT,
        brokers=3,
        secure=True,
        start_timeout=240.0,
    )
    stack = Stack(config)
    with ports_lock(f"paykafka-secure-tests-{KAFKA_PORT}", wait=600.0):
        try:
            # The three Kafka nodes as `up` starts them, without the registry JVM.
            with stack._locked():
                stack._start([f"kafka-{n}" for n in config.node_ids])
            _secure.setup_cluster(config)
            for node in config.node_ids:
                props = (_kafka.node_dir(config, node) / "server.properties").read_text()
                assert "inter.broker.listener.name=SECURE\n" in props
                assert "listener.security.protocol.map=SECURE:SASL_SSL,CONTROLLER:SSL\n" in props
                assert "PLAINTEXT" not in props

            admin = KafkaAdmin(_secure.user_settings(config, _secure.ADMIN), timeout=20.0)
            deadline = time.monotonic() + 60
            while (found := admin.describe_topic("payments", configs=False)).health != (
                TopicHealth.HEALTHY
            ) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert all(len(p.isr) == 3 for p in found.partitions)

            producer = Producer(_secure.user_settings(config, _secure.PRODUCER).producer_config())
            for i in range(30):
                producer.produce("payments", f"event-{i}".encode(), f"user-{i}".encode())
            assert producer.flush(30) == 0

            tracker = _secure.user_settings(config, _secure.TRACKER)
            consumer = Consumer(tracker.consumer_config())
            consumer.subscribe(["payments"])
            values: set[bytes] = set()
            deadline = time.monotonic() + 60
            while len(values) < 30 and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is not None and msg.error() is None:
                    values.add(msg.value() or b"")
            consumer.close()
            assert values == {f"event-{i}".encode() for i in range(30)}

            with pytest.raises(AuthorizationError):
                KafkaAdmin(tracker).create_topic("x", partitions=1, replication_factor=3)
        finally:
            stack.down(timeout=20.0, purge=True)
            assert jvms_of(tmp_path) == []
