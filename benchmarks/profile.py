"""Where the per-message time goes: cProfile of each serde path, stock and paykafka.

    .venv/bin/python -m benchmarks.profile [--n 50000] [--top 12]

Uses only the standard library's profiler, so the numbers are inflated for Python-level
calls; read them for proportions, and take rates from ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
from collections.abc import Callable
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from benchmarks._common import make_events
from paykafka import PaymentEvent, load_schema
from paykafka._serde import EventDeserializer, EventSerializer


def main() -> None:
    """Profile serialize and deserialize on both paths and print the top functions."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    schema = load_schema()
    registry: Any = SchemaRegistryClient.new_client({"url": "mock://paykafka-profile"})
    ctx = SerializationContext("payments-profile", MessageField.VALUE)
    stock_ser, stock_des = AvroSerializer(registry, schema.text), AvroDeserializer(registry)
    events = make_events(args.n)
    wire = [stock_ser(e.to_dict(), ctx) for e in events]
    ours_ser = EventSerializer(schema, int.from_bytes(wire[0][1:5], "big"))
    ours_des = EventDeserializer(schema, lambda i: registry.get_schema(i).schema_str)
    cases: dict[str, Callable[[], object]] = {
        "stock serialize": lambda: [stock_ser(e.to_dict(), ctx) for e in events],
        "paykafka serialize": lambda: [ours_ser(e) for e in events],
        "stock deserialize": lambda: [PaymentEvent.from_dict(stock_des(b, ctx)) for b in wire],
        "paykafka deserialize": lambda: [ours_des.decode(b) for b in wire],
    }
    for name, case in cases.items():
        profiler = cProfile.Profile()
        profiler.runcall(case)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
        print(f"=== {name} ({args.n:,} events)")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:4000])


if __name__ == "__main__":
    main()
