"""Where a telemetry configuration's cost lands: producing and tracking timed apart, with the
garbage collector's share.

    .venv/bin/python -m benchmarks.telemetry_split [--n 50000] [--rounds 4]
        [--configs off,metrics,tracing@0.01,tracing@1]

:mod:`benchmarks.observability` gives the end-to-end cost of each view; this splits it. Each
configuration produces ``n`` events (first send to the last acknowledgement) and then tracks
them (first to last handled) on a fresh topic, the configurations taking turns (the order
reversed every round). Per phase it prints the process's CPU time per event (every thread,
librdkafka's and the span exporter's included) and the time spent in the garbage collector per
event, with the number of collections: an object kept per pending send shows up there, not in
an in-process loop. ``tracing@r`` samples with ``ParentBased(TraceIdRatioBased(r))`` into the
same non-exporting batch processor the observability benchmark uses.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry

from benchmarks._common import make_events
from benchmarks.observability import _provider
from benchmarks.pipeline import Stopwatch, drop, fresh_settings
from paykafka import PaymentEvent, PaymentProducer, PaymentTracker, Settings, Telemetry

_IDLE = 60.0


class _GcClock:
    """Seconds spent in, and the number of, garbage collections since the last reset."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1

    @contextmanager
    def watching(self) -> Iterator[_GcClock]:
        self.seconds, self.collections = 0.0, 0
        gc.callbacks.append(self)
        try:
            yield self
        finally:
            gc.callbacks.remove(self)


def _telemetry(config: str) -> tuple[Telemetry | None, Any]:
    if config == "off":
        return None, None
    if config == "metrics":
        return Telemetry(registry=CollectorRegistry()), None
    if not config.startswith("tracing@"):
        raise SystemExit(f"unknown configuration {config!r}: off, metrics or tracing@<ratio>")
    provider, _ = _provider(float(config.removeprefix("tracing@")))
    return Telemetry(tracer_provider=provider), provider


def _one(base: Settings, events: list[PaymentEvent], config: str) -> dict[str, float]:
    """CPU and GC seconds (and collections) of producing, then of tracking, ``events``."""
    settings = fresh_settings(base, "split")
    telemetry, provider = _telemetry(config)
    clock = _GcClock()
    try:
        producer = PaymentProducer(settings, telemetry=telemetry).start()
        try:
            with clock.watching():
                started = time.process_time()
                for event in events:
                    producer.send(event)
                producer.flush()
                produce_cpu = time.process_time() - started
            produce_gc, produce_collections = clock.seconds, clock.collections
        finally:
            producer.close()
        handled = Stopwatch(time.process_time)
        with PaymentTracker(settings, telemetry=telemetry) as tracker, clock.watching():
            tracker.run(handled, max_events=len(events), idle_timeout=_IDLE, handle_signals=False)
        if handled.count != len(events):
            raise RuntimeError(f"tracked {handled.count} of {len(events)}")
        return {
            "produce_cpu": produce_cpu,
            "produce_gc": produce_gc,
            "produce_collections": produce_collections,
            "track_cpu": handled.last - handled.first,
            "track_gc": clock.seconds,
            "track_collections": clock.collections,
        }
    finally:
        if provider is not None:
            provider.shutdown()
        drop(settings)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.telemetry_split", description=__doc__
    )
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--configs", default="off,metrics,tracing@0.01,tracing@1")
    args = parser.parse_args()
    configs = args.configs.split(",")
    base = Settings.from_env()
    events = make_events(args.n)
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in configs}
    for r in range(args.rounds):
        for config in configs if r % 2 == 0 else reversed(configs):
            runs[config].append(_one(base, events, config))
    per_event = 1e6 / args.n
    print(
        f"N={args.n:,}, {args.rounds} rounds; µs per event, best / median of the rounds; "
        "collections in the best round"
    )
    header = ("configuration", "produce CPU", "produce GC", "track CPU", "track GC")
    print(f"{header[0]:<16} {header[1]:>15} {header[2]:>18} {header[3]:>15} {header[4]:>18}")
    for config in configs:
        cells = []
        for phase in ("produce", "track"):
            cpu = [run[f"{phase}_cpu"] * per_event for run in runs[config]]
            best = min(range(len(cpu)), key=cpu.__getitem__)
            gc_us = runs[config][best][f"{phase}_gc"] * per_event
            collections = int(runs[config][best][f"{phase}_collections"])
            cells.append(f"{min(cpu):6.2f} / {statistics.median(cpu):6.2f}")
            cells.append(f"{gc_us:6.2f} ({collections:>4} gc)")
        print(f"{config:<16} {cells[0]:>15} {cells[1]:>18} {cells[2]:>15} {cells[3]:>18}")


if __name__ == "__main__":
    main()
