"""OpenTelemetry spans for payments, following the messaging semantic conventions for Kafka.

The sender's context rides on the record itself as a W3C ``traceparent`` (and ``tracestate``)
header, so the handler's ``process`` span is a child of the ``send`` span of whichever service
produced the payment, and also links to it as the conventions recommend for consumers. Dead
letters keep every header byte for byte, so a replayed payment still belongs to its trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from paykafka._version import __version__

if TYPE_CHECKING:
    from paykafka._event import PaymentEvent

__all__ = ["TRACE_HEADERS", "Tracing"]

#: The headers trace context travels in (W3C Trace Context).
TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


class Tracing:
    """Opens and closes paykafka's spans on one tracer."""

    def __init__(self, tracer_provider: Any | None = None) -> None:
        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer("paykafka", __version__)

    def start_send(
        self, topic: str, event: PaymentEvent, key: bytes | None
    ) -> tuple[Any, list[tuple[str, str | bytes | None]]]:
        """A ``send <topic>`` PRODUCER span (a child of the caller's current span, if any),
        and the headers carrying its context."""
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.message.id": str(event.payment_id),
        }
        if key is not None:
            attributes["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
        span = self._tracer.start_span(
            f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return span, [(name, value.encode()) for name, value in carrier.items()]

    @staticmethod
    def current_headers() -> list[tuple[str, str | bytes | None]]:
        """The current context (the span being processed) as W3C trace headers."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return [(name, value.encode()) for name, value in carrier.items()]

    @staticmethod
    def end_send(span: Any, partition: int | None, offset: int | None, error: str | None) -> None:
        if partition is not None:
            span.set_attribute("messaging.destination.partition.id", str(partition))
        if offset is not None:
            span.set_attribute("messaging.kafka.offset", offset)
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    @contextlib.contextmanager
    def process(
        self,
        *,
        topic: str,
        group: str,
        partition: int,
        offset: int,
        key: str | None,
        event: PaymentEvent,
        headers: Sequence[tuple[str, str | bytes | None]] | None,
    ) -> Iterator[Any]:
        """A ``process <topic>`` CONSUMER span around a handler call.

        Its parent is the context in the record's ``traceparent`` header when there is one
        (the sender's ``send`` span), else whatever is current; a record from a producer with
        no tracing still gets its span.
        """
        carrier = {
            name: value.decode("ascii", "replace") if isinstance(value, bytes) else value
            for name, value in headers or ()
            if name in TRACE_HEADERS and value is not None
        }
        parent = propagate.extract(carrier) if carrier else None
        links: list[Link] = []
        if parent is not None:
            sender = trace.get_current_span(parent).get_span_context()
            if sender.is_valid:
                links.append(Link(sender))
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.consumer.group.name": group,
            "messaging.kafka.offset": offset,
            "messaging.message.id": str(event.payment_id),
        }
        if key is not None:
            attributes["messaging.kafka.message.key"] = key
        with self._tracer.start_as_current_span(
            f"process {topic}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                raise
