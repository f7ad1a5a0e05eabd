"""The typed library end to end on the real broker and registry."""

from __future__ import annotations

import json
from decimal import Decimal

import attrs
import fastavro
import httpx
import pytest
from _events import make_events
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from paykafka import (
    DecodeReason,
    DeliveryError,
    PaymentEvent,
    PaymentProducer,
    PaymentTracker,
    SchemaError,
    Settings,
    load_schema,
)
from paykafka._dlq import DeadLetter
from paykafka._serde import frame_header


def events(n: int, user: str = "marek") -> list[PaymentEvent]:
    return make_events(n, prefix=user, users=7)


def track_all(settings: Settings, expected: int, **kw: object) -> list[PaymentEvent]:
    got: list[PaymentEvent] = []
    with PaymentTracker(settings, **kw) as tracker:  # type: ignore[arg-type]
        tracker.run(got.append, max_events=expected, idle_timeout=30, handle_signals=False)
    return got


def test_produce_n_and_track_exactly_those_n(topic_settings: Settings) -> None:
    """200 events sent are tracked back as 200 equal PaymentEvents, nothing else."""
    sent = events(200)
    with PaymentProducer(topic_settings) as producer:
        futures = [producer.send(e) for e in sent]
    deliveries = [f.result(0) for f in futures]
    assert {d.topic for d in deliveries} == {topic_settings.topic}
    got = track_all(topic_settings, 200)
    assert sorted(got, key=lambda e: str(e.payment_id)) == sorted(
        sent, key=lambda e: str(e.payment_id)
    )


def test_one_users_payments_stay_in_order(topic_settings: Settings) -> None:
    """Keyed by user: one user's events land on one partition in send order."""
    sent = events(60)
    with PaymentProducer(topic_settings) as producer:
        futures = [producer.send(e) for e in sent]
    by_user: dict[str, set[int]] = {}
    for f in futures:
        d = f.result(0)
        by_user.setdefault(d.event.user, set()).add(d.partition)
    assert all(len(parts) == 1 for parts in by_user.values())
    got = track_all(topic_settings, 60)
    for user in by_user:
        assert [e for e in got if e.user == user] == [e for e in sent if e.user == user]


def test_subject_and_id_are_visible_in_the_registry(topic_settings: Settings) -> None:
    """The schema is registered under <topic>-value and its id frames every event."""
    with PaymentProducer(topic_settings) as producer:
        delivery = producer.send(events(1)[0]).result(10)
        schema_id = producer.schema_id
    base = topic_settings.registry_url
    latest = httpx.get(f"{base}/subjects/{topic_settings.subject}/versions/latest").json()
    assert latest["id"] == schema_id
    by_id = httpx.get(f"{base}/schemas/ids/{schema_id}").json()
    parsed = fastavro.parse_schema(json.loads(by_id["schema"]))
    assert isinstance(parsed, dict)
    assert parsed["name"] == "io.paykafka.Payment"
    level = httpx.get(f"{base}/config/{topic_settings.subject}").json()
    assert level["compatibilityLevel"] == "FULL_TRANSITIVE"
    consumer = Consumer(
        topic_settings.consumer_config(**{"group.id": "raw-" + topic_settings.group_id})
    )
    consumer.assign([TopicPartition(delivery.topic, delivery.partition, delivery.offset)])
    msg = consumer.poll(15)
    consumer.close()
    assert msg is not None
    value = msg.value()
    assert value is not None
    assert value[:5] == frame_header(schema_id)


def test_stock_deserializer_reads_paykafka_events(topic_settings: Settings) -> None:
    """confluent-kafka's own AvroDeserializer decodes what PaymentProducer wrote."""
    sent = events(5)
    with PaymentProducer(topic_settings) as producer:
        for e in sent:
            producer.send(e)
    registry = SchemaRegistryClient({"url": topic_settings.registry_url, "timeout": 10})
    deserialize = AvroDeserializer(registry)
    consumer = Consumer(topic_settings.consumer_config(**{"group.id": "stock-reader"}))
    consumer.subscribe([topic_settings.topic])
    decoded: list[dict[str, object]] = []
    for _ in range(60):
        msg = consumer.poll(1)
        if msg is None or msg.error():
            if len(decoded) == len(sent):
                break
            continue
        ctx = SerializationContext(topic_settings.topic, MessageField.VALUE)
        decoded.append(deserialize(msg.value(), ctx))
    consumer.close()
    assert {str(d["payment_id"]) for d in decoded} == {str(e.payment_id) for e in sent}
    for record in decoded:
        assert PaymentEvent.from_dict(record) in sent


def test_stock_serializer_events_are_tracked(topic_settings: Settings) -> None:
    """Events written by the stock AvroSerializer with our schema arrive as PaymentEvents."""
    registry = SchemaRegistryClient({"url": topic_settings.registry_url, "timeout": 10})
    serialize = AvroSerializer(registry, load_schema().text)
    producer = Producer(topic_settings.producer_config())
    sent = events(5, user="stock")
    for e in sent:
        ctx = SerializationContext(topic_settings.topic, MessageField.VALUE)
        producer.produce(topic_settings.topic, serialize(e.to_dict(), ctx), e.user.encode())
    assert producer.flush(30) == 0
    got = track_all(topic_settings, 5)
    assert sorted(got, key=lambda e: e.user + str(e.payment_id)) == sorted(
        sent, key=lambda e: e.user + str(e.payment_id)
    )


def test_offsets_commit_only_handled_events(topic_settings: Settings) -> None:
    """A tracker that stops after 3 events resumes at the 4th: handled ones are committed."""
    sent = events(8)
    with PaymentProducer(topic_settings) as producer:
        for e in sent:
            producer.send(e)
    first = track_all(topic_settings, 3)
    rest = track_all(topic_settings, 5)
    assert len(first) == 3
    assert {e.payment_id for e in first + rest} == {e.payment_id for e in sent}
    assert not {e.payment_id for e in first} & {e.payment_id for e in rest}


def test_iteration_acknowledges_previous_event_only(topic_settings: Settings) -> None:
    """A loop body that raises leaves its event uncommitted, so it is read again."""
    sent = events(3)
    with PaymentProducer(topic_settings) as producer:
        for e in sent:
            producer.send(e)
    seen: list[PaymentEvent] = []

    def crash_on_second() -> None:
        with PaymentTracker(topic_settings) as tracker:
            for event in tracker:
                seen.append(event)
                if len(seen) == 2:
                    raise RuntimeError("handler crashed")

    with pytest.raises(RuntimeError):
        crash_on_second()
    again = track_all(topic_settings, 2)
    assert seen[1] in again
    assert seen[0] not in again


def test_governed_mode_refuses_an_unregistered_schema(topic_settings: Settings) -> None:
    """With auto_register off, an unregistered schema stops the producer before any send."""
    governed = attrs.evolve(topic_settings, auto_register=False)
    with pytest.raises(SchemaError, match="not registered"), PaymentProducer(governed):
        pass
    with PaymentProducer(topic_settings):
        pass  # registers
    with PaymentProducer(governed) as producer:
        assert producer.send(events(1)[0]).result(10).offset >= 0


def test_undeliverable_events_are_reported_not_dropped(topic_settings: Settings) -> None:
    """With no reachable broker, flush raises DeliveryError carrying every event."""
    dead = attrs.evolve(
        topic_settings,
        bootstrap_servers="127.0.0.1:1",
        kafka_options={"message.timeout.ms": "1500"},
    )
    sent = events(4)
    producer = PaymentProducer(dead, flush_timeout=10).start()
    for e in sent:
        producer.send(e)
    with pytest.raises(DeliveryError) as info:
        producer.close()
    assert {e.payment_id for e, _ in info.value.undelivered} == {e.payment_id for e in sent}


def test_poison_records_are_dead_lettered_and_tracking_goes_on(topic_settings: Settings) -> None:
    """Garbage between valid events goes to the DLQ with its reason; valid ones are tracked."""
    good = events(4)
    with PaymentProducer(topic_settings) as producer:
        schema_id = producer.schema_id
        producer.send(good[0])
        producer.flush()
        raw = Producer(topic_settings.producer_config())
        poison = [
            b"\x13\x37 random bytes",
            b'{"user": "marek", "amount": 1}',
            frame_header(987654) + b"\x02",
            frame_header(schema_id) + b"\x48\x30",
        ]
        for p in poison:
            raw.produce(topic_settings.topic, p, b"marek-0")
        assert raw.flush(30) == 0
        for e in good[1:]:
            producer.send(e)
    got = track_all(topic_settings, 4)
    assert {e.payment_id for e in got} == {e.payment_id for e in good}
    dlq = Consumer(topic_settings.consumer_config(**{"group.id": "dlq-reader"}))
    dlq.subscribe([topic_settings.dlq_topic])
    letters: list[DeadLetter] = []
    for _ in range(60):
        msg = dlq.poll(1)
        if msg is not None and not msg.error():
            letters.append(DeadLetter.from_message(msg))
        if len(letters) == len(poison):
            break
    dlq.close()
    assert sorted(d.value or b"" for d in letters) == sorted(poison)
    reasons = {d.value: d.reason for d in letters}
    assert reasons[poison[0]] == DecodeReason.NOT_CONFLUENT_FRAMING.value
    assert reasons[poison[2]] == DecodeReason.UNKNOWN_SCHEMA_ID.value
    assert reasons[poison[3]] == DecodeReason.CORRUPT_AVRO.value
    assert all(d.source_topic == topic_settings.topic for d in letters)


def test_decoded_avro_amount_is_exact(topic_settings: Settings) -> None:
    """Money survives the wire exactly: 0.10 + 0.20 stays 0.30 in Decimal."""
    e = PaymentEvent(user="x", amount=Decimal("0.10"), currency="EUR", method="cash")
    with PaymentProducer(topic_settings) as producer:
        producer.send(e)
    (got,) = track_all(topic_settings, 1)
    assert got.amount + Decimal("0.20") == Decimal("0.30")
