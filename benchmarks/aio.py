"""Async and concurrency: slow handlers, async produce, event-loop lag; all in one run.

Handlers: each one waits 5 ms on I/O (``asyncio.sleep`` / ``time.sleep``), the events belong
to 500 users on a 3-partition topic. Compared in the same run, as rates (events handled per
second, from the first handler call to the last return, so no group join is counted):

* today's sequential ``PaymentTracker`` (the baseline of the ratios);
* ``AsyncPaymentTracker(concurrency=256)`` (target >= 50x) and
  ``PaymentTracker(concurrency=64)`` (target >= 20x), each with every user's events checked to
  arrive in offset order (violations must be 0);
* confluent-kafka's ``AIOConsumer`` + ``AsyncAvroDeserializer``, handling records as its
  asyncio example does: ``await consumer.poll()``, handle, ``await consumer.store_offsets()``.

Async produce: ``AsyncPaymentProducer`` (``enqueue`` in a loop, then ``flush``) against the sync
``PaymentProducer`` (target >= 0.8x) and against confluent-kafka's ``AIOProducer`` fed by
``AsyncAvroSerializer`` as its asyncio Avro example does (target >= 2x).

Event-loop lag: a task asks to wake every 1 ms and records how late it woke; p99 while
producing 100k events and while tracking with concurrency 256 (target < 10 ms), beside the
same probe on an idle loop (what the machine alone costs).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import attrs
from confluent_kafka.aio import AIOConsumer, AIOProducer
from confluent_kafka.schema_registry import AsyncSchemaRegistryClient
from confluent_kafka.schema_registry._async.avro import (
    AsyncAvroDeserializer,
    AsyncAvroSerializer,
)
from confluent_kafka.serialization import MessageField, SerializationContext

from benchmarks._common import Row, alternate, make_events, rate_row
from benchmarks.pipeline import STOCK_REGISTRY_TIMEOUT, drop, fresh_settings
from paykafka import PaymentEvent, PaymentProducer, PaymentTracker, Settings, load_schema
from paykafka.aio import AsyncPaymentProducer, AsyncPaymentTracker

USERS = 500
IO_SECONDS = 0.005
ASYNC_CONCURRENCY = 256
SYNC_CONCURRENCY = 64
ASYNC_TARGET = 50.0
SYNC_TARGET = 20.0
PRODUCE_VS_SYNC_TARGET = 0.8
PRODUCE_VS_AIO_TARGET = 2.0
LAG_TARGET_MS = 10.0
_IDLE = 60.0


def user_events(n: int, seed: int = 15) -> list[PaymentEvent]:
    """``n`` events spread over ``USERS`` users."""
    return [attrs.evolve(e, user=f"user-{i % USERS}") for i, e in enumerate(make_events(n, seed))]


class Watch:
    """Notes when handling began and ended, and each user's events in handled order."""

    def __init__(self) -> None:
        self.first = 0.0
        self.last = 0.0
        self.count = 0
        self.by_user: dict[str, list[str]] = defaultdict(list)
        #: CPU seconds the whole process used (every thread): what the rate costs, whatever
        #: share of the machine the run got.
        self.cpu = 0.0

    def begin(self) -> None:
        if not self.count and not self.first:
            self.first = time.perf_counter()

    def end(self, event: PaymentEvent) -> None:
        self.count += 1
        self.last = time.perf_counter()
        self.by_user[event.user].append(str(event.payment_id))

    @property
    def seconds(self) -> float:
        return self.last - self.first

    def violations(self, events: Sequence[PaymentEvent]) -> int:
        """Events handled before an event of the same user that was sent earlier."""
        rank = {str(e.payment_id): i for i, e in enumerate(events)}
        bad = 0
        for ids in self.by_user.values():
            ranks = [rank[i] for i in ids]
            bad += sum(1 for a, b in itertools.pairwise(ranks) if b <= a)
        return bad


class LagProbe:
    """How late a task that asks to wake every millisecond actually wakes, in ms."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(0.001)
            self.samples.append((loop.time() - asked - 0.001) * 1000)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def p99(self) -> float:
        if len(self.samples) < 2:
            return float("nan")
        return statistics.quantiles(self.samples, n=100)[98]


# -- tracking -------------------------------------------------------------------------------


def _sequential(settings: Settings, n: int) -> Watch:
    watch = Watch()

    def handler(event: PaymentEvent) -> None:
        watch.begin()
        time.sleep(IO_SECONDS)
        watch.end(event)

    with PaymentTracker(settings) as tracker:
        tracker.run(handler, max_events=n, idle_timeout=_IDLE, handle_signals=False)
    return watch


def _threaded(settings: Settings, n: int) -> Watch | None:
    if "concurrency" not in inspect.signature(PaymentTracker).parameters:
        return None
    watch = Watch()

    def handler(event: PaymentEvent) -> None:
        watch.begin()
        time.sleep(IO_SECONDS)
        watch.end(event)

    tracker_cls: Any = PaymentTracker
    with tracker_cls(settings, concurrency=SYNC_CONCURRENCY) as tracker:
        cpu = time.process_time()
        tracker.run(handler, max_events=n, idle_timeout=_IDLE, handle_signals=False)
        watch.cpu = time.process_time() - cpu
    return watch


def _concurrent_async(settings: Settings, n: int) -> tuple[Watch, LagProbe]:
    watch = Watch()
    probe = LagProbe()

    async def handler(event: PaymentEvent) -> None:
        watch.begin()
        await asyncio.sleep(IO_SECONDS)
        watch.end(event)

    async def main() -> None:
        async with AsyncPaymentTracker(settings, concurrency=ASYNC_CONCURRENCY) as tracker:
            probe.start()
            cpu = time.process_time()
            try:
                await tracker.run(handler, max_events=n, idle_timeout=_IDLE, handle_signals=False)
            finally:
                watch.cpu = time.process_time() - cpu
                probe.stop()

    asyncio.run(main())
    return watch, probe


def _confluent_aio(settings: Settings, n: int) -> Watch:
    """confluent-kafka's AIOConsumer + AsyncAvroDeserializer, one record at a time."""
    watch = Watch()

    async def handle(event: PaymentEvent) -> None:
        watch.begin()
        await asyncio.sleep(IO_SECONDS)
        watch.end(event)

    async def main() -> None:
        registry = AsyncSchemaRegistryClient(
            {"url": settings.registry_url, "timeout": STOCK_REGISTRY_TIMEOUT}
        )
        deserialize = await AsyncAvroDeserializer(registry)
        ctx = SerializationContext(settings.topic, MessageField.VALUE)
        conf = settings.consumer_config()
        del conf["logger"]  # AIOConsumer wraps callbacks for the loop; keep its own logging
        consumer = AIOConsumer(conf)
        await consumer.subscribe([settings.topic])
        idle_since = time.monotonic()
        try:
            while watch.count < n and time.monotonic() - idle_since < _IDLE:
                msg = await consumer.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                record = await deserialize(msg.value(), ctx)
                await handle(PaymentEvent.from_dict(record))
                await consumer.store_offsets(message=msg)
                idle_since = time.monotonic()
        finally:
            await consumer.close()

    asyncio.run(main())
    return watch


def concurrency(base: Settings, sizes: dict[str, int]) -> list[Row]:
    """The 5 ms handler through each tracker; rates as ratios of the sequential tracker's."""
    total = max(sizes.values())
    events = user_events(total)
    settings = fresh_settings(base, "conc")
    rows: list[Row] = []
    try:
        with PaymentProducer(settings) as producer:
            for event in events:
                producer.send(event)

        def group(label: str) -> Settings:
            return attrs.evolve(settings, group_id=f"{settings.topic}-{label}")

        seq = _sequential(group("seq"), sizes["sequential"])
        base_rate = seq.count / seq.seconds
        async_watch, tracking_lag = _concurrent_async(group("async"), sizes["async"])
        threaded = _threaded(group("threads"), sizes["threads"])
        stock = _confluent_aio(group("stock"), sizes["stock"])
    finally:
        drop(settings)

    def ratio_row(name: str, watch: Watch, target: float | None, check: bool) -> Row:
        rate = watch.count / watch.seconds
        ratio = rate / base_rate
        bad = watch.violations(events) if check else None
        met = None if target is None else ratio >= target and bad == 0
        return Row(
            group="5 ms handler",
            name=name,
            unit="events/s",
            stock=round(base_rate, 1),
            paykafka=round(rate, 1),
            ratio=round(ratio, 2),
            target=None if target is None else f">= {target:g}x, 0 order violations",
            met=met,
            detail={
                "n": watch.count,
                "seconds": round(watch.seconds, 3),
                "violations": bad,
                "cpu_us_per_event": round(watch.cpu / max(watch.count, 1) * 1e6, 1),
            },
        )

    rows.append(
        ratio_row(
            f"AsyncPaymentTracker(concurrency={ASYNC_CONCURRENCY}) vs sequential",
            async_watch,
            ASYNC_TARGET,
            True,
        )
    )
    if threaded is None:
        rows.append(
            Row(
                group="5 ms handler",
                name=f"PaymentTracker(concurrency={SYNC_CONCURRENCY}): not in this build",
                unit="events/s",
                stock=round(base_rate, 1),
                paykafka=0.0,
                target=f">= {SYNC_TARGET:g}x",
                met=False,
            )
        )
    else:
        rows.append(
            ratio_row(
                f"PaymentTracker(concurrency={SYNC_CONCURRENCY}) vs sequential",
                threaded,
                SYNC_TARGET,
                True,
            )
        )
    stock_rate = stock.count / stock.seconds
    async_rate = async_watch.count / async_watch.seconds
    rows.append(
        Row(
            group="5 ms handler",
            name=f"AsyncPaymentTracker(concurrency={ASYNC_CONCURRENCY}) vs AIOConsumer + "
            "AsyncAvroDeserializer",
            unit="events/s",
            stock=round(stock_rate, 1),
            paykafka=round(async_rate, 1),
            ratio=round(async_rate / stock_rate, 2),
            detail={"stock_n": stock.count, "stock_violations": stock.violations(events)},
        )
    )
    rows.append(_lag_row(f"tracking, concurrency {ASYNC_CONCURRENCY}", tracking_lag))
    return rows


# -- producing ------------------------------------------------------------------------------


def _sync_produce(settings: Settings, warm: PaymentEvent, events: list[PaymentEvent]) -> float:
    producer = PaymentProducer(settings).start()
    try:
        producer.send(warm)
        producer.flush()
        start = time.perf_counter()
        for event in events:
            producer.send(event)
        producer.flush()
        return time.perf_counter() - start
    finally:
        producer.close()


async def _async_produce(
    settings: Settings, warm: PaymentEvent, events: list[PaymentEvent]
) -> float:
    async with AsyncPaymentProducer(settings) as producer:
        await producer.send(warm)
        start = time.perf_counter()
        for event in events:
            await producer.enqueue(event)
        await producer.flush()
        return time.perf_counter() - start


async def _aio_produce(settings: Settings, warm: PaymentEvent, events: list[PaymentEvent]) -> float:
    """confluent-kafka's asyncio Avro producer example, with every delivery awaited."""
    registry = AsyncSchemaRegistryClient(
        {"url": settings.registry_url, "timeout": STOCK_REGISTRY_TIMEOUT}
    )
    serialize = await AsyncAvroSerializer(
        registry, schema_str=load_schema(settings.schema_path).text
    )
    ctx = SerializationContext(settings.topic, MessageField.VALUE)
    conf = settings.producer_config()
    del conf["logger"]
    producer = AIOProducer(conf)
    try:
        value = await serialize(warm.to_dict(), ctx)
        await (await producer.produce(settings.topic, value=value))
        start = time.perf_counter()
        futures = []
        for event in events:
            value = await serialize(event.to_dict(), ctx)
            futures.append(
                await producer.produce(settings.topic, value=value, key=event.user.encode())
            )
        await producer.flush()
        await asyncio.gather(*futures)
        return time.perf_counter() - start
    finally:
        await producer.close()


def produce(base: Settings, n: int, rounds: int) -> list[Row]:
    """Async produce throughput against the sync producer and confluent-kafka's AIOProducer."""
    events = user_events(n, seed=16)
    warm = user_events(1, seed=17)[0]
    settings = fresh_settings(base, "aprod")
    times: dict[str, list[float]] = {"sync": [], "async": [], "aio": []}
    cases = {
        "sync": lambda: times["sync"].append(_sync_produce(settings, warm, events)),
        "async": lambda: times["async"].append(asyncio.run(_async_produce(settings, warm, events))),
        "aio": lambda: times["aio"].append(asyncio.run(_aio_produce(settings, warm, events))),
    }
    try:
        alternate(cases, rounds)
    finally:
        drop(settings)
    return [
        rate_row(
            "async produce",
            "AsyncPaymentProducer vs sync PaymentProducer",
            n,
            times["sync"],
            times["async"],
            target=PRODUCE_VS_SYNC_TARGET,
        ),
        rate_row(
            "async produce",
            "AsyncPaymentProducer vs AIOProducer + AsyncAvroSerializer",
            n,
            times["aio"],
            times["async"],
            target=PRODUCE_VS_AIO_TARGET,
        ),
    ]


# -- event-loop lag -------------------------------------------------------------------------


def _lag_row(name: str, probe: LagProbe, idle: float | None = None) -> Row:
    p99 = probe.p99()
    return Row(
        group="event-loop lag",
        name=f"p99 while {name}",
        unit="ms",
        stock=None if idle is None else round(idle, 2),
        paykafka=round(p99, 2),
        target=f"< {LAG_TARGET_MS:g} ms",
        met=p99 < LAG_TARGET_MS,
        detail={"samples": len(probe.samples), "max": round(max(probe.samples, default=0), 2)},
    )


def lag(base: Settings, n: int) -> list[Row]:
    """Loop lag p99 while producing ``n`` events with AsyncPaymentProducer; the stock column is
    the same probe while the sync PaymentProducer sends them from a worker thread (what an
    asyncio service does without an async producer). The idle loop's p99 is in the detail."""
    events = user_events(n, seed=18)
    settings = fresh_settings(base, "lag")
    idle, threaded, ours = LagProbe(), LagProbe(), LagProbe()

    def sync_send() -> None:
        with PaymentProducer(settings) as producer:
            for event in events:
                producer.send(event)

    async def main() -> None:
        idle.start()
        await asyncio.sleep(2.0)
        idle.stop()
        threaded.start()
        await asyncio.to_thread(sync_send)
        threaded.stop()
        async with AsyncPaymentProducer(settings) as producer:
            await producer.send(events[0])
            ours.start()
            try:
                for event in events:
                    await producer.enqueue(event)
                await producer.flush()
            finally:
                ours.stop()

    try:
        asyncio.run(main())
    finally:
        drop(settings)
    row = _lag_row(
        f"producing {n:,} events (stock: sync producer in a thread)", ours, threaded.p99()
    )
    return [attrs.evolve(row, detail={**row.detail, "idle_loop_p99": round(idle.p99(), 2)})]
