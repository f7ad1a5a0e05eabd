"""Read whole topics back, as a read_committed or a read_uncommitted reader would see them."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from paykafka import RegistryClient, Settings, load_schema
from paykafka._serde import EventDeserializer


def read_ids(
    settings: Settings, topics: Sequence[str], *, isolation: str, timeout: float = 60.0
) -> Counter[uuid.UUID]:
    """How many times each payment id appears on ``topics``, read to their ends with
    ``isolation`` (``read_committed`` or ``read_uncommitted``)."""
    consumer = Consumer(
        settings.consumer_config(
            **{
                "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": isolation,
            }
        )
    )
    seen: Counter[uuid.UUID] = Counter()
    try:
        metadata = consumer.list_topics(timeout=30)
        parts = [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in topics
            for p in metadata.topics[t].partitions
        ]
        consumer.assign(parts)
        pending = {(tp.topic, tp.partition) for tp in parts}
        with RegistryClient(settings) as registry:
            decode = EventDeserializer(load_schema(), registry.schema_by_id)
            deadline = time.monotonic() + timeout
            while pending:
                assert time.monotonic() < deadline, f"{pending} not read to the end"
                for msg in consumer.consume(1000, 0.5):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard((msg.topic(), msg.partition()))
                        continue
                    seen[decode(msg.value()).payment_id] += 1
    finally:
        consumer.close()
    return seen


def assert_committed_once(
    settings: Settings, topics: Sequence[str], expected: set[uuid.UUID]
) -> Counter[uuid.UUID]:
    """Read ``topics`` as a read_committed reader: exactly ``expected`` ids, each once."""
    seen = read_ids(settings, topics, isolation="read_committed")
    assert seen.keys() == expected
    assert set(seen.values()) <= {1}, {k: n for k, n in seen.items() if n > 1}
    return seen
