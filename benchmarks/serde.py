"""Serializer and deserializer, per message: paykafka's serde against confluent's stock Avro one.

The stock path is what a confluent-kafka user writes for typed events: ``AvroSerializer`` fed
``event.to_dict()``, and ``AvroDeserializer`` followed by ``PaymentEvent.from_dict``. Both are
given confluent's in-memory ``MockSchemaRegistryClient`` (``mock://`` URL), so no network is
involved: after the first call every serde caches its schema, and the per-message cost is what
is measured. Both paths read and write the same bytes (checked before timing).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from benchmarks._common import Row, alternate, make_events, rate_row
from paykafka import PaymentEvent, load_schema
from paykafka._serde import EventDeserializer, EventSerializer

SERIALIZE_TARGET = 1.5
DESERIALIZE_TARGET = 2.8


def run(n: int, rounds: int) -> list[Row]:
    """Time both directions over the same ``n`` events, ``rounds`` alternating runs each."""
    schema = load_schema()
    registry: Any = SchemaRegistryClient.new_client({"url": "mock://paykafka-benchmarks"})
    ctx = SerializationContext("payments-bench", MessageField.VALUE)
    stock_serialize = AvroSerializer(registry, schema.text)
    stock_deserialize = AvroDeserializer(registry)
    events = make_events(n)
    first = stock_serialize(events[0].to_dict(), ctx)
    schema_id = int.from_bytes(first[1:5], "big")
    serialize = EventSerializer(schema, schema_id)
    deserialize = EventDeserializer(schema, lambda i: registry.get_schema(i).schema_str)
    wire = [serialize(e) for e in events]
    _check_same_bytes(events, wire, stock_serialize, ctx)
    assert [deserialize(b) for b in wire] == events
    assert [PaymentEvent.from_dict(stock_deserialize(b, ctx)) for b in wire] == events

    def stock_ser() -> None:
        for e in events:
            stock_serialize(e.to_dict(), ctx)

    def ours_ser() -> None:
        for e in events:
            serialize(e)

    def stock_des() -> None:
        for b in wire:
            PaymentEvent.from_dict(stock_deserialize(b, ctx))

    def ours_des() -> None:
        decode = deserialize.decode
        for b in wire:
            decode(b)

    ser = alternate({"stock": stock_ser, "paykafka": ours_ser}, rounds)
    des = alternate({"stock": stock_des, "paykafka": ours_des}, rounds)
    return [
        rate_row(
            "serde",
            "serialize PaymentEvent -> bytes",
            n,
            ser["stock"],
            ser["paykafka"],
            target=SERIALIZE_TARGET,
        ),
        rate_row(
            "serde",
            "deserialize bytes -> PaymentEvent",
            n,
            des["stock"],
            des["paykafka"],
            target=DESERIALIZE_TARGET,
        ),
    ]


def _check_same_bytes(
    events: list[PaymentEvent], wire: list[bytes], stock: Any, ctx: SerializationContext
) -> None:
    """Both serializers must write identical records, or the comparison means nothing."""
    for event, data in zip(events, wire, strict=True):
        if stock(event.to_dict(), ctx) != data:
            raise AssertionError(f"paykafka and the stock serializer differ on {event!r}")
