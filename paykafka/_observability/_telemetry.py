"""The one object producers and trackers report to.

Why one hub: the producer and the tracker each make a handful of calls per event (send,
delivered, handled...), and whether a call feeds a span, a counter or both is not their
business. Keeping the choice here means the hot paths carry a single ``if telemetry is not
None`` and nothing else; with every view off, :func:`telemetry_for` returns ``None``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from paykafka._errors import ConfigError

if TYPE_CHECKING:
    from paykafka._event import PaymentEvent
    from paykafka._observability._metrics import (
        ConsumerSeries,
        FastCounter,
        FastHistogram,
        Metrics,
        ProducerSeries,
    )
    from paykafka._observability._tracing import Record, Tracing
    from paykafka._settings import Settings

__all__ = ["SendToken", "Telemetry", "telemetry_for"]

log = logging.getLogger(__name__)

#: Headers as librdkafka takes and gives them.
Headers = Sequence[tuple[str, str | bytes | None]]


class Acknowledged(Protocol):
    """What the telemetry reads of a delivery report's record (confluent-kafka's Message)."""

    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def latency(self) -> float | None: ...


class SendToken:
    """What :meth:`Telemetry.sending` hands the producer to give back on the outcome.

    One per send whose span is recorded, holding the span; otherwise one per topic, shared by
    every send (nothing per event to remember: the delivery latency comes from librdkafka).
    """

    __slots__ = ("event", "key", "series", "span", "topic")

    def __init__(
        self,
        topic: str,
        event: PaymentEvent | None,
        key: bytes | None,
        span: Any,
        *,
        series: ProducerSeries | None = None,
    ) -> None:
        self.topic = topic
        #: The span's per-event attributes are taken from these when it ends.
        self.event = event
        self.key = key
        self.span = span
        #: The topic's producer metrics (looked up once per topic, not per send).
        self.series = series


class Telemetry:
    """Traces and/or metrics for producers, trackers and processors.

    ``tracing=True`` uses OpenTelemetry's global tracer provider (or ``tracer_provider``);
    ``metrics=True`` registers paykafka's metrics in prometheus-client's default registry (or
    ``registry``, for applications that keep their own). Each needs its extra installed:
    ``paykafka[otel]`` or ``paykafka[prometheus]``.
    """

    def __init__(
        self,
        *,
        tracing: bool = False,
        tracer_provider: Any | None = None,
        metrics: bool = False,
        registry: Any | None = None,
    ) -> None:
        self.tracing: Tracing | None = None
        self.metrics: Metrics | None = None
        #: The shared send token of each topic, for the sends whose span is not recorded.
        self._tokens: dict[str, SendToken] = {}
        if tracing or tracer_provider is not None:
            from paykafka._observability._tracing import Tracing  # noqa: PLC0415 - optional extra

            self.tracing = Tracing(tracer_provider)
        if metrics or registry is not None:
            from paykafka._observability._metrics import Metrics  # noqa: PLC0415 - optional extra

            self.metrics = Metrics.for_registry(registry)

    def __repr__(self) -> str:
        return f"Telemetry(tracing={self.tracing is not None}, metrics={self.metrics is not None})"

    # -- producing ---------------------------------------------------------------------------

    def sending(
        self, topic: str, event: PaymentEvent, key: bytes | None
    ) -> tuple[SendToken | None, list[tuple[str, str | bytes | None]] | None]:
        """An event is about to be queued: open its span, count it. Returns the token to give
        back with the outcome (``None`` when nothing waits for it) and the headers to put on
        the record (``None`` when tracing is off).

        Only a recorded span is kept until the acknowledgement (its partition and offset are
        set then); a span the sampler dropped ends here, so what a pending send holds on to is
        the shared token of its topic at most: nothing per event for the garbage collector to
        walk while tens of thousands of sends await their acknowledgement.
        """
        tracing = self.tracing
        headers = None
        if tracing is not None:
            span, headers = tracing.start_send(topic)
            if span.is_recording():
                series = None if self.metrics is None else self._producing(topic)
                if series is not None:
                    series.sent.inc()
                return SendToken(topic, event, key, span, series=series), headers
        if self.metrics is None:
            return None, headers
        token = self._tokens.get(topic) or self._topic_token(topic)
        token.series.sent.inc()  # type: ignore[union-attr]  # a topic token has its series
        return token, headers

    def _topic_token(self, topic: str) -> SendToken:
        """The token every unrecorded send of ``topic`` shares (metrics on)."""
        token = self._tokens[topic] = SendToken(
            topic, None, None, None, series=self._producing(topic)
        )
        return token

    def _producing(self, topic: str) -> ProducerSeries:
        assert self.metrics is not None
        return self.metrics.producing(topic)

    def delivered(self, token: SendToken, record: Acknowledged) -> None:
        """The broker acknowledged the event: ``record`` is its ``Message`` from the delivery
        report (the latency is librdkafka's own, from produce() to the acknowledgement)."""
        series = token.series
        if series is not None:  # the latency histogram also counts the delivery
            latency = record.latency()
            series.latency.observe(0.0 if latency is None else latency)
        if token.span is not None and self.tracing is not None:
            self.tracing.end_send(token, record.partition(), record.offset(), None)

    def failed(self, token: SendToken, code: str) -> None:
        """The event was not delivered (``code`` is librdkafka's error name)."""
        if self.metrics is not None:
            self.metrics.failed.labels_(token.topic, code).inc()
        if token.span is not None and self.tracing is not None:
            self.tracing.end_send(token, None, None, code)

    # -- handling ----------------------------------------------------------------------------

    def handling(
        self, topic: str, group: str, event: PaymentEvent, record: Record, counted: bool = False
    ) -> AbstractContextManager[object]:
        """Around one handler call: a consumer span continuing the sender's trace, a timer.

        ``record`` is the consumed record (confluent-kafka's ``Message``); the span reads its
        headers, partition, offset and key only when tracing is on. With ``counted``, a call
        that returns also counts as handled (one call per event instead of two, for callers
        whose "handled" means "the handler returned"). An exception from the handler is
        recorded (``error.type``) and re-raised unchanged.
        """
        span = None
        if self.tracing is not None:
            span = self.tracing.process(topic, group, event, record)
        if self.metrics is None:
            assert span is not None  # a Telemetry has tracing, metrics or both
            return span
        series = self.metrics.consuming(topic, group)
        return _Handling(span, series.duration, series.handled if counted else None)

    def call(
        self,
        handler: Callable[[PaymentEvent], object],
        event: PaymentEvent,
        topic: str,
        group: str,
        record: Record,
    ) -> None:
        """``handler(event)`` observed as :meth:`handling` with ``counted`` does it.

        The trackers' hot path: with metrics alone it is a timer, a histogram cell and a
        counter cell, without a context-manager object per event.
        """
        metrics = self.metrics
        if self.tracing is not None or metrics is None:
            with self.handling(topic, group, event, record, counted=True):
                handler(event)
            return
        series = metrics.by_group.get((topic, group)) or metrics.consuming(topic, group)
        started = perf_counter()
        try:
            handler(event)
        except BaseException:
            series.duration.observe(perf_counter() - started)
            raise
        series.handled_in(perf_counter() - started)

    def timer(self, topic: str, group: str) -> ConsumerSeries | None:
        """With metrics alone (no tracing), the series a tracker's hot loop times its handler
        calls into directly (:meth:`ConsumerSeries.handled_in`, and ``duration`` for calls
        that raise); ``None`` otherwise, when :meth:`call` is the way. The sequential tracker
        inlines what :meth:`call` does for metrics: measured, going through :meth:`call`
        instead cost the metrics 5-9% of throughput against 1-2% inlined."""
        if self.tracing is not None or self.metrics is None:
            return None
        return self.metrics.consuming(topic, group)

    def context_headers(self) -> list[tuple[str, str | bytes | None]] | None:
        """The current span's context as record headers (for records written inside a
        handler, so the next consumer continues the same trace); ``None`` without tracing."""
        if self.tracing is None:
            return None
        return self.tracing.current_headers() or None

    def handled(self, topic: str, group: str) -> None:
        if self.metrics is not None:
            self.metrics.consuming(topic, group).handled.inc()

    def retried(self, topic: str, group: str) -> None:
        if self.metrics is not None:
            self.metrics.retried.labels_(topic, group).inc()

    def dead_lettered(self, topic: str, group: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.dead_lettered.labels_(topic, group, reason).inc()

    def duplicate(self, topic: str, group: str) -> None:
        if self.metrics is not None:
            self.metrics.duplicates.labels_(topic, group).inc()

    def in_flight(self, topic: str, group: str, count: int) -> None:
        if self.metrics is not None:
            self.metrics.in_flight.labels(topic, group).set(count)

    def registry_reachable(self, reachable: bool) -> None:
        if self.metrics is not None:
            self.metrics.registry_up.set(1 if reachable else 0)

    def statistics(self, group: str | None, stats_json: str) -> None:
        """librdkafka's statistics JSON (``stats_cb``): broker-side figures such as lag."""
        if self.metrics is not None:
            self.metrics.observe_statistics(group, stats_json)

    @property
    def wants_statistics(self) -> bool:
        """Whether clients should ask librdkafka for statistics (metrics only)."""
        return self.metrics is not None


class _Handling:
    """One handler call with metrics on: its duration (and, if asked, its success counted),
    around its span when tracing is on too (a plain class: cheaper than a generator)."""

    __slots__ = ("_duration", "_handled", "_span", "_started")

    def __init__(
        self,
        span: AbstractContextManager[Any] | None,
        duration: FastHistogram,
        handled: FastCounter | None,
    ) -> None:
        self._span = span
        self._duration = duration
        self._handled = handled
        self._started = 0.0

    def __enter__(self) -> object:
        if self._span is not None:
            self._span.__enter__()
        self._started = perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._duration.observe(perf_counter() - self._started)
        if exc_type is None and self._handled is not None:
            self._handled.inc()
        if self._span is not None:
            self._span.__exit__(exc_type, exc, tb)


#: Statistics interval asked of librdkafka when metrics are on: lag is a gauge, scraped
#: every 15-60 s by Prometheus, so a few seconds is fresh enough and cheap.
STATISTICS_INTERVAL_MS = 5000


def telemetry_for(settings: Settings, given: Telemetry | None = None) -> Telemetry | None:
    """The telemetry a client built from ``settings`` should use; ``None`` when all is off.

    ``given`` wins. Otherwise ``PAYKAFKA_TRACING`` / ``PAYKAFKA_METRICS`` decide, and
    ``PAYKAFKA_METRICS_PORT`` also starts the HTTP endpoint (once per process and port).
    """
    if given is not None:
        return given
    metrics = settings.metrics or settings.metrics_port is not None
    if not (settings.tracing or metrics):
        return None
    try:
        telemetry = Telemetry(tracing=settings.tracing, metrics=metrics)
    except ImportError as exc:
        extra = "otel" if "opentelemetry" in str(exc) else "prometheus"
        raise ConfigError(
            f"{exc}: tracing needs `pip install 'paykafka[otel]'` and metrics "
            f"`pip install 'paykafka[prometheus]'` (missing here: paykafka[{extra}])"
        ) from None
    if settings.metrics_port is not None:
        from paykafka._observability._metrics import serve  # noqa: PLC0415 - optional extra

        serve(settings.metrics_port, settings.metrics_host)
    return telemetry
