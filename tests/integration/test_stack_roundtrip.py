"""The default stack (``paykafka stack up``, started by CI) carries a message and a schema.

Talks to the library's default endpoints with confluent-kafka's own clients only, so a failure
here is the stack's, not paykafka's. A missing stack fails these tests; it never skips them.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported, not in __all__
    AdminClient,
    NewTopic,
)
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from paykafka._settings import DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_REGISTRY_URL

pytestmark = pytest.mark.integration

SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "StackProbe",
        "namespace": "io.paykafka.test",
        "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "long"}],
    }
)


@pytest.fixture
def topic() -> Iterator[str]:
    """A fresh topic on the default broker, deleted afterwards; fails if no broker answers."""
    admin = AdminClient({"bootstrap.servers": DEFAULT_BOOTSTRAP_SERVERS})
    try:
        admin.list_topics(timeout=15)
    except KafkaException as exc:
        pytest.fail(
            f"no Kafka broker at {DEFAULT_BOOTSTRAP_SERVERS} ({exc}); run `paykafka stack up`",
            pytrace=False,
        )
    name = f"stack-roundtrip-{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, num_partitions=1)])[name].result(timeout=30)
    yield name
    with contextlib.suppress(Exception):
        admin.delete_topics([name])[name].result(timeout=30)


@pytest.fixture
def registry() -> SchemaRegistryClient:
    """confluent-kafka's own registry client on the default URL."""
    return SchemaRegistryClient({"url": DEFAULT_REGISTRY_URL, "timeout": 10})


def test_message_round_trips_through_the_default_broker(topic: str) -> None:
    """One message produced to a new topic is consumed back, key and value intact."""
    key, value = b"probe-key", uuid.uuid4().bytes
    producer = Producer({"bootstrap.servers": DEFAULT_BOOTSTRAP_SERVERS, "acks": "all"})
    delivered: list[str | None] = []
    producer.produce(
        topic,
        key=key,
        value=value,
        on_delivery=lambda err, _msg: delivered.append(None if err is None else str(err)),
    )
    assert producer.flush(30) == 0
    assert delivered == [None]

    consumer = Consumer(
        {
            "bootstrap.servers": DEFAULT_BOOTSTRAP_SERVERS,
            "group.id": f"{topic}-group",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        message = None
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                break
        assert message is not None, f"nothing consumed from {topic} in 60 s"
        assert message.error() is None
        assert (message.key(), message.value()) == (key, value)
    finally:
        consumer.close()


def test_schema_round_trips_through_the_default_registry(registry: SchemaRegistryClient) -> None:
    """A schema registered under a new subject reads back by subject and by id."""
    subject = f"stack-roundtrip-{uuid.uuid4().hex[:10]}-value"
    try:
        schema_id = registry.register_schema(subject, Schema(SCHEMA, "AVRO"))
    except Exception as exc:  # noqa: BLE001 - any failure here means "no usable registry"
        pytest.fail(f"registry at {DEFAULT_REGISTRY_URL} failed: {exc}", pytrace=False)
    try:
        latest = registry.get_latest_version(subject)
        assert latest.schema_id == schema_id
        assert latest.version == 1
        assert json.loads(latest.schema.schema_str or "") == json.loads(SCHEMA)
        by_id = registry.get_schema(schema_id)
        assert json.loads(by_id.schema_str or "") == json.loads(SCHEMA)
    finally:
        registry.delete_subject(subject)
        registry.delete_subject(subject, permanent=True)
