"""send() time across a broker outage: paykafka against the stock confluent-kafka producer.

When a broker freezes for longer than ``message.timeout.ms``, every event queued meanwhile
times out, and their delivery reports arrive together. The stock loop (``produce`` then
``poll(0)``) serves that whole backlog inside one call; paykafka's ``send()`` takes in a
bounded share per call. Each side gets its own run: events at a steady rate, the broker
frozen (SIGSTOP) part-way, resumed, and every ``send()`` timed.

It freezes broker 1 of the stack that ``paykafka stack`` manages with the current
``PAYKAFKA_STACK_*`` variables, so point it at a stack of your own, never a shared one::

    PAYKAFKA_STACK_KAFKA_PORT=9192 PAYKAFKA_STACK_REGISTRY_PORT=8181 PAYKAFKA_STACK_DIR=... \\
    PAYKAFKA_BOOTSTRAP_SERVERS=localhost:9192 PAYKAFKA_REGISTRY_URL=... \\
        python -m benchmarks.outage [--rate 4000] [--freeze 12] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from benchmarks._common import Row, render, stream_events
from benchmarks.pipeline import StockProducer
from paykafka import DeliveryError, KafkaAdmin, PaymentEvent, PaymentProducer, Settings
from paykafka._stack import Stack

_QUANTILES = {"p50": 0.5, "p99": 0.99, "p99.9": 0.999, "max": 1.0}
# Seconds of each garbage collection during a run: a full pass over the objects a producer
# holds (paykafka: a future and an event per unacknowledged event) stalls whatever runs then.
_GC_PAUSES: list[float] = []
_gc_started = [0.0]


def _on_gc(phase: str, _info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        _GC_PAUSES.append(time.perf_counter() - _gc_started[0])


def _quantile(sorted_seconds: Sequence[float], q: float) -> float:
    return sorted_seconds[min(len(sorted_seconds) - 1, int(len(sorted_seconds) * q))]


def _run(
    send: Callable[[PaymentEvent], int],
    stack: Stack,
    *,
    rate: int,
    before: float,
    freeze: float,
    after: float,
) -> tuple[list[float], int]:
    """Seconds of each send() at ``rate`` events/s, the broker frozen from ``before`` on, and
    the most delivery reports one send() served (``send`` returns how many it served)."""
    durations: list[float] = []
    most = 0
    _GC_PAUSES.clear()
    began = time.monotonic()
    frozen = thawed = False
    total = before + freeze + after
    events = stream_events(int(rate * total) + rate)
    i = 0
    try:
        while (elapsed := time.monotonic() - began) < total:
            if not frozen and elapsed >= before:
                stack.pause_node(1)
                frozen = True
            if frozen and not thawed and elapsed >= before + freeze:
                stack.resume_node(1)
                thawed = True
            event = next(events)
            start = time.perf_counter()
            served = send(event)
            durations.append(time.perf_counter() - start)
            most = max(most, served)
            i += 1
            ahead = i / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
    finally:
        stack.resume_node(1)
    return durations, most


Outcome = tuple[list[float], int, int]  # send() seconds, most reports in one send, failed


def _paykafka(settings: Settings, stack: Stack, **timing: Any) -> Outcome:
    producer = PaymentProducer(settings, flush_timeout=60).start()
    pending = producer._pending  # each report served takes its event off this map

    def send(event: PaymentEvent) -> int:
        before = len(pending)
        producer.send(event)
        return before + 1 - len(pending)

    failed = 0
    try:
        durations, most = _run(send, stack, **timing)
    finally:
        try:
            producer.close()
        except DeliveryError as exc:
            failed = len(exc.undelivered)
    return durations, most, failed


def _stock(settings: Settings, stack: Stack, **timing: Any) -> Outcome:
    producer = StockProducer(settings)
    durations, most = _run(producer.send, stack, **timing)
    producer.producer.flush(60)
    return durations, most, len(producer.failed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=int, default=4_000, help="events/s (default 4000)")
    parser.add_argument("--freeze", type=float, default=12.0, help="seconds frozen (default 12)")
    parser.add_argument(
        "--timeout-ms", type=int, default=3_000, help="message.timeout.ms (default 3000)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    stack = Stack()
    base = Settings.from_env()
    gc.callbacks.append(_on_gc)
    KafkaAdmin(base, timeout=10).brokers()
    rows: list[Row] = []
    results: dict[str, dict[str, float]] = {}
    failed: dict[str, int] = {}
    most: dict[str, int] = {}
    timing = {"rate": args.rate, "before": 3.0, "freeze": args.freeze, "after": 8.0}
    for name, side in (("stock", _stock), ("paykafka", _paykafka)):
        topic = f"bench-outage-{uuid.uuid4().hex[:8]}"
        settings = attrs.evolve(
            base,
            topic=topic,
            topic_replication_factor=1,
            kafka_options={**base.kafka_options, "message.timeout.ms": str(args.timeout_ms)},
        )
        KafkaAdmin(settings, timeout=30).ensure_topic()
        durations, most[name], failed[name] = side(settings, stack, **timing)
        durations.sort()
        results[name] = {k: _quantile(durations, q) * 1000 for k, q in _QUANTILES.items()}
        results[name]["sends"] = len(durations)
        results[name]["longest_gc_pause"] = max(_GC_PAUSES, default=0.0) * 1000
        time.sleep(3.0)  # let the broker settle between the runs
    for label in ("p99.9", "max"):
        stock, ours = results["stock"][label], results["paykafka"][label]
        rows.append(
            Row(
                group="outage",
                name=f"send() {label} across a {args.freeze:g} s broker freeze",
                unit="ms",
                stock=round(stock, 3),
                paykafka=round(ours, 3),
                ratio=round(stock / ours, 2),  # a cost: above 1 is better
                detail={"failed": failed, "timing": timing, "quantiles_ms": results},
            )
        )
    rows.append(
        Row(
            group="outage",
            name="longest garbage-collection pause (sends and close)",
            unit="ms",
            stock=round(results["stock"]["longest_gc_pause"], 3),
            paykafka=round(results["paykafka"]["longest_gc_pause"], 3),
            ratio=round(
                results["stock"]["longest_gc_pause"]
                / max(results["paykafka"]["longest_gc_pause"], 1e-6),
                2,
            ),
        )
    )
    rows.append(
        Row(
            group="outage",
            name="delivery reports served by one send(), at most",
            unit="reports",
            stock=most["stock"],
            paykafka=most["paykafka"],
            ratio=round(most["stock"] / max(1, most["paykafka"]), 2),
        )
    )
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=2, default=str))
    else:
        print(render(rows))
        print(f"\nfailed deliveries: {failed}; quantiles (ms): {json.dumps(results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
