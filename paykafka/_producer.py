"""``PaymentProducer``: typed events in, Confluent-framed Avro on the ``payments`` topic out.

One event's path from ``send()`` to the wire is all in this file: validate (already done by
``PaymentEvent``), serialize with the registered schema id, produce keyed by user, and resolve
the event's :class:`DeliveryFuture` from librdkafka's delivery report.

Nothing is dropped silently. A failed delivery is reported through its future or callback; a
failure nobody looked at is raised by the next :meth:`PaymentProducer.flush` (and so by
``__exit__``), together with anything still queued when the flush deadline passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import attrs
from confluent_kafka import KafkaException, Producer

from paykafka._admin import ensure_topic
from paykafka._errors import BrokerUnavailableError, DeliveryError, PayKafkaError
from paykafka._event import PaymentEvent
from paykafka._governance import SchemaGate
from paykafka._observability import Telemetry, telemetry_for
from paykafka._observability._telemetry import SendToken
from paykafka._registry import RegistryClient
from paykafka._schema import PaymentSchema, load_schema
from paykafka._serde import EventSerializer
from paykafka._settings import Settings, client_kafka_options

__all__ = ["Delivery", "DeliveryFuture", "PaymentProducer", "key_by_user"]

log = logging.getLogger(__name__)

# Seconds between the delivery-report polls send() makes on its own.
_POLL_INTERVAL = 0.001
# Seconds start() waits for the cluster when checking the topic exists.
_ENSURE_TOPIC_TIMEOUT = 5.0


def key_by_user(event: PaymentEvent) -> str:
    """The default message key: one user's payments land on one partition, in order."""
    return event.user


@attrs.frozen
class Delivery:
    """Where the broker stored an event."""

    event: PaymentEvent
    topic: str
    partition: int
    offset: int


class DeliveryFuture:
    """The outcome of one :meth:`PaymentProducer.send`.

    Delivery reports arrive while the producer is polled, so :meth:`result` polls the
    producer itself instead of waiting on another thread.

    One is made per event on the hot path, so it is kept small: the future is itself
    librdkafka's delivery callback, the callback list exists only once someone adds one, and
    the :class:`Delivery` is built when asked for, from the (partition, offset) the report gave.
    """

    __slots__ = ("_callbacks", "_error", "_observed", "_position", "_producer", "_token", "event")

    def __init__(self, event: PaymentEvent, producer: PaymentProducer) -> None:
        self.event = event
        self._producer = producer
        self._position: tuple[int, int] | None = None
        self._error: DeliveryError | None = None
        self._callbacks: list[Callable[[DeliveryFuture], None]] | None = None
        self._observed = False
        #: Telemetry's handle on this send (span, start time); ``None`` when telemetry is off.
        self._token: SendToken | None = None

    def __call__(self, err: Any, msg: Any) -> None:
        """librdkafka's delivery report for this event (not for callers)."""
        self._producer._on_delivery(self, err, msg)

    def done(self) -> bool:
        """Whether the broker has answered (delivered or failed)."""
        return self._position is not None or self._error is not None

    def result(self, timeout: float | None = None) -> Delivery:
        """Wait for the delivery; raises :class:`DeliveryError` if it failed or timed out."""
        self._wait(timeout)
        self._observed = True
        if self._error is not None:
            raise self._error
        if self._position is None:
            raise DeliveryError(
                f"payment {self.event.payment_id} not delivered within {timeout}s; it is still "
                "queued and will be retried until message.timeout.ms",
                [(self.event, "still queued")],
                retriable=True,
            )
        partition, offset = self._position
        return Delivery(self.event, self._producer.settings.topic, partition, offset)

    def exception(self, timeout: float | None = None) -> DeliveryError | None:
        """The delivery error, or ``None`` once delivered."""
        try:
            self.result(timeout)
        except DeliveryError as exc:
            return exc
        return None

    def add_done_callback(self, fn: Callable[[DeliveryFuture], None]) -> None:
        """Call ``fn(future)`` once the outcome is known (at once if it already is)."""
        self._observed = True
        if self.done():
            fn(self)
        elif self._callbacks is None:
            self._callbacks = [fn]
        else:
            self._callbacks.append(fn)

    def _wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return
            self._producer._poll(left)

    def _settle(self, position: tuple[int, int] | None, error: DeliveryError | None) -> None:
        self._position, self._error = position, error
        callbacks, self._callbacks = self._callbacks, None
        for fn in callbacks or ():
            try:
                fn(self)
            except Exception:
                log.exception("delivery callback for payment %s raised", self.event.payment_id)


class PaymentProducer:
    """Sends :class:`PaymentEvent`s to the payments topic; use it as a context manager.

    On start it makes sure the schema may be used (registering it when ``auto_register``;
    otherwise only an already registered version is accepted) and caches its id. ``key``
    picks the message key (the user, by default, which keeps each user's payments in order).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        registry: RegistryClient | None = None,
        schema: PaymentSchema | None = None,
        key: Callable[[PaymentEvent], str] = key_by_user,
        flush_timeout: float = 30.0,
        queue_timeout: float = 60.0,
        kafka_options: Mapping[str, Any] | None = None,
        kafka_overrides: dict[str, Any] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self._telemetry = telemetry
        self._registry = registry
        self._owns_registry = registry is None
        self._schema = schema
        self._key = key
        self._flush_timeout = flush_timeout
        self._queue_timeout = queue_timeout
        self._overrides = client_kafka_options(kafka_options, kafka_overrides, "PaymentProducer")
        self._producer: Producer | None = None
        self._serialize: EventSerializer | None = None
        self._pending: dict[int, DeliveryFuture] = {}
        self._unreported: list[DeliveryFuture] = []
        self._last_error: str | None = None
        self._next_poll = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Check and register the schema, create the topic if missing (``create_topic``),
        then connect; idempotent."""
        if self._producer is not None:
            return self
        schema = self._schema or load_schema(self.settings.schema_path)
        self._schema = schema
        if self._registry is None:
            self._registry = RegistryClient(self.settings)
        schema_id = SchemaGate(self._registry, self.settings).admit(schema)
        self._serialize = EventSerializer(schema, schema_id)
        if self.settings.create_topic:
            self._ensure_topic()
        self._telemetry = telemetry_for(self.settings, self._telemetry)
        conf = self.settings.producer_config(error_cb=self._on_error, **self._overrides)
        self._producer = Producer(conf)
        log.info(
            "producer ready: topic %s, subject %s, schema id %d",
            self.settings.topic,
            self.settings.subject,
            schema_id,
            extra={"topic": self.settings.topic, "schema_id": schema_id},
        )
        return self

    @property
    def schema_id(self) -> int:
        """The registry id events are framed with (after :meth:`start`)."""
        return self._started()[1].schema_id

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except DeliveryError as undelivered:
            # The body's own exception wins; the undelivered events must still be seen.
            log.error("%s", undelivered)  # noqa: TRY400 - no traceback: the body's error is raised
            exc.add_note(str(undelivered))

    def close(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (default ``flush_timeout``), then release the client.

        Raises :class:`DeliveryError` listing every event not delivered.
        """
        if self._producer is None:
            return
        try:
            self.flush(self._flush_timeout if timeout is None else timeout)
        finally:
            self._producer = None
            if self._owns_registry and self._registry is not None:
                self._registry.close()
                self._registry = None

    # -- sending -----------------------------------------------------------------------------

    def send(
        self,
        event: PaymentEvent,
        *,
        on_delivery: Callable[[DeliveryFuture], None] | None = None,
    ) -> DeliveryFuture:
        """Queue ``event`` for delivery and return at once.

        When librdkafka's local queue is full this waits (serving delivery reports) up to
        ``queue_timeout`` seconds: back-pressure, never a silent drop.
        """
        producer, serialize = self._started()
        if not isinstance(event, PaymentEvent):
            raise TypeError(f"send() takes a PaymentEvent, got {type(event).__name__}")
        value = serialize(event)
        future = DeliveryFuture(event, self)
        if on_delivery is not None:
            future.add_done_callback(on_delivery)
        key = self._key(event).encode()
        telemetry = self._telemetry
        headers: list[tuple[str, str | bytes | None]] | None = None
        if telemetry is not None:
            future._token = token = telemetry.sending(self.settings.topic, event, key)
            headers = token.headers or None
        deadline: float | None = None
        while True:
            try:
                if headers is None:
                    producer.produce(self.settings.topic, value, key, on_delivery=future)
                else:
                    producer.produce(
                        self.settings.topic, value, key, on_delivery=future, headers=headers
                    )
                break
            except BufferError:
                now = time.monotonic()
                deadline = deadline or now + self._queue_timeout
                if now >= deadline:
                    reason = (
                        f"the local queue stayed full for {self._queue_timeout}s: the broker at "
                        f"{self.settings.bootstrap_servers} is not taking events "
                        f"({self._last_error or 'no error reported'})"
                    )
                    self._telemetry_failed(future, "_QUEUE_FULL")
                    raise DeliveryError(
                        f"{reason}; payment {event.payment_id} was not queued, send it again",
                        [(event, reason)],
                        code="_QUEUE_FULL",
                        retriable=True,
                    ) from None
                producer.poll(0.05)
            except KafkaException as exc:
                err = exc.args[0]
                self._telemetry_failed(future, err.name())
                raise DeliveryError(
                    f"cannot queue payment {event.payment_id}: {err.str()}",
                    [(event, err.str())],
                    code=err.name(),
                    retriable=err.retriable(),
                ) from None
        # Registered only once queued: an event send() raised for is the caller's, not flush's.
        self._pending[id(future)] = future
        # Serving delivery reports costs about as much as a produce; once a millisecond keeps
        # callbacks timely and the report queue short without paying it on every send.
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + _POLL_INTERVAL
            producer.poll(0)
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued event is delivered or ``timeout`` passes.

        Raises :class:`DeliveryError` with every failed delivery nobody observed and every
        event still queued at the deadline.
        """
        producer = self._started()[0]
        left = producer.flush(-1 if timeout is None else timeout)
        undelivered = [(f.event, str(f._error)) for f in self._unreported if not f._observed]
        self._unreported.clear()
        if left:
            reason = f"still queued at the flush deadline ({self._last_error or 'no error seen'})"
            undelivered.extend((f.event, reason) for f in self._pending.values())
        if undelivered:
            raise DeliveryError(
                f"{len(undelivered)} payment event(s) not delivered to "
                f"{self.settings.topic}: {undelivered[0][1]}",
                undelivered,
                retriable=bool(left),
            )

    @property
    def in_flight(self) -> int:
        """Events queued but not yet acknowledged by the broker."""
        return len(self._producer) if self._producer is not None else 0

    # -- internals ---------------------------------------------------------------------------

    def _started(self) -> tuple[Producer, EventSerializer]:
        if self._producer is None or self._serialize is None:
            raise PayKafkaError(
                "the producer is not started: use `with PaymentProducer() as producer:` "
                "or call start() first"
            )
        return self._producer, self._serialize

    def _ensure_topic(self) -> None:
        try:
            ensure_topic(self.settings, timeout=_ENSURE_TOPIC_TIMEOUT)
        except BrokerUnavailableError as exc:
            # Not fatal: events queue in librdkafka and, if no broker comes, are reported
            # undelivered by flush(), so nothing is lost by starting anyway.
            log.warning("cannot check that topic %s exists: %s", self.settings.topic, exc)

    def _poll(self, timeout: float) -> None:
        if self._producer is not None:
            self._producer.poll(timeout)

    def _on_delivery(self, future: DeliveryFuture, err: Any, msg: Any) -> None:
        self._pending.pop(id(future), None)
        token = future._token
        if err is None:
            if token is not None and self._telemetry is not None:
                self._telemetry.delivered(token, msg.partition(), msg.offset())
            future._settle((msg.partition(), msg.offset()), None)
            return
        self._telemetry_failed(future, err.name())
        error = DeliveryError(
            f"payment {future.event.payment_id} was not delivered to {self.settings.topic}: "
            f"{err.str()}",
            [(future.event, err.str())],
            code=err.name(),
            retriable=err.retriable(),
        )
        log.warning("%s", error, extra={"payment_id": str(future.event.payment_id)})
        future._settle(None, error)
        self._unreported.append(future)

    def _telemetry_failed(self, future: DeliveryFuture, code: str) -> None:
        if future._token is not None and self._telemetry is not None:
            self._telemetry.failed(future._token, code)

    def _on_error(self, err: Any) -> None:
        self._last_error = err.str()
        if err.fatal():
            log.error("fatal producer error: %s", err.str())
        else:
            log.warning("producer: %s", err.str())
