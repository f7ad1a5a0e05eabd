"""Prometheus metrics for producers, trackers and processors.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms); consumer lag
is exported as ``kafka_consumergroup_lag{consumergroup,topic,partition}``, the name
kafka_exporter uses, so existing Kafka dashboards and alerts work unchanged. Lag comes from
librdkafka's own statistics (committed offset against the high watermark, per assigned
partition), not from extra admin calls per event.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
import weakref
from typing import Any, ClassVar, NamedTuple

from prometheus_client import REGISTRY, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics", "serve"]

log = logging.getLogger(__name__)

# Delivery to a local broker takes milliseconds; across regions or in an outage, seconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _Cells:
    """Numbers written per thread and summed when scraped.

    Why not prometheus-client's own counters on the per-event paths: each ``inc()`` /
    ``observe()`` takes a lock, and a payment pipeline makes five of them per event, a cost
    comparable to producing and tracking the event itself. Here each thread adds into its own
    list (no lock, no race: no other thread writes it) and a scrape sums the lists. The hot
    path is one thread-local lookup, one list index and one addition; a thread's first write,
    and its first write after new series were added, take the slow path (:meth:`shard`).
    """

    def __init__(self) -> None:
        self.local = threading.local()
        self._shards: list[list[float]] = []
        self._size = 0
        self._lock = threading.Lock()

    def allocate(self, count: int) -> int:
        with self._lock:
            start, self._size = self._size, self._size + count
            return start

    def shard(self) -> list[float]:
        """This thread's list, made or grown to hold every series allocated so far."""
        cells: list[float] | None = getattr(self.local, "cells", None)
        if cells is None:
            cells = self.local.cells = []
            with self._lock:
                self._shards.append(cells)
        if len(cells) < self._size:
            cells.extend([0.0] * (self._size - len(cells)))
        return cells

    def total(self, index: int) -> float:
        with self._lock:
            shards = list(self._shards)
        return sum(cells[index] for cells in shards if index < len(cells))


class FastCounter:
    """One labelled counter series on :class:`_Cells`."""

    __slots__ = ("_cells", "_index", "_local")

    def __init__(self, cells: _Cells) -> None:
        self._cells = cells
        self._local = cells.local
        self._index = cells.allocate(1)

    def inc(self, amount: float = 1.0) -> None:
        try:
            self._local.cells[self._index] += amount
        except (AttributeError, IndexError):  # this thread's first write to this series
            self._cells.shard()[self._index] += amount

    def value(self) -> float:
        return self._cells.total(self._index)


class FastHistogram:
    """One labelled histogram series on :class:`_Cells`: a cell per bucket, and the sum."""

    __slots__ = ("_base", "_bounds", "_cells", "_local", "_sum")

    def __init__(self, cells: _Cells, bounds: tuple[float, ...]) -> None:
        self._cells = cells
        self._local = cells.local
        self._bounds = bounds
        # One cell per bound, one for +Inf, one for the sum.
        self._base = cells.allocate(len(bounds) + 2)
        self._sum = self._base + len(bounds) + 1

    def observe(self, value: float) -> None:
        try:
            cells = self._local.cells
            cells[self._sum] += value
        except (AttributeError, IndexError):  # this thread's first write to this series
            cells = self._cells.shard()
            cells[self._sum] += value
        cells[self._base + bisect.bisect_left(self._bounds, value)] += 1

    def count(self) -> float:
        """How many values were observed."""
        total = self._cells.total
        return sum(total(self._base + i) for i in range(len(self._bounds) + 1))

    def buckets(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative (le, count) pairs ending with +Inf, and the sum."""
        total = self._cells.total
        cumulative, out = 0.0, []
        for i, bound in enumerate((*self._bounds, float("inf"))):
            cumulative += total(self._base + i)
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
        return out, total(self._sum)


class _Family:
    """A metric name with its labelled series, exported by :class:`_Collector`."""

    def __init__(
        self,
        cells: _Cells,
        kind: str,
        name: str,
        doc: str,
        labels: tuple[str, ...],
        *,
        counts: _Family | None = None,
    ) -> None:
        self.cells, self.kind, self.name, self.doc, self.labels = cells, kind, name, doc, labels
        self.series: dict[tuple[str, ...], FastCounter | FastHistogram] = {}
        #: A counter that is the observation count of this histogram family: nothing to add
        #: per event, the histogram already counts (delivered = delivery latencies observed).
        self.counts = counts
        self._lock = threading.Lock()

    def labels_(self, *values: str) -> Any:
        found = self.series.get(values)
        if found is None:
            with self._lock:
                found = self.series.get(values)
                if found is None:
                    found = self.series[values] = (
                        FastCounter(self.cells)
                        if self.kind == "counter"
                        else FastHistogram(self.cells, _LATENCY_BUCKETS)
                    )
        return found

    def family(self) -> Any:
        if self.kind == "counter":
            counters = CounterMetricFamily(self.name, self.doc, labels=self.labels)
            source = self if self.counts is None else self.counts
            for values, series in list(source.series.items()):
                value = series.count() if isinstance(series, FastHistogram) else series.value()
                counters.add_metric(list(values), value)
            return counters
        histograms = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for values, series in list(self.series.items()):
            assert isinstance(series, FastHistogram)
            buckets, total = series.buckets()
            histograms.add_metric(list(values), buckets, total)
        return histograms


class _Collector(Collector):
    def __init__(self, families: list[_Family]) -> None:
        self._families = families

    def describe(self) -> list[Any]:
        return [
            (CounterMetricFamily if f.kind == "counter" else HistogramMetricFamily)(
                f.name, f.doc, labels=f.labels
            )
            for f in self._families
        ]

    def collect(self) -> list[Any]:
        return [f.family() for f in self._families]


class ProducerSeries(NamedTuple):
    sent: FastCounter
    #: Also counts the deliveries (``paykafka_events_delivered_total``).
    latency: FastHistogram


class ConsumerSeries:
    """One group's handler series on one topic: the handled counter and the duration
    histogram, written together by :meth:`handled_in` (one call per handled event)."""

    __slots__ = (
        "_base",
        "_bounds",
        "_cells",
        "_count",
        "_local",
        "_sum",
        "_top",
        "duration",
        "handled",
    )

    def __init__(self, handled: FastCounter, duration: FastHistogram) -> None:
        self.handled = handled
        self.duration = duration
        self._cells = handled._cells
        self._local = handled._local
        self._count = handled._index
        self._base, self._sum, self._bounds = duration._base, duration._sum, duration._bounds
        # The highest cell written: when this thread's list holds it, it holds them all.
        self._top = max(self._count, self._sum)

    def handled_in(self, seconds: float) -> None:
        """A handler call that returned after ``seconds``: its duration, and one handled."""
        try:
            cells = self._local.cells
            cells[self._top]  # IndexError when this thread's list is too short
        except (AttributeError, IndexError):  # this thread's first write to these series
            cells = self._cells.shard()
        cells[self._count] += 1
        cells[self._sum] += seconds
        cells[self._base + bisect.bisect_left(self._bounds, seconds)] += 1


class Metrics:
    """paykafka's metrics in one Prometheus registry (one instance per registry)."""

    #: Weak keys: a registry that is dropped takes its metrics with it, and a new registry
    #: that happens to reuse its address is not mistaken for it (keying by ``id()`` did that).
    _by_registry: ClassVar[weakref.WeakKeyDictionary[Any, Metrics]] = weakref.WeakKeyDictionary()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: Any) -> None:
        cells = _Cells()
        families: list[_Family] = []

        def family(
            kind: str, name: str, doc: str, *labels: str, counts: _Family | None = None
        ) -> _Family:
            made = _Family(cells, kind, name, doc, labels, counts=counts)
            families.append(made)
            return made

        self.sent = family("counter", "paykafka_events_sent", "Events given to send()", "topic")
        self.failed = family(
            "counter",
            "paykafka_events_failed",
            "Events reported undelivered, by librdkafka error",
            "topic",
            "error",
        )
        self.handled = family(
            "counter",
            "paykafka_events_handled",
            "Events whose handler returned",
            "topic",
            "consumergroup",
        )
        self.retried = family(
            "counter",
            "paykafka_handler_retries",
            "Handler calls that raised and were retried",
            "topic",
            "consumergroup",
        )
        self.dead_lettered = family(
            "counter",
            "paykafka_events_dead_lettered",
            "Records sent to the dead-letter topic, by reason",
            "topic",
            "consumergroup",
            "reason",
        )
        self.duplicates = family(
            "counter",
            "paykafka_duplicates_absorbed",
            "Redelivered payments not handed to the handler again",
            "topic",
            "consumergroup",
        )
        self.delivery_latency = family(
            "histogram",
            "paykafka_delivery_latency_seconds",
            "From send() to the broker's acknowledgement",
            "topic",
        )
        self.delivered = family(
            "counter",
            "paykafka_events_delivered",
            "Events the broker acknowledged",
            "topic",
            counts=self.delivery_latency,
        )
        self.handler_duration = family(
            "histogram",
            "paykafka_handler_duration_seconds",
            "Time spent in the handler per call",
            "topic",
            "consumergroup",
        )
        registry.register(_Collector(families))
        self.in_flight = Gauge(
            "paykafka_in_flight",
            "Records handed out and not yet handled",
            ["topic", "consumergroup"],
            registry=registry,
        )
        self.registry_up = Gauge(
            "paykafka_registry_up", "1 when the Schema Registry last answered", registry=registry
        )
        self.lag = Gauge(
            "kafka_consumergroup_lag",
            "Events on the partition after the group's committed offset",
            ["consumergroup", "topic", "partition"],
            registry=registry,
        )
        self._lag_seen: dict[str | None, set[tuple[str, str, str]]] = {}
        #: The per-event series by topic / (topic, group), for the hot paths to look up.
        self.by_topic: dict[str, ProducerSeries] = {}
        self.by_group: dict[tuple[str, str], ConsumerSeries] = {}

    def producing(self, topic: str) -> ProducerSeries:
        """The per-event series of one topic's producers, looked up once per topic."""
        series = self.by_topic.get(topic)
        if series is None:
            series = self.by_topic[topic] = ProducerSeries(
                self.sent.labels_(topic),
                self.delivery_latency.labels_(topic),
            )
        return series

    def consuming(self, topic: str, group: str) -> ConsumerSeries:
        """The per-event series of one group on one topic, looked up once."""
        series = self.by_group.get((topic, group))
        if series is None:
            series = self.by_group[(topic, group)] = ConsumerSeries(
                self.handled.labels_(topic, group),
                self.handler_duration.labels_(topic, group),
            )
        return series

    @classmethod
    def for_registry(cls, registry: Any | None = None) -> Metrics:
        """The metrics of ``registry`` (default: prometheus-client's), created once."""
        registry = REGISTRY if registry is None else registry
        with cls._lock:
            metrics = cls._by_registry.get(registry)
            if metrics is None:
                metrics = cls._by_registry[registry] = cls(registry)
            return metrics

    def observe_statistics(self, group: str | None, stats_json: str) -> None:
        """Set the lag gauges from one librdkafka statistics document.

        Only partitions this client is assigned (``desired``) with a known lag are set; labels
        of partitions it no longer holds are removed, so a rebalance leaves no stale series.
        """
        if group is None:
            return
        try:
            stats = json.loads(stats_json)
        except ValueError:
            log.debug("unreadable librdkafka statistics ignored")
            return
        if stats.get("type") != "consumer":
            return
        seen: set[tuple[str, str, str]] = set()
        for topic, topic_stats in (stats.get("topics") or {}).items():
            for partition, p in (topic_stats.get("partitions") or {}).items():
                if partition == "-1" or not p.get("desired"):
                    continue
                lag = _lag(p)
                if lag is None:
                    continue
                labels = (group, topic, partition)
                self.lag.labels(*labels).set(lag)
                seen.add(labels)
        for labels in self._lag_seen.get(group, set()) - seen:
            self.lag.remove(*labels)
        self._lag_seen[group] = seen


def _lag(p: dict[str, Any]) -> int | None:
    """A partition's lag as ``paykafka lag`` counts it; ``None`` while unknown.

    librdkafka's ``consumer_lag`` is end minus committed; a group that never committed on the
    partition gets -1 there, but it will start at the oldest retained record
    (``auto.offset.reset=earliest``), so everything retained counts, as in ``paykafka lag``.
    """
    lag = p.get("consumer_lag", -1)
    if isinstance(lag, int) and lag >= 0:
        return lag
    low, high, committed = p.get("lo_offset", -1), p.get("hi_offset", -1), p.get("committed_offset")
    if isinstance(committed, int) and committed < 0 and low >= 0 and high >= 0:
        return int(max(0, high - low))
    return None


_served: dict[tuple[str, int], object] = {}
_serve_lock = threading.Lock()


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve the default registry on ``http://host:port/metrics`` (once per address)."""
    with _serve_lock:
        if (host, port) in _served:
            return
        _served[(host, port)] = start_http_server(port, addr=host)
        log.info("metrics served on http://%s:%d/metrics", host, port)
