"""What traces and metrics cost: produce + track with each view on, off, and the stock pipeline.

Every configuration runs in the same process and the same run, taking turns (the order reversed
every round), on a fresh topic each time; the rows show the best run of each and keep every run
in their detail. "off" is what a user who does not turn the views on gets: no telemetry object
at all. "extras not installed" runs the same "off" pipeline in a child process in which
``opentelemetry`` and ``prometheus_client`` cannot be imported, as for a user without the
extras.

Tracing uses the OpenTelemetry SDK as an application would configure it: a ``TracerProvider``
with a ``BatchSpanProcessor`` (default batch size and delay, a queue of 65,536 so that no span
is dropped), whose exporter takes the spans and does no network I/O (it counts them, so a run
shows that none were dropped). That is the cost of
making, ending and propagating spans and of the SDK's export pipeline, not of shipping them.
"sampled" configurations use ``ParentBased(TraceIdRatioBased(ratio))``, the usual production
sampler: the producer's send span decides, the tracker's process span follows its parent.

Two in-process rows split a traced event's cost: the SDK's own floor (a loop making the same
two spans, with the same attributes, parent, link and current context, and nothing else: the
send span's partition and offset set when it ends, as they are known only then)
against paykafka's whole per-event path (:class:`paykafka.Telemetry`), so what paykafka adds
on top of the SDK is their difference. When sampled, paykafka can come in under the floor: a
record whose sender was sampled out is handled in the sender's context rather than asking the
SDK for a span its parent-based sampler would drop. A third row is the per-event cost of the
metrics, made as the producer and the tracker's hot loop make them.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from confluent_kafka import Message
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind
from prometheus_client import CollectorRegistry

from benchmarks._common import Row, make_events
from benchmarks.no_extras import timed_pipeline
from benchmarks.pipeline import Stopwatch, drop, fresh_settings, produce, track
from paykafka import PaymentEvent, Settings, Telemetry

#: Cost targets (share of the "off" throughput lost) from the observability issue.
TARGETS = {"metrics": 0.05, "tracing": 0.25}
#: configuration -> (sampling ratio, or None for no tracing / every span; metrics on)
CONFIGS: dict[str, tuple[float | None, bool]] = {
    "off": (None, False),
    "metrics": (None, True),
    "tracing": (1.0, False),
    "tracing + metrics": (1.0, True),
    "tracing 10% sampled": (0.1, False),
    "tracing 1% sampled": (0.01, False),
}
NOT_INSTALLED = "extras not installed"
_IDLE = 60.0
#: The batch span processor's queue: its default (2,048) overflows at tens of thousands of
#: spans a second on a loaded machine and drops spans, which would make tracing look cheaper.
_QUEUE = 65_536
#: No single run may take longer than this: a hang (a registry call that never returns, say)
#: ends the benchmark with every thread's stack printed rather than never ending.
_WATCHDOG_SECONDS = 900


class CountingExporter(SpanExporter):
    """Takes spans and does no I/O; counts them (a drop by the batch processor shows)."""

    def __init__(self) -> None:
        self.exported = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.exported += len(spans)
        return SpanExportResult.SUCCESS


def _provider(ratio: float) -> tuple[TracerProvider, CountingExporter]:
    sampler: Sampler | None = None if ratio >= 1 else ParentBased(TraceIdRatioBased(ratio))
    provider = TracerProvider(sampler=sampler)
    exporter = CountingExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=_QUEUE))
    return provider, exporter


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Abort the process, printing every thread's stack, if the block outlives ``seconds``."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def _paykafka_run(
    settings: Settings, events: list[PaymentEvent], config: str
) -> tuple[float, float, int | None]:
    """Wall and CPU seconds of produce + track (see :func:`timed_pipeline`), and the spans
    exported (``None`` without tracing)."""
    ratio, metrics = CONFIGS[config]
    provider, exporter = _provider(ratio) if ratio is not None else (None, None)
    telemetry = None
    if provider is not None or metrics:
        telemetry = Telemetry(
            tracer_provider=provider, registry=CollectorRegistry() if metrics else None
        )
    try:
        seconds, cpu = timed_pipeline(settings, events, telemetry)
    finally:
        if provider is not None:
            provider.shutdown()  # exports what is still queued
    return seconds, cpu, None if exporter is None else exporter.exported


def _not_installed_run(settings: Settings, n: int) -> tuple[float, float]:
    """The "off" pipeline in a child process where neither extra can be imported."""
    spec = {"topic": settings.topic, "group_id": settings.group_id, "n": n}
    done = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "benchmarks.no_extras", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=_WATCHDOG_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{NOT_INSTALLED} child failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), float(result["cpu"])


class _Runs:
    """Every run's wall-clock and CPU seconds, and spans exported, per configuration."""

    def __init__(self, configs: list[str]) -> None:
        self.seconds: dict[str, list[float]] = {c: [] for c in configs}
        self.cpu: dict[str, list[float]] = {c: [] for c in configs}
        self.spans: dict[str, list[int]] = {c: [] for c in configs}

    def add(self, config: str, seconds: float, cpu: float | None, spans: int | None) -> None:
        self.seconds[config].append(seconds)
        if cpu is not None:
            self.cpu[config].append(cpu)
        if spans is not None:
            self.spans[config].append(spans)


def run(base: Settings, n: int, rounds: int) -> list[Row]:
    """Produce + track ``n`` events per configuration, ``rounds`` alternating runs each,
    then the in-process split of a traced event's cost."""
    events = make_events(n)
    order = ["stock", *CONFIGS, NOT_INSTALLED]
    runs = _Runs(order)
    for r in range(rounds):
        for config in order if r % 2 == 0 else list(reversed(order)):
            settings = fresh_settings(base, "obs")
            try:
                with watchdog(_WATCHDOG_SECONDS):
                    _run_one(settings, events, config, runs)
            finally:
                drop(settings)
    rows = [_row(config, n, runs) for config in [*CONFIGS, NOT_INSTALLED]]
    return rows + per_event_costs(min(n, 20_000), max(rounds, 5))


def _run_one(settings: Settings, events: list[PaymentEvent], config: str, runs: _Runs) -> None:
    if config == "stock":
        produced = produce("stock", settings, events)
        watch = Stopwatch()
        track("stock", settings, len(events) + 1, watch)
        runs.add(config, produced + watch.last - watch.first, None, None)
    elif config == NOT_INSTALLED:
        runs.add(config, *_not_installed_run(settings, len(events)), None)
    else:
        runs.add(config, *_paykafka_run(settings, events, config))


def _row(config: str, n: int, runs: _Runs) -> Row:
    seconds, cpu = runs.seconds, runs.cpu
    rate, off, stock = n / min(seconds[config]), n / min(seconds["off"]), n / min(seconds["stock"])
    cost = 1 - rate / off
    limit = None
    if config == "tracing + metrics":
        limit = TARGETS["tracing"] + TARGETS["metrics"]
    elif config == NOT_INSTALLED:
        limit = 0.0  # "no measurable cost": within the run's noise, shown in the detail
    elif config != "off":
        limit = TARGETS["tracing" if "tracing" in config else "metrics"]
    detail: dict[str, Any] = {
        "n": n,
        "runs": len(seconds[config]),
        "cost_vs_off": round(cost, 3),
        "median_cost_vs_off": round(
            1 - statistics.median(seconds["off"]) / statistics.median(seconds[config]), 3
        ),
        "seconds": [round(t, 4) for t in seconds[config]],
        # CPU time per event against "off": what the view costs the process, much less
        # disturbed than the wall clock by other load on a shared machine.
        "cpu_us_per_event": round(min(cpu[config]) / n * 1e6, 2),
        "cpu_cost_vs_off": round(1 - min(cpu["off"]) / min(cpu[config]), 3),
        "cpu_seconds": [round(t, 4) for t in cpu[config]],
    }
    if runs.spans[config]:
        detail["spans_exported"] = runs.spans[config]
    return Row(
        group="observability",
        name=f"produce + track, {config}, N={n:,}",
        unit="events/s",
        stock=round(stock),
        paykafka=round(rate),
        ratio=round(rate / stock, 2),
        target=None if limit is None else f"cost vs off <= {limit:.0%}",
        met=None if limit is None or config == NOT_INSTALLED else cost <= limit,
        detail=detail,
    )


# -- in-process: what one event costs --------------------------------------------------------


def per_event_costs(n: int, rounds: int) -> list[Row]:
    """Microseconds per event: the SDK's floor and paykafka's whole path, at 100% and 1%
    sampling, and the metrics; best of ``rounds`` alternating runs of ``n`` events each."""
    events = make_events(n)
    # Consumed records, and also the delivery reports' records (latency as librdkafka gives it).
    records = [
        Message(topic="payments", partition=i % 3, offset=i, latency=0.003) for i in range(n)
    ]
    rows = []
    for ratio in (1.0, 0.01):
        cases: dict[str, Callable[[], float]] = {
            "sdk": functools.partial(_traced_loop, ratio, events, None),
            "paykafka": functools.partial(_traced_loop, ratio, events, records),
        }
        best = _best_of(cases, rounds)
        floor, ours = best["sdk"] / n * 1e6, best["paykafka"] / n * 1e6
        label = "every span recorded" if ratio >= 1 else f"{ratio:.0%} sampled"
        rows.append(
            Row(
                group="observability",
                name=f"tracing per event ({label}): bare SDK spans vs paykafka",
                unit="µs/event",
                stock=round(floor, 1),
                paykafka=round(ours, 1),
                ratio=round(floor / ours, 2),
                detail={"n": n, "runs": rounds, "paykafka_share_us": round(ours - floor, 1)},
            )
        )
    registry = CollectorRegistry()
    telemetry = Telemetry(registry=registry)
    best = _best_of(
        {
            "loop": lambda: _metrics_loop(None, events, records),
            "metrics": lambda: _metrics_loop(telemetry, events, records),
        },
        rounds,
    )
    rows.append(
        Row(
            group="observability",
            name="metrics per event (sent, handled, delivery and handler histograms)",
            unit="µs/event",
            stock=None,
            paykafka=round((best["metrics"] - best["loop"]) / n * 1e6, 2),
            detail={"n": n, "runs": rounds},
        )
    )
    return rows


def _best_of(cases: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(rounds):
        for name in cases if r % 2 == 0 else reversed(list(cases)):
            times[name].append(cases[name]())
    return {name: min(runs) for name, runs in times.items()}


_SEND = {
    "messaging.system": "kafka",
    "messaging.operation.name": "send",
    "messaging.operation.type": "send",
    "messaging.destination.name": "payments",
}
_PROCESS = {
    "messaging.system": "kafka",
    "messaging.operation.name": "process",
    "messaging.operation.type": "process",
    "messaging.destination.name": "payments",
    "messaging.consumer.group.name": "ledger",
}


def _traced_loop(ratio: float, events: list[PaymentEvent], records: list[Message] | None) -> float:
    """Seconds to trace ``events`` (send span, then process span): with the SDK alone when
    ``records`` is None, else through paykafka's Telemetry with those consumed records."""
    provider, _ = _provider(ratio)
    try:
        if records is None:
            tracer = provider.get_tracer("floor")
            start = time.perf_counter()
            for i, event in enumerate(events):
                send = tracer.start_span(
                    "send payments",
                    kind=SpanKind.PRODUCER,
                    attributes={
                        **_SEND,
                        "messaging.message.id": str(event.payment_id),
                        "messaging.kafka.message.key": event.user,
                    },
                )
                # Partition and offset are known only once the broker acknowledges.
                send.set_attributes(
                    {"messaging.destination.partition.id": str(i % 3), "messaging.kafka.offset": i}
                )
                send.end()
                sender = send.get_span_context()
                process = tracer.start_span(
                    "process payments",
                    context=trace.set_span_in_context(send),
                    kind=SpanKind.CONSUMER,
                    links=(Link(sender),),
                    attributes={
                        **_PROCESS,
                        "messaging.message.id": str(event.payment_id),
                        "messaging.kafka.message.key": event.user,
                        "messaging.destination.partition.id": str(i % 3),
                        "messaging.kafka.offset": i,
                    },
                )
                token = otel_context.attach(trace.set_span_in_context(process))
                otel_context.detach(token)
                process.end()
            return time.perf_counter() - start
        telemetry = Telemetry(tracer_provider=provider)
        start = time.perf_counter()
        for i, event in enumerate(events):
            key = event.user.encode()
            sent, headers = telemetry.sending("payments", event, key)
            record = records[i]
            if sent is not None:
                telemetry.delivered(sent, record)
            record.set_headers(headers or [])
            record.set_key(key)
            with telemetry.handling("payments", "ledger", event, record):
                pass
        return time.perf_counter() - start
    finally:
        provider.shutdown()


def _metrics_loop(
    telemetry: Telemetry | None, events: list[PaymentEvent], records: list[Message]
) -> float:
    """Seconds for the metrics calls of ``events`` as the producer and the tracker make them
    (the bare loop, handler call included, when ``telemetry`` is None)."""
    handled: list[PaymentEvent] = []
    handler = handled.append
    start = time.perf_counter()
    if telemetry is None:
        for i, event in enumerate(events):
            records[i].set_key(event.user.encode())
            handler(event)
        return time.perf_counter() - start
    timer = telemetry.timer("payments", "ledger")  # as the tracker's hot loop times handlers
    assert timer is not None
    for i, event in enumerate(events):
        key = event.user.encode()
        sent, _ = telemetry.sending("payments", event, key)
        assert sent is not None
        record = records[i]
        telemetry.delivered(sent, record)
        record.set_key(key)
        started = time.perf_counter()
        handler(event)
        timer.handled_in(time.perf_counter() - started)
    return time.perf_counter() - start
