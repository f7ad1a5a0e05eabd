"""What traces and metrics cost: produce + track with each view on, off, and the stock pipeline.

Every configuration runs in the same process and the same run, taking turns, on a fresh topic
each time. "off" is what a user without the extras gets: no telemetry object at all, so neither
opentelemetry nor prometheus-client is imported. Tracing exports every span through a
``BatchSpanProcessor`` to an exporter that drops them (the cost of making and ending spans and
propagating context, not of a network exporter); metrics go to a fresh registry.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from benchmarks._common import Row, make_events
from benchmarks.pipeline import Stopwatch, drop, fresh_settings, produce, track
from paykafka import PaymentEvent, PaymentProducer, PaymentTracker, Settings, Telemetry

#: Cost targets (share of the "off" throughput lost) from the observability issue.
TARGETS = {"metrics": 0.05, "tracing": 0.25}
CONFIGS = ("off", "metrics", "tracing", "tracing + metrics")
_IDLE = 60.0


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _telemetry(config: str) -> tuple[Telemetry | None, TracerProvider | None]:
    if config == "off":
        return None, None
    provider = None
    if "tracing" in config:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=200_000))
    registry = CollectorRegistry() if "metrics" in config else None
    return Telemetry(tracer_provider=provider, registry=registry), provider


def _paykafka_run(settings: Settings, events: list[PaymentEvent], config: str) -> float:
    """Seconds from the first send to the last acknowledgement, plus first to last handled."""
    telemetry, provider = _telemetry(config)
    try:
        producer = PaymentProducer(settings, telemetry=telemetry).start()
        try:
            start = time.perf_counter()
            for event in events:
                producer.send(event)
            producer.flush()
            produced = time.perf_counter() - start
        finally:
            producer.close()
        watch = Stopwatch()
        with PaymentTracker(settings, telemetry=telemetry) as tracker:
            handled = tracker.run(
                watch, max_events=len(events), idle_timeout=_IDLE, handle_signals=False
            )
        if handled != len(events):
            raise RuntimeError(f"{config}: tracked {handled} of {len(events)}")
        return produced + watch.last - watch.first
    finally:
        if provider is not None:
            provider.shutdown()


def run(base: Settings, n: int, rounds: int) -> list[Row]:
    """Produce + track ``n`` events per configuration, ``rounds`` alternating runs each."""
    events = make_events(n)
    seconds: dict[str, list[float]] = {c: [] for c in ("stock", *CONFIGS)}
    order = ["stock", *CONFIGS]
    for r in range(rounds):
        for config in order if r % 2 == 0 else list(reversed(order)):
            settings = fresh_settings(base, "obs")
            try:
                if config == "stock":
                    produced = produce("stock", settings, events)
                    watch = Stopwatch()
                    track("stock", settings, n + 1, watch)
                    seconds[config].append(produced + watch.last - watch.first)
                else:
                    seconds[config].append(_paykafka_run(settings, events, config))
            finally:
                drop(settings)
    stock = n / min(seconds["stock"])
    off = n / min(seconds["off"])
    rows = []
    for config in CONFIGS:
        rate = n / min(seconds[config])
        cost = 1 - rate / off
        limit = max((v for k, v in TARGETS.items() if k in config), default=None)
        if config == "tracing + metrics":
            limit = TARGETS["tracing"] + TARGETS["metrics"]
        rows.append(
            Row(
                group="observability",
                name=f"produce + track, {config}, N={n:,}",
                unit="events/s",
                stock=round(stock),
                paykafka=round(rate),
                ratio=round(rate / stock, 2),
                target=None if limit is None else f"cost vs off <= {limit:.0%}",
                met=None if limit is None else cost <= limit,
                detail=_detail(n, seconds[config], cost),
            )
        )
    return rows


def _detail(n: int, runs: list[float], cost: float) -> dict[str, Any]:
    return {
        "n": n,
        "runs": len(runs),
        "cost_vs_off": round(cost, 3),
        "median_seconds": round(statistics.median(runs), 4),
        "seconds": [round(t, 4) for t in runs],
    }
