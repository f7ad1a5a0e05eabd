"""Prometheus metrics for producers, trackers and processors.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms); consumer lag
is exported as ``kafka_consumergroup_lag{consumergroup,topic,partition}``, the name
kafka_exporter uses, so existing Kafka dashboards and alerts work unchanged. Lag comes from
librdkafka's own statistics (committed offset against the high watermark, per assigned
partition), not from extra admin calls per event.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, ClassVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

__all__ = ["Metrics", "serve"]

log = logging.getLogger(__name__)

# Delivery to a local broker takes milliseconds; across regions or in an outage, seconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """paykafka's metrics in one Prometheus registry (one instance per registry)."""

    _by_registry: ClassVar[dict[int, Metrics]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: Any) -> None:
        r = registry
        self.sent = Counter("paykafka_events_sent", "Events given to send()", ["topic"], registry=r)
        self.delivered = Counter(
            "paykafka_events_delivered", "Events the broker acknowledged", ["topic"], registry=r
        )
        self.failed = Counter(
            "paykafka_events_failed",
            "Events reported undelivered, by librdkafka error",
            ["topic", "error"],
            registry=r,
        )
        self.handled = Counter(
            "paykafka_events_handled",
            "Events whose handler returned",
            ["topic", "consumergroup"],
            registry=r,
        )
        self.retried = Counter(
            "paykafka_handler_retries",
            "Handler calls that raised and were retried",
            ["topic", "consumergroup"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "paykafka_events_dead_lettered",
            "Records sent to the dead-letter topic, by reason",
            ["topic", "consumergroup", "reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "paykafka_duplicates_absorbed",
            "Redelivered payments not handed to the handler again",
            ["topic", "consumergroup"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "paykafka_delivery_latency_seconds",
            "From send() to the broker's acknowledgement",
            ["topic"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.handler_duration = Histogram(
            "paykafka_handler_duration_seconds",
            "Time spent in the handler per call",
            ["topic", "consumergroup"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "paykafka_in_flight",
            "Records handed out and not yet handled",
            ["topic", "consumergroup"],
            registry=r,
        )
        self.registry_up = Gauge(
            "paykafka_registry_up", "1 when the Schema Registry last answered", registry=r
        )
        self.lag = Gauge(
            "kafka_consumergroup_lag",
            "Events on the partition after the group's committed offset",
            ["consumergroup", "topic", "partition"],
            registry=r,
        )
        self._lag_seen: dict[str | None, set[tuple[str, str, str]]] = {}

    @classmethod
    def for_registry(cls, registry: Any | None = None) -> Metrics:
        """The metrics of ``registry`` (default: prometheus-client's), created once."""
        registry = REGISTRY if registry is None else registry
        with cls._lock:
            metrics = cls._by_registry.get(id(registry))
            if metrics is None:
                metrics = cls._by_registry[id(registry)] = cls(registry)
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
