"""The router three ways, same run: at-least-once, paykafka exactly-once, stock transactions.

Routers (amounts above 1000 to one output topic, the rest to another):

- ``at-least-once``: ``PaymentTracker.run`` with a ``PaymentProducer`` per output (no
  transactions; outputs flushed when the run ends);
- ``exactly-once``: ``PaymentProcessor.run`` at the default batching (Settings);
- ``exactly-once-async``: ``AsyncPaymentProcessor.run`` with an ``async def`` handler, the
  same batching, with the event-loop lag probe of ``benchmarks.aio`` running in its loop (p99
  of how late a task that asks to wake every millisecond wakes, while routing; target < 10 ms
  for the median of its runs, each run's and the idle loop's p99 in the row's detail);
- ``stock-eos``: the same processor hand-written with confluent-kafka: ``Consumer`` +
  ``AvroDeserializer``, a transactional ``Producer`` + ``AvroSerializer``, the same batch size
  and window, ``send_offsets_to_transaction`` with the group metadata.

Each router runs in a subprocess of its own (so the measuring side shares no interpreter with
it), on fresh topics. Throughput: a backlog of N inputs, timed from the router's first input to
its last output committed (at-least-once: flushed). Latency: inputs sent at a steady rate,
each stamped with the time it was sent; a read_committed reader of both outputs takes
"seen - sent" per event, so it is what a downstream service waits, commit included.

    .venv/bin/python -m benchmarks.exactly_once            # needs `paykafka stack up`
    .venv/bin/python -m benchmarks.exactly_once --n 10000 --rate 1000 --seconds 3

``PAYKAFKA_TRANSACTION_BATCH_MS`` / ``PAYKAFKA_TRANSACTION_BATCH_SIZE`` set the batching of
every router (the default batching when unset).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import attrs
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported, not in __all__
    AdminClient,
    NewTopic,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from benchmarks._common import Row, make_events, render
from benchmarks.aio import LAG_TARGET_MS, LagProbe
from benchmarks.pipeline import stock_registry
from paykafka import (
    Output,
    PaymentEvent,
    PaymentProcessor,
    PaymentProducer,
    PaymentTracker,
    RegistryClient,
    Settings,
    load_schema,
)
from paykafka._serde import EventDeserializer
from paykafka.aio import AsyncPaymentProcessor

MODES = ("at-least-once", "exactly-once", "exactly-once-async", "stock-eos")
EOS_MODES = ("exactly-once", "exactly-once-async")
THRESHOLD = Decimal(1000)
PARTITIONS = 3
THROUGHPUT_TARGET = 0.6
P99_TARGET_MS = 500.0


def _topics(base: Settings, mode: str) -> tuple[Settings, str, str]:
    name = f"bench-eos-{mode}-{uuid.uuid4().hex[:8]}"
    review, cleared = f"{name}.review", f"{name}.cleared"
    admin = AdminClient(base.admin_config())
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=PARTITIONS) for t in (name, review, cleared)]
    )
    for future in futures.values():
        future.result(timeout=30)
    settings = attrs.evolve(
        base,
        topic=name,
        group_id=f"{name}-group",
        dlq_topic=f"{name}.dlq",
        transactional_id=f"{name}-tx",
    )
    return settings, review, cleared


# -- the routers (run in a subprocess: `--serve MODE SETTINGS_JSON N`) -----------------------


def _serve(mode: str, settings: Settings, review: str, cleared: str, n: int) -> dict[str, float]:
    """Route until ``n`` inputs are done (``n`` = 0: until SIGTERM); returns the timing."""
    first: list[float] = []
    stop = threading.Event()

    def pick(event: PaymentEvent) -> str:
        if not first:
            first.append(time.perf_counter())
        return review if event.amount > THRESHOLD else cleared

    def on_term(_sig: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    limit = n or None
    if mode == "exactly-once":
        with PaymentProcessor(settings, output_topics=[review, cleared]) as processor:
            _on_stop(stop, processor.stop)
            done = processor.run(
                lambda e: Output(pick(e), e), max_events=limit, handle_signals=False
            )
    elif mode == "at-least-once":
        producers = {
            t: PaymentProducer(attrs.evolve(settings, topic=t)).start() for t in (review, cleared)
        }
        with PaymentTracker(settings) as tracker:
            _on_stop(stop, tracker.stop)
            done = tracker.run(
                lambda e: producers[pick(e)].send(e), max_events=limit, handle_signals=False
            )
            for producer in producers.values():
                producer.close()
    elif mode == "exactly-once-async":
        routing = _serve_async(
            settings, review=review, cleared=cleared, limit=limit, stop=stop, pick=pick
        )
        done, lag = asyncio.run(routing)
        end = time.perf_counter()
        return {"inputs": done, "seconds": end - (first[0] if first else end), "lag_p99": lag}
    else:
        done = _stock_eos(settings, pick, limit, stop)
    end = time.perf_counter()
    return {"inputs": done, "seconds": end - (first[0] if first else end)}


async def _serve_async(
    settings: Settings,
    *,
    review: str,
    cleared: str,
    limit: int | None,
    stop: threading.Event,
    pick: Any,
) -> tuple[int, float]:
    """The async router; returns inputs done and the loop-lag p99 (ms) while it routed."""

    async def route(event: PaymentEvent) -> Output:
        return Output(pick(event), event)

    probe = LagProbe()
    async with AsyncPaymentProcessor(settings, output_topics=[review, cleared]) as processor:
        # The same probe on the idle loop first: what the machine alone costs.
        idle = LagProbe()
        idle.start()
        await asyncio.sleep(1.0)
        idle.stop()
        print(json.dumps({"idle_lag_p99": idle.p99()}), flush=True)
        _on_stop(stop, processor.stop)
        probe.start()
        try:
            done = await processor.run(route, max_events=limit, handle_signals=False)
        finally:
            probe.stop()
    return done, probe.p99()


def _on_stop(stop: threading.Event, then: Any) -> None:
    def wait() -> None:
        stop.wait()
        then()

    threading.Thread(target=wait, daemon=True).start()


def _stock_eos(settings: Settings, pick: Any, limit: int | None, stop: threading.Event) -> int:
    """The router as a confluent-kafka user writes it: stock serde, a transaction per batch."""
    registry = stock_registry(settings)
    schema = load_schema().text
    deserialize = AvroDeserializer(registry, schema)
    serialize = AvroSerializer(registry, schema)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": settings.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "transactional.id": settings.transactional_id,
            "compression.type": "zstd",
            "linger.ms": 5,
        }
    )
    producer.init_transactions(30)
    consumer.subscribe([settings.topic])
    size, window = settings.transaction_batch_size, settings.transaction_batch_ms / 1000
    done = 0
    try:
        while not stop.is_set() and (limit is None or done < limit):
            batch: list[Any] = []
            deadline = None
            while len(batch) < size:
                if deadline is None:
                    got = consumer.consume(size, 0) or consumer.consume(1, 0.2)
                else:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        break
                    got = consumer.consume(size - len(batch), wait)
                got = [m for m in got if not m.error()]
                batch += got
                if deadline is None:
                    if not batch:
                        break
                    deadline = time.monotonic() + window
            if not batch:
                continue
            producer.begin_transaction()
            last: dict[tuple[str, int], int] = {}
            for msg in batch:
                ctx = SerializationContext(msg.topic(), MessageField.VALUE)
                event = PaymentEvent.from_dict(deserialize(msg.value(), ctx))
                topic = pick(event)
                value = serialize(event.to_dict(), SerializationContext(topic, MessageField.VALUE))
                producer.produce(topic, value, event.user.encode())
                last[(msg.topic(), msg.partition())] = msg.offset()
            offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            done += len(batch)
    finally:
        consumer.close()
    return done


# -- the measuring side --------------------------------------------------------------------


def _spawn(mode: str, settings: Settings, review: str, cleared: str, n: int) -> Any:
    payload = json.dumps(
        {
            "bootstrap_servers": settings.bootstrap_servers,
            "registry_url": settings.registry_url,
            "topic": settings.topic,
            "group_id": settings.group_id,
            "dlq_topic": settings.dlq_topic,
            "transactional_id": settings.transactional_id,
            "transaction_batch_size": settings.transaction_batch_size,
            "transaction_batch_ms": settings.transaction_batch_ms,
            "kafka_options": dict(settings.kafka_options),
        }
    )
    return subprocess.Popen(  # noqa: S603 - our own module, our own interpreter
        [
            sys.executable,
            "-m",
            "benchmarks.exactly_once",
            "--serve",
            mode,
            payload,
            review,
            cleared,
            str(n),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def _send(producer: PaymentProducer, events: Sequence[PaymentEvent], rate: float | None) -> None:
    start = time.perf_counter()
    for i, event in enumerate(events):
        if rate is not None:
            lag = start + i / rate - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
            producer.send(attrs.evolve(event, timestamp=datetime.now(UTC)))
        else:
            producer.send(event)
    producer.flush()


def throughput(base: Settings, mode: str, n: int) -> dict[str, float]:
    """The router's result from a backlog of ``n``: ``rate`` (events/s), and for the async
    router ``lag_p99`` (ms)."""
    settings, review, cleared = _topics(base, mode)
    with PaymentProducer(settings) as producer:
        _send(producer, make_events(n), None)
    proc = _spawn(mode, settings, review, cleared, n)
    out, _ = proc.communicate(timeout=600)
    result = _results(out)
    return {**result, "rate": float(result["inputs"]) / float(result["seconds"])}


def _results(out: str) -> dict[str, Any]:
    """The router's JSON lines, merged (the async one reports its idle loop's lag first)."""
    merged: dict[str, Any] = {}
    for line in out.strip().splitlines():
        if line.startswith("{"):
            merged.update(json.loads(line))
    return merged


def latency(
    base: Settings, mode: str, rate: float, seconds: float
) -> tuple[list[float], float | None]:
    """End-to-end milliseconds (sent -> seen by a read_committed reader of the outputs), and
    for the async router its loop-lag p99 (ms) over the run."""
    settings, review, cleared = _topics(base, mode)
    proc = _spawn(mode, settings, review, cleared, 0)
    events = make_events(int(rate * seconds), seed=11)
    seen: list[float] = []
    reader_ready = threading.Event()
    done = threading.Event()

    def read() -> None:
        consumer = Consumer(
            settings.consumer_config(
                **{"group.id": f"{settings.topic}-reader", "isolation.level": "read_committed"}
            )
        )
        consumer.assign([TopicPartition(t, p, 0) for t in (review, cleared) for p in range(3)])
        with RegistryClient(settings) as registry:
            decode = EventDeserializer(load_schema(), registry.schema_by_id)
            reader_ready.set()
            while len(seen) < len(events) and not done.is_set():
                # What is there now, else the first to arrive: consume(500, t) would hold
                # every record back until 500 came or t passed, adding up to t to each.
                for msg in consumer.consume(500, 0) or consumer.consume(1, 0.1):
                    if msg.error() is None:
                        now = datetime.now(UTC)
                        sent = decode(msg.value()).timestamp
                        seen.append((now - sent).total_seconds() * 1000)
        consumer.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader_ready.wait(30)
    # Warm-up: the router's group join and first transaction are not steady-state latency, and
    # neither is the sender's own start (its connection and idempotent producer id, which took
    # ~0.5 s on a loaded machine and, measured, set the p99 of every router): one producer
    # sends the warm-up and then the measured events.
    with PaymentProducer(settings) as producer:
        warm = make_events(50, seed=3)
        _send(producer, warm, rate)
        deadline = time.monotonic() + 60
        while len(seen) < len(warm) and time.monotonic() < deadline:
            time.sleep(0.1)
        seen.clear()
        _send(producer, events, rate)
        deadline = time.monotonic() + 60
        while len(seen) < len(events) and time.monotonic() < deadline:
            time.sleep(0.1)
    done.set()
    reader.join(10)
    proc.terminate()
    out, _ = proc.communicate(timeout=60)
    return list(seen), _results(out).get("lag_p99")


def run(base: Settings, n: int, rate: float, seconds: float, rounds: int) -> list[Row]:
    """Throughput and p99 of each router: ``rounds`` runs each, taking turns (the order
    reversed every other round), best run of each kept, as in the rest of the suite."""
    runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    p99s: dict[str, float] = {mode: float("inf") for mode in MODES}
    p50s: dict[str, float] = {}
    p99_runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    lags: list[float] = []
    idle_lags: list[float] = []
    for r in range(rounds):
        for mode in MODES if r % 2 == 0 else reversed(MODES):
            result = throughput(base, mode, n)
            runs[mode].append(result["rate"])
            if "lag_p99" in result:
                lags.append(result["lag_p99"])
                idle_lags.append(result["idle_lag_p99"])
            got, lag = latency(base, mode, rate, seconds)
            ms = sorted(got)
            if lag is not None:
                lags.append(lag)
            p99 = ms[int(len(ms) * 0.99) - 1] if ms else float("nan")
            p99_runs[mode].append(round(p99, 1))
            if p99 < p99s[mode]:
                p99s[mode], p50s[mode] = p99, statistics.median(ms)
    rates = {mode: max(values) for mode, values in runs.items()}
    alo, stock = rates["at-least-once"], rates["stock-eos"]
    batching = {"batch_size": base.transaction_batch_size, "batch_ms": base.transaction_batch_ms}
    return [
        *[
            Row(
                group="router",
                name=f"{mode} vs at-least-once throughput",
                unit="events/s",
                stock=round(alo),
                paykafka=round(rates[mode]),
                ratio=round(rates[mode] / alo, 2),
                target=f">= {THROUGHPUT_TARGET}x",
                met=rates[mode] / alo >= THROUGHPUT_TARGET,
                detail={
                    "n": n,
                    "note": "stock column = paykafka at-least-once (tracker + producer)",
                    "runs": {m: [round(v) for v in values] for m, values in runs.items()},
                    **batching,
                },
            )
            for mode in EOS_MODES
        ],
        Row(
            group="router",
            name="exactly-once vs stock confluent-kafka transactions",
            unit="events/s",
            stock=round(stock),
            paykafka=round(rates["exactly-once"]),
            ratio=round(rates["exactly-once"] / stock, 2),
            detail={"n": n},
        ),
        *[
            Row(
                group="router",
                name=f"{mode} end-to-end p99 at {rate:,.0f}/s",
                unit="ms",
                stock=None,
                paykafka=round(p99s[mode], 1),
                target=f"< {P99_TARGET_MS:.0f} ms" if mode in EOS_MODES else None,
                met=p99s[mode] < P99_TARGET_MS if mode in EOS_MODES else None,
                detail={
                    "p50_ms": round(p50s[mode], 1),
                    "events": int(rate * seconds),
                    "p99_runs": p99_runs[mode],
                },
            )
            for mode in MODES
        ],
        Row(
            group="event-loop lag",
            name="p99 while the async router routes (median of its runs)",
            unit="ms",
            stock=None,
            paykafka=round(statistics.median(lags), 2) if lags else float("nan"),
            target=f"< {LAG_TARGET_MS:g} ms",
            met=bool(lags) and statistics.median(lags) < LAG_TARGET_MS,
            detail={
                "runs": [round(v, 2) for v in lags],
                "idle_loop_p99_runs": [round(v, 2) for v in idle_lags],
            },
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the table (``--json`` for the rows)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exactly_once")
    parser.add_argument("--n", type=int, default=30_000, help="backlog for throughput")
    parser.add_argument("--rate", type=float, default=2_000, help="events/s for latency")
    parser.add_argument("--seconds", type=float, default=5.0, help="latency run length")
    parser.add_argument("--rounds", type=int, default=2, help="runs per router, taking turns")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        mode, payload, review, cleared, n = args.serve
        settings = Settings(**json.loads(payload))
        print(json.dumps(_serve(mode, settings, review, cleared, int(n))), flush=True)
        return 0
    rows = run(Settings.from_env(), args.n, args.rate, args.seconds, args.rounds)
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=2, default=str))
    else:
        print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
