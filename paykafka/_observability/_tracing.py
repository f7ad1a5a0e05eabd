"""OpenTelemetry spans for payments, following the messaging semantic conventions for Kafka.

The sender's context rides on the record itself as a W3C ``traceparent`` (and ``tracestate``)
header, so the handler's ``process`` span is a child of the ``send`` span of whichever service
produced the payment, and also links to it as the conventions recommend for consumers. Dead
letters keep every header byte for byte, so a replayed payment still belongs to its trace.

Why the code looks the way it does: a span is made per event, and the OpenTelemetry SDK's own
work per span (ids, sampler, attribute checks, the span processor) already costs more than
producing or tracking the event (docs/observability.md has the figures). So paykafka adds as
little as it can on top: span names and the attributes every record of a topic shares are built
once; the per-record attributes are built only for a span the sampler kept (``is_recording()``),
or passed at the start when the sender's span was sampled; trace context is written and read as
W3C headers directly (one reused propagator, no global composite, no carrier dict per record);
and the ``process`` span is one plain context manager rather than the SDK's two nested
generator-based ones. A span the sampler drops costs its decision and one header, and that
header carries the decision on (``sampled`` flag unset), so a parent-based sampler downstream
drops the rest of that payment's trace too.

Trace context is always W3C Trace Context, whatever global propagator the application set:
records are read by other services, and ``traceparent`` is the one format every OpenTelemetry
SDK reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from paykafka._version import __version__

if TYPE_CHECKING:
    from paykafka._event import PaymentEvent
    from paykafka._observability._telemetry import SendToken

__all__ = ["TRACE_HEADERS", "Tracing"]

#: The headers trace context travels in (W3C Trace Context).
TRACE_HEADERS = frozenset({"traceparent", "tracestate"})

HeaderList = list[tuple[str, str | bytes | None]]
Headers = Sequence[tuple[str, str | bytes | None]]


class Record(Protocol):
    """What a span needs of a consumed record: confluent-kafka's ``Message`` has it all."""

    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> str | bytes | None: ...
    def headers(self) -> Headers | Mapping[str, str | bytes | None] | None: ...


class _RecordHeaders(Getter[Headers]):
    """Reads trace headers straight from a record's header list (no dict built per record)."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        for name, value in carrier:
            if name == key and value is not None:
                return [value.decode("ascii", "replace") if isinstance(value, bytes) else value]
        return None

    def keys(self, carrier: Headers) -> list[str]:
        return [name for name, _ in carrier]


_GETTER = _RecordHeaders()
_W3C = TraceContextTextMapPropagator()
#: A version-00 ``traceparent`` as paykafka (and every current SDK) writes it, matched on the
#: header's bytes as librdkafka hands them over; anything else goes to the SDK's propagator.
_TRACEPARENT_00 = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
#: The flags a traceparent carries in practice, parsed once.
_FLAGS = {b"%02x" % flags: TraceFlags(flags) for flags in range(4)}


def sender_context(headers: Headers | Mapping[str, str | bytes | None]) -> SpanContext | None:
    """The trace context in a record's W3C headers (the sender's span), or ``None``.

    One pass over the headers; the common case (a version-00 ``traceparent`` in bytes) is
    parsed here, everything else by the SDK's own W3C propagator, so both read alike.
    """
    if type(headers) is not list:
        headers = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    traceparent = tracestate = None
    for name, value in headers:
        if name == "traceparent":
            traceparent = value
        elif name == "tracestate":
            tracestate = value
    if traceparent is None:
        return None
    found = _TRACEPARENT_00.fullmatch(traceparent) if isinstance(traceparent, bytes) else None
    if found is None or not isinstance(tracestate, bytes | None):
        context = trace.get_current_span(_W3C.extract(headers, getter=_GETTER)).get_span_context()
        return context if context.is_valid else None
    trace_hex, span_hex, flags = found.groups()
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:  # all zeros: invalid, as the W3C propagator treats it
        return None
    return SpanContext(
        trace_id,
        span_id,
        True,
        _FLAGS.get(flags) or TraceFlags(int(flags, 16)),
        None if tracestate is None else TraceState.from_header([tracestate.decode()]),
    )


def drops_unsampled_remote(provider: Any) -> bool:
    """Whether ``provider`` is the SDK's and its sampler drops every span whose remote parent
    was not sampled: the SDK's ``ParentBased`` with its default ``remote_parent_not_sampled``
    (every sampler the SDK configures from ``OTEL_TRACES_SAMPLER``'s ``parentbased_*``).

    Then a record whose sender was sampled out gets no span of its own: the handler runs in
    the sender's (non-recording) context, which is what the SDK would hand it, without the
    SDK's ids, sampler call and link per record. Any other sampler decides every span itself.
    """
    try:
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased  # noqa: PLC0415
    except ImportError:  # the API alone, another SDK: ask it every time
        return False
    sampler = getattr(provider, "sampler", None)
    return (
        isinstance(sampler, ParentBased)
        and getattr(sampler, "_remote_parent_not_sampled", None) is ALWAYS_OFF
    )


def trace_headers(context: SpanContext) -> HeaderList:
    """``context`` as W3C Trace Context headers; none for an invalid (no-op) context.

    The same text the SDK's ``TraceContextTextMapPropagator`` writes, formatted here because
    going through the propagator costs a context object and a carrier dict per event.
    """
    if not context.is_valid:
        return []
    headers: HeaderList = [
        (
            "traceparent",
            b"00-%032x-%016x-%02x" % (context.trace_id, context.span_id, context.trace_flags),
        )
    ]
    if context.trace_state:
        headers.append(("tracestate", context.trace_state.to_header().encode()))
    return headers


class Tracing:
    """Opens and closes paykafka's spans on one tracer."""

    def __init__(self, tracer_provider: Any | None = None) -> None:
        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer("paykafka", __version__)
        self._drops_unsampled = drops_unsampled_remote(provider)
        #: Per topic (and group): the span name and the attributes every record shares.
        self._send: dict[str, tuple[str, dict[str, Any]]] = {}
        self._process: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    def start_send(self, topic: str) -> tuple[Any, HeaderList]:
        """A ``send <topic>`` PRODUCER span (a child of the caller's current span, if any),
        and the headers carrying its context. The per-event attributes are set when it ends
        (:meth:`end_send`), in one call, and only if the span is recorded."""
        shared = self._send.get(topic)
        if shared is None:
            shared = self._send[topic] = (
                f"send {topic}",
                {
                    "messaging.system": "kafka",
                    "messaging.operation.name": "send",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": topic,
                },
            )
        span = self._tracer.start_span(shared[0], kind=SpanKind.PRODUCER, attributes=shared[1])
        return span, trace_headers(span.get_span_context())

    @staticmethod
    def current_headers() -> HeaderList:
        """The current context (the span being processed) as W3C trace headers."""
        return trace_headers(trace.get_current_span().get_span_context())

    @staticmethod
    def end_send(
        token: SendToken, partition: int | None, offset: int | None, error: str | None
    ) -> None:
        """End a send's span on the broker's answer: delivered at ``partition`` / ``offset``,
        or failed with librdkafka's ``error`` name."""
        span, key, event = token.span, token.key, token.event
        if span.is_recording():
            assert event is not None  # a traced send's token holds its event
            attributes: dict[str, Any] = {"messaging.message.id": str(event.payment_id)}
            if key is not None:
                attributes["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
            if partition is not None:
                attributes["messaging.destination.partition.id"] = str(partition)
            if offset is not None:
                attributes["messaging.kafka.offset"] = offset
            if error is not None:
                attributes["error.type"] = error
            span.set_attributes(attributes)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def process(self, topic: str, group: str, event: PaymentEvent, record: Record) -> ProcessSpan:
        """A ``process <topic>`` CONSUMER span around a handler call (a context manager).

        Its parent is the context in the record's ``traceparent`` header when there is one
        (the sender's ``send`` span), else whatever is current; a record from a producer with
        no tracing still gets its span.
        """
        shared = self._process.get((topic, group))
        if shared is None:
            shared = self._process[(topic, group)] = (
                f"process {topic}",
                {
                    "messaging.system": "kafka",
                    "messaging.operation.name": "process",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": topic,
                    "messaging.consumer.group.name": group,
                },
            )
        return ProcessSpan(self._tracer, shared, event, record, self._drops_unsampled)


class ProcessSpan:
    """One handler call's ``process`` span: started, made current, ended on the way out.

    What ``tracer.start_as_current_span`` does, as one plain object instead of two nested
    generator context managers per record. An exception from the handler is recorded on the
    span (``error.type``, an exception event, an error status) and propagates unchanged.
    """

    __slots__ = ("_drops_unsampled", "_event", "_record", "_shared", "_span", "_token", "_tracer")

    def __init__(
        self,
        tracer: Any,
        shared: tuple[str, dict[str, Any]],
        event: PaymentEvent,
        record: Record,
        drops_unsampled: bool = False,
    ) -> None:
        self._tracer = tracer
        #: The sampler drops a span whose remote parent was not sampled (see
        #: :func:`drops_unsampled_remote`): such a record's handler runs in its sender's context.
        self._drops_unsampled = drops_unsampled
        self._shared = shared
        self._event = event
        self._record = record
        self._span: Any = None
        self._token: object = None

    def __enter__(self) -> Any:
        parent = None
        links: Iterable[Link] = ()
        sampled = False
        headers = self._record.headers()
        sender = sender_context(headers) if headers else None
        if sender is not None:
            sampled = sender.trace_flags.sampled
            if not sampled and self._drops_unsampled:
                self._span = span = NonRecordingSpan(sender)
                self._token = otel_context.attach(trace.set_span_in_context(span))
                return span
            parent = trace.set_span_in_context(NonRecordingSpan(sender))
            links = (Link(sender),)
        name, shared = self._shared
        if sampled:
            # The sender's span was recorded, so (with the usual parent-based sampler) this
            # one will be too: every attribute at the start, in one go.
            self._span = span = self._tracer.start_span(
                name,
                context=parent,
                kind=SpanKind.CONSUMER,
                links=links,
                attributes={**shared, **self._attributes()},
            )
        else:
            self._span = span = self._tracer.start_span(
                name, context=parent, kind=SpanKind.CONSUMER, links=links, attributes=shared
            )
            if span.is_recording():
                span.set_attributes(self._attributes())
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def _attributes(self) -> dict[str, Any]:
        """The attributes that differ from record to record."""
        record = self._record
        attributes: dict[str, Any] = {
            "messaging.destination.partition.id": str(record.partition()),
            "messaging.kafka.offset": record.offset(),
            "messaging.message.id": str(self._event.payment_id),
        }
        key = record.key()
        if key is not None:
            attributes["messaging.kafka.message.key"] = (
                key.decode("utf-8", "replace") if isinstance(key, bytes) else key
            )
        return attributes

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        otel_context.detach(self._token)  # type: ignore[arg-type]
        if exc_type is not None and span.is_recording():
            span.set_attribute("error.type", exc_type.__qualname__)
            if isinstance(exc, Exception):  # not GeneratorExit, KeyboardInterrupt: as the SDK
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{exc_type.__name__}: {exc}"))
        span.end()
