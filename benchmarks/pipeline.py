"""End to end on the local broker: produce N events and track them, paykafka against stock.

paykafka is ``PaymentProducer.send`` and ``PaymentTracker.run``. The stock pipeline is the
confluent-kafka way to move the same typed events: ``Producer`` + ``AvroSerializer`` (fed
``to_dict()``, a delivery callback per message, ``poll(0)`` after each produce) and
``Consumer`` + ``AvroDeserializer`` + ``PaymentEvent.from_dict`` (offsets stored after each
event is handled). Both use a real ``SchemaRegistryClient`` against the local registry and the
same librdkafka settings (``Settings.producer_config`` / ``consumer_config``: acks=all,
idempotence, zstd, linger.ms=5, default batching; both consumers read at the same
``isolation_level``, ``read_committed`` unless ``PAYKAFKA_ISOLATION_LEVEL`` says otherwise), and
each run gets a fresh topic with the same partitions.

Each producer first sends one warm-up event and flushes it (connection, metadata and schema
registration are not per-message costs); produce time then runs from the first timed send to
the end of ``flush``. Track time runs from the first handled event to the last, so the
consumer group's join is not counted for either side.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported, not in __all__
    AdminClient,
    NewTopic,
)
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from benchmarks._common import Row, make_events, rate_row
from paykafka import (
    PaymentEvent,
    PaymentProducer,
    PaymentTracker,
    RegistryClient,
    Settings,
    load_schema,
)

#: Issue 15: the sequential tracker (concurrency=1, the default) keeps these ratios against the
#: stock pipeline in the same run.
TRACK_TARGET = 3.0
E2E_TARGET = 2.8
PARTITIONS = 3
_IDLE = 60.0

#: Seconds a stock registry call may take: confluent-kafka's client waits forever by default,
#: and one GET that never returned once hung a whole benchmark run.
STOCK_REGISTRY_TIMEOUT = 10

Pipeline = str  # "stock" or "paykafka"
Handler = Callable[[PaymentEvent], object]


def fresh_settings(base: Settings, label: str) -> Settings:
    """Settings on a new topic (created now), subject and group of their own."""
    topic = f"bench-{label}-{uuid.uuid4().hex[:10]}"
    admin = AdminClient(base.admin_config())
    futures = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)])
    futures[topic].result(timeout=30)
    return attrs.evolve(base, topic=topic, group_id=f"{topic}-group", dlq_topic=f"{topic}.dlq")


def stock_registry(settings: Settings) -> SchemaRegistryClient:
    """confluent-kafka's registry client for the stock side, with a request timeout (a timed
    out request is retried by the client, then raises: a run fails, it never hangs)."""
    return SchemaRegistryClient({"url": settings.registry_url, "timeout": STOCK_REGISTRY_TIMEOUT})


def drop(settings: Settings) -> None:
    """Remove a run's topic and subject (best effort: names are unique anyway)."""
    admin = AdminClient(settings.admin_config())
    for future in admin.delete_topics([settings.topic]).values():
        with contextlib.suppress(Exception):
            future.result(timeout=30)
    with RegistryClient(settings) as registry, contextlib.suppress(Exception):
        registry.delete_subject(settings.subject, permanent=True)


# -- producing ------------------------------------------------------------------------------


def produce(pipeline: Pipeline, settings: Settings, events: Iterable[PaymentEvent]) -> float:
    """Seconds to send ``events`` and have every one acknowledged by the broker.

    One warm-up event is sent and flushed before the clock starts, so the topic holds one
    event more than ``events``.
    """
    if pipeline == "paykafka":
        return _produce_paykafka(settings, events)
    return _produce_stock(settings, events)


def _timed_sends(
    send: Callable[[PaymentEvent], object],
    flush: Callable[[], None],
    events: Iterable[PaymentEvent],
) -> float:
    """Seconds to send ``events`` and flush, after one warm-up event flushed untimed."""
    send(make_events(1, seed=1)[0])
    flush()
    start = time.perf_counter()
    for event in events:
        send(event)
    flush()
    return time.perf_counter() - start


def _produce_paykafka(settings: Settings, events: Iterable[PaymentEvent]) -> float:
    producer = PaymentProducer(settings).start()
    try:
        return _timed_sends(producer.send, producer.flush, events)
    finally:
        producer.close()


class StockProducer:
    """The stock confluent-kafka typed producer, as its documentation writes it."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic
        registry = stock_registry(settings)
        self.serialize = AvroSerializer(registry, load_schema(settings.schema_path).text)
        self.ctx = SerializationContext(settings.topic, MessageField.VALUE)
        self.producer = Producer(settings.producer_config())
        self.failed: list[str] = []
        # The first call registers the schema: not part of the per-message cost.
        self.serialize(make_events(1)[0].to_dict(), self.ctx)

    def on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(err.str())

    def send(self, event: PaymentEvent) -> int:
        """Produce one event the stock way; returns how many reports its poll(0) served."""
        value = self.serialize(event.to_dict(), self.ctx)
        while True:
            try:
                self.producer.produce(
                    self.topic, value, event.user.encode(), on_delivery=self.on_delivery
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        return int(self.producer.poll(0))

    def flush(self) -> None:
        left = self.producer.flush(120)
        if left or self.failed:
            raise RuntimeError(f"stock producer: {left} undelivered, {len(self.failed)} failed")


def _produce_stock(settings: Settings, events: Iterable[PaymentEvent]) -> float:
    producer = StockProducer(settings)
    return _timed_sends(producer.send, producer.flush, events)


# -- tracking -------------------------------------------------------------------------------


def track(
    pipeline: Pipeline,
    settings: Settings,
    n: int,
    handler: Handler,
    until: Callable[[], bool] | None = None,
) -> int:
    """Hand up to ``n`` events to ``handler``, stopping early once ``until()`` is true."""
    if pipeline == "paykafka":
        with PaymentTracker(settings) as tracker:
            if until is None:
                return tracker.run(handler, max_events=n, idle_timeout=_IDLE, handle_signals=False)
            check = until

            def stopping(event: PaymentEvent) -> None:
                handler(event)
                if check():
                    tracker.stop()

            return tracker.run(stopping, max_events=n, idle_timeout=_IDLE, handle_signals=False)
    return _track_stock(settings, n, handler, until)


def _track_stock(
    settings: Settings, n: int, handler: Handler, until: Callable[[], bool] | None
) -> int:
    registry = stock_registry(settings)
    deserialize = AvroDeserializer(registry)
    ctx = SerializationContext(settings.topic, MessageField.VALUE)
    consumer = Consumer(settings.consumer_config())
    consumer.subscribe([settings.topic])
    handled = 0
    idle_since = time.monotonic()
    try:
        while handled < n and time.monotonic() - idle_since < _IDLE:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            handler(PaymentEvent.from_dict(deserialize(msg.value(), ctx)))
            consumer.store_offsets(message=msg)
            handled += 1
            idle_since = time.monotonic()
            if until is not None and until():
                break
    finally:
        consumer.close()
    return handled


class Stopwatch:
    """A handler that notes when the first and the last event arrived (by ``clock``: the wall
    clock, or ``time.process_time`` for the process's CPU time)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self._clock = clock

    def __call__(self, _event: PaymentEvent) -> None:
        now = self._clock()
        if not self.count:
            self.first = now
        self.count += 1
        self.last = now


def end_to_end(base: Settings, n: int, rounds: int) -> list[Row]:
    """Produce then track ``n`` events through each pipeline, alternating, ``rounds`` each."""
    events = make_events(n)
    times: dict[str, dict[str, list[float]]] = {
        p: {"produce": [], "track": [], "total": []} for p in ("stock", "paykafka")
    }
    for r in range(rounds):
        for pipeline in ("stock", "paykafka") if r % 2 == 0 else ("paykafka", "stock"):
            settings = fresh_settings(base, pipeline)
            try:
                produced = produce(pipeline, settings, events)
                watch = Stopwatch()
                handled = track(pipeline, settings, n + 1, watch) - 1  # + the warm-up event
            finally:
                drop(settings)
            if handled != n:
                raise RuntimeError(f"{pipeline}: tracked {handled} of {n} events")
            tracked = watch.last - watch.first
            times[pipeline]["produce"].append(produced)
            times[pipeline]["track"].append(tracked)
            times[pipeline]["total"].append(produced + tracked)
    stock, ours = times["stock"], times["paykafka"]
    return [
        rate_row("e2e", "produce (send -> acked)", n, stock["produce"], ours["produce"]),
        rate_row(
            "e2e",
            "track (record -> handler)",
            n,
            stock["track"],
            ours["track"],
            target=TRACK_TARGET,
        ),
        rate_row(
            "e2e",
            f"produce + track, N={n:,}",
            n,
            stock["total"],
            ours["total"],
            target=E2E_TARGET,
        ),
    ]


# -- latency --------------------------------------------------------------------------------

LATENCY_P99_TARGET_MS = 25.0
_WARMUP_USER = "warmup"


def latency(base: Settings, rates: list[int], seconds: float, rounds: int) -> list[Row]:
    """Produce-to-handler latency at fixed rates, tracker in its own process, both pipelines.

    Each rate runs ``rounds`` times per pipeline, alternating; the row shows the run with the
    lowest p99 of each (the least disturbed by other load), and the detail keeps every run.
    """
    rows = []
    for rate in rates:
        n = int(rate * seconds)
        runs: dict[str, list[dict[str, float]]] = {"stock": [], "paykafka": []}
        for r in range(rounds):
            for pipeline in ("stock", "paykafka") if r % 2 == 0 else ("paykafka", "stock"):
                runs[pipeline].append(_latency_run(base, pipeline, rate, n))
        best = {p: min(results, key=lambda x: x["p99"]) for p, results in runs.items()}
        for pct in ("p50", "p99"):
            stock, ours = best["stock"][pct], best["paykafka"][pct]
            target = None
            if pct == "p99" and rate == 1000:
                target = LATENCY_P99_TARGET_MS
            rows.append(
                Row(
                    group="latency",
                    name=f"{pct} produce -> handler at {rate:,} events/s",
                    unit="ms",
                    stock=round(stock, 2),
                    paykafka=round(ours, 2),
                    ratio=round(stock / ours, 2) if ours > 0 else None,
                    target=None if target is None else f"<= {target:g} ms",
                    met=None if target is None else ours <= target,
                    detail={"n": n, "runs": runs},
                )
            )
    return rows


def _latency_run(
    base: Settings, pipeline: Pipeline, rate: int, n: int, tracker: Pipeline | None = None
) -> dict[str, float]:
    """One paced run: ``pipeline`` sends, ``tracker`` (the same pipeline by default) tracks."""
    settings = fresh_settings(base, f"lat-{pipeline}")
    child = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [
            sys.executable,
            "-m",
            "benchmarks.pipeline",
            "latency-tracker",
            tracker or pipeline,
            json.dumps({"topic": settings.topic, "group_id": settings.group_id, "n": n}),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        sender: Any = (
            PaymentProducer(settings).start() if pipeline == "paykafka" else StockProducer(settings)
        )
        warm = make_events(1)[0]
        ready = ""
        deadline = time.monotonic() + _IDLE
        # Warm-up events until the tracker has joined its group and handled one.
        while not ready and time.monotonic() < deadline and child.poll() is None:
            sender.send(attrs.evolve(warm, user=_WARMUP_USER))
            sender.flush()
            if select.select([child.stdout], [], [], 2.0)[0]:
                ready = child.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError(f"{pipeline} latency tracker did not start")
        _paced(sender, rate, n)
        sender.flush()
        out, _ = child.communicate(timeout=_IDLE + 60)
        if pipeline == "paykafka":
            sender.close()
        stats: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        return stats
    finally:
        if child.poll() is None:
            child.kill()
        drop(settings)


def _paced(sender: Any, rate: int, n: int) -> None:
    """Send ``n`` fresh events at ``rate`` per second (each stamped when it is sent)."""
    template = make_events(1)[0]
    start = time.perf_counter()
    for i in range(n):
        ahead = start + i / rate - time.perf_counter()
        if ahead > 0.0005:
            time.sleep(ahead)
        sender.send(
            PaymentEvent(
                user=template.user,
                amount=template.amount,
                currency=template.currency,
                method=template.method,
            )
        )


def _latency_tracker(pipeline: Pipeline, spec: dict[str, Any]) -> None:
    """Child process: track ``n`` events, print ``ready`` once warm, then the percentiles."""
    settings = Settings.from_env(topic=spec["topic"], group_id=spec["group_id"])
    n: int = spec["n"]
    latencies: list[float] = []

    def handler(event: PaymentEvent) -> None:
        lag = time.time() - event.timestamp.timestamp()
        if event.user == _WARMUP_USER:
            if not latencies:
                print("ready", flush=True)
                latencies.append(-1.0)
            return
        latencies.append(lag * 1000)

    # Warm-up events come first and are not timed; stop once every timed event was handled.
    track(pipeline, settings, 10 * n + 1000, handler, until=lambda: len(latencies) > n)
    timed = sorted(latencies[1:])
    print(
        json.dumps(
            {
                "n": len(timed),
                "p50": _pct(timed, 50),
                "p90": _pct(timed, 90),
                "p99": _pct(timed, 99),
                "max": timed[-1] if timed else float("nan"),
            }
        ),
        flush=True,
    )


def _pct(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return round(sorted_values[index], 3)


if __name__ == "__main__":
    if sys.argv[1:2] == ["latency-tracker"]:
        _latency_tracker(sys.argv[2], json.loads(sys.argv[3]))
