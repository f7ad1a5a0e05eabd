"""``PaymentProducer``: typed events in, Confluent-framed Avro on the ``payments`` topic out.

One event's path from ``send()`` to the wire is all in this file: validate (already done by
``PaymentEvent``), serialize with the registered schema id, produce keyed by user, and resolve
the event's :class:`DeliveryFuture` from librdkafka's delivery report.

Nothing is dropped silently. A failed delivery is reported through its future or callback; a
failure nobody looked at is raised by the next :meth:`PaymentProducer.flush` (and so by
``__exit__``), together with anything still queued when the flush deadline passed.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import attrs
from confluent_kafka import KafkaException, Producer

from paykafka._admin import ensure_topic
from paykafka._errors import (
    AuthorizationError,
    BrokerUnavailableError,
    DeliveryError,
    PayKafkaError,
)
from paykafka._event import PaymentEvent
from paykafka._governance import SchemaGate
from paykafka._observability import Telemetry, telemetry_for
from paykafka._observability._telemetry import SendToken
from paykafka._registry import RegistryClient
from paykafka._schema import PaymentSchema, load_schema, require_agreement
from paykafka._security import SecurityWatch, client_creation_error
from paykafka._serde import EventSerializer
from paykafka._settings import Settings, client_kafka_options

__all__ = ["Delivery", "DeliveryFuture", "PaymentProducer", "key_by_user"]

log = logging.getLogger(__name__)

# Seconds between the delivery-report polls send() makes on its own.
_POLL_INTERVAL = 0.001
# Seconds flush() waits at a time before checking whether the cluster refused us.
_FLUSH_SLICE = 0.25
# Seconds start() waits for the cluster when checking the topic exists.
_ENSURE_TOPIC_TIMEOUT = 5.0
# Delivery reports one send() takes in at most: after an outage tens of thousands arrive at
# once, and serving them all in one call would stall that send() for most of a second.
_REPORTS_PER_SEND = 256
# Distinct failure reasons a flush summary or a DeliveryError message shows.
_REASONS_SHOWN = 3
# Codes of a broker that was unreachable or too slow: the event itself was fine.
_OUTAGE_CODES = frozenset(
    {
        "_MSG_TIMED_OUT",
        "_TIMED_OUT",
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_RESOLVE",
        "_DESTROY",
        "_PURGE_QUEUE",
        "_PURGE_INFLIGHT",
        "_QUEUE_FULL",
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "BROKER_NOT_AVAILABLE",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    }
)


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
    the :class:`Delivery` and :class:`DeliveryError` are built when asked for, from what the
    report gave (a backlog of thousands of failed reports then costs little to take in).

    A failure counts as seen only once a caller received it: :meth:`result` raised it or
    :meth:`exception` returned it, outside a done-callback that then raised. Every other
    failure is raised again by the producer's next ``flush()`` / ``close()``.
    """

    __slots__ = (
        "_callbacks",
        "_error",
        "_failure",
        "_observed",
        "_position",
        "_producer",
        "_token",
        "_waiters",
        "event",
    )

    def __init__(self, event: PaymentEvent, producer: _ProducerBase) -> None:
        self.event = event
        self._producer = producer
        self._position: tuple[int, int] | None = None
        # librdkafka's error object, or a DeliveryError made here; _error is built from it.
        self._failure: Any = None
        self._error: DeliveryError | None = None
        self._callbacks: list[Callable[[DeliveryFuture], object]] | None = None
        self._observed = False
        # Only the async face's DeliveryTask uses it; here so it needs no __init__ of its own.
        self._waiters: list[Any] | None = None
        #: Telemetry's handle on this send (span, start time); ``None`` when telemetry is off.
        self._token: SendToken | None = None

    def __call__(self, err: Any, msg: Any) -> None:
        """librdkafka's delivery report for this event (not for callers)."""
        self._producer._on_delivery(self, err, msg)

    def done(self) -> bool:
        """Whether the broker has answered (delivered or failed)."""
        return self._position is not None or self._failure is not None

    def result(self, timeout: float | None = None) -> Delivery:
        """Wait for the delivery; raises :class:`DeliveryError` if it failed or timed out.

        A timeout does not settle anything: the event stays queued, and a later failure is
        still raised by ``flush()`` / ``close()``.
        """
        self._wait(timeout)
        error = self._delivery_error()
        if error is not None:
            self._observed = True
            raise error
        if self._position is None:
            raise DeliveryError(
                f"payment {self.event.payment_id} not delivered within {timeout}s; it is still "
                "queued and will be retried until message.timeout.ms",
                [(self.event, "still queued")],
                code="_TIMED_OUT",
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

    def add_done_callback(self, fn: Callable[[DeliveryFuture], object]) -> None:
        """Call ``fn(future)`` once the outcome is known (at once if it already is).

        Adding a callback does not count as seeing a failure; ``fn`` sees it by calling
        :meth:`result` or :meth:`exception` and returning normally.
        """
        if self.done():
            self._call(fn)
        elif self._callbacks is None:
            self._callbacks = [fn]
        else:
            self._callbacks.append(fn)

    def _delivery_error(self) -> DeliveryError | None:
        if self._error is None and self._failure is not None:
            self._error = self._producer._delivery_error(self.event, self._failure)
        return self._error

    def _failed_error(self) -> DeliveryError:
        """The error of a future known to have failed."""
        error = self._delivery_error()
        assert error is not None  # only called for failed futures
        return error

    def _wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if self._producer._poll(max(left, 0.0)):
                if left <= 0:
                    return  # result(0) still takes in the reports already there
            else:
                # Closed with no report for this event: nothing can settle it any more.
                self._failure = DeliveryError(
                    f"payment {self.event.payment_id} was never acknowledged: the producer was "
                    "closed first (its close() reported it undelivered); send it again",
                    [(self.event, "the producer was closed before the broker answered")],
                    code="_DESTROY",
                    retriable=True,
                )

    def _settle(self, position: tuple[int, int] | None, failure: Any) -> None:
        self._position, self._failure = position, failure
        callbacks, self._callbacks = self._callbacks, None
        for fn in callbacks or ():
            self._call(fn)

    def _call(self, fn: Callable[[DeliveryFuture], object]) -> None:
        try:
            fn(self)
        except Exception as exc:  # noqa: BLE001 - a caller's callback may raise anything
            # The callback did not deal with the outcome: a failure stays unseen, so flush()
            # and close() still raise it, even if the callback had called result().
            self._observed = False
            if exc is not self._error:  # re-raising the delivery's own error is no news
                self._producer._callback_failed(self, exc)


class _ProducerBase:
    """What both producer faces share, none of it waiting: settings, schema admission, the
    serializer, the key, the librdkafka config, the bookkeeping of queued and failed events,
    the delivery callback and every error's wording.

    :class:`PaymentProducer` and :class:`paykafka.aio.AsyncPaymentProducer` only differ in how
    they wait: the sync one polls librdkafka on the caller's thread, the async one on the event
    loop, never waiting (as httpx's ``Client`` and ``AsyncClient`` share ``BaseClient``).
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
        self._overrides = client_kafka_options(kafka_options, kafka_overrides, type(self).__name__)
        # Refused here, not at start(): a protected key is a bug in the caller's code.
        self.settings.producer_config(self._overrides)
        self._producer: Producer | None = None
        self._serialize: EventSerializer | None = None
        self._pending: dict[int, DeliveryFuture] = {}
        # Failed futures since the last flush (seen by a caller or not): flush() sums them up.
        self._failed: list[DeliveryFuture] = []
        self._callback_errors = 0
        self._last_error: str | None = None
        self._errors_logged: set[str] = set()
        self._watch = SecurityWatch(self.settings)
        self._refusal: AuthorizationError | None = None
        # Delivery reports send() may still take in during its poll; None outside send().
        self._report_budget: int | None = None
        self._init_face()

    def _init_face(self) -> None:
        """A face's own state (how it waits), set up at the end of ``__init__``."""

    @property
    def schema_id(self) -> int:
        """The registry id events are framed with (after :meth:`start`)."""
        return self._started()[1].schema_id

    @property
    def callback_errors(self) -> int:
        """How many ``on_delivery`` / done callbacks raised so far (each is logged)."""
        return self._callback_errors

    def _connect(self) -> Producer:
        """Admit the schema (registering it when ``auto_register``), create the topic if
        missing (``create_topic``), then make the librdkafka producer. Blocks on the registry
        and the admin API: the async face runs it in a worker thread."""
        conf = self.settings.producer_config(self._overrides, error_cb=self._on_error)
        self._telemetry = telemetry_for(self.settings, self._telemetry)
        schema = self._schema or load_schema(self.settings.schema_path)
        require_agreement(schema)
        self._schema = schema
        if self._registry is None:
            self._registry = RegistryClient(self.settings)
        schema_id = SchemaGate(self._registry, self.settings).admit(schema)
        self._serialize = EventSerializer(schema, schema_id)
        if self.settings.create_topic:
            self._ensure_topic()
        try:
            producer = Producer(conf)
        except KafkaException as exc:
            raise client_creation_error(self.settings, exc) from None
        log.info(
            "producer ready: topic %s, subject %s, schema id %d",
            self.settings.topic,
            self.settings.subject,
            schema_id,
            extra={"topic": self.settings.topic, "schema_id": schema_id},
        )
        return producer

    def _started(self) -> tuple[Producer, EventSerializer]:
        if self._producer is None or self._serialize is None:
            raise PayKafkaError(
                f"the producer is not started: use `with {type(self).__name__}() as producer:` "
                "(`async with` for the async one) or call start() first"
            )
        return self._producer, self._serialize

    def _ensure_topic(self) -> None:
        try:
            ensure_topic(self.settings, timeout=_ENSURE_TOPIC_TIMEOUT)
        except BrokerUnavailableError as exc:
            # Not fatal: events queue in librdkafka and, if no broker comes, are reported
            # undelivered by flush(), so nothing is lost by starting anyway.
            log.warning("cannot check that topic %s exists: %s", self.settings.topic, exc)

    def _encode(self, event: PaymentEvent, serialize: EventSerializer) -> tuple[bytes, bytes]:
        """The record's value and key; raises before anything is queued."""
        if self._watch.error is not None:  # refused once, refused for every event
            raise self._watch.error
        if not isinstance(event, PaymentEvent):
            raise TypeError(f"send() takes a PaymentEvent, got {type(event).__name__}")
        return serialize(event), self._key(event).encode()

    def _trace(
        self, future: DeliveryFuture, key: bytes
    ) -> list[tuple[str, str | bytes | None]] | None:
        """Telemetry's view of a send about to be queued: the headers to put on the record
        (the trace context), or ``None`` when it adds none."""
        telemetry = self._telemetry
        assert telemetry is not None  # the callers ask only with telemetry on
        future._token, headers = telemetry.sending(self.settings.topic, future.event, key)
        return headers or None

    def _telemetry_failed(self, future: DeliveryFuture, code: str) -> None:
        """A send that failed (before or after queueing): its span and counters end here."""
        if future._token is not None and self._telemetry is not None:
            self._telemetry.failed(future._token, code)

    def _queue_full_error(self, event: PaymentEvent) -> DeliveryError:
        reason = (
            f"the local queue stayed full for {self._queue_timeout}s: the broker at "
            f"{self.settings.bootstrap_servers} is not taking events "
            f"({self._last_error or 'no error reported'})"
        )
        return DeliveryError(
            f"{reason}; payment {event.payment_id} was not queued, send it again",
            [(event, reason)],
            code="_QUEUE_FULL",
            retriable=True,
        )

    @staticmethod
    def _refused_error(event: PaymentEvent, exc: KafkaException) -> DeliveryError:
        err = exc.args[0]
        return DeliveryError(
            f"cannot queue payment {event.payment_id}: {err.str()}",
            [(event, err.str())],
            code=err.name(),
            retriable=_retriable(err),
        )

    def _poll(self, timeout: float) -> bool:
        """Serve delivery reports for up to ``timeout`` (what a waiting DeliveryFuture calls)."""
        raise NotImplementedError

    def _refused(self) -> bool:
        """The cluster refused us (login, TLS, ACL): waiting longer for deliveries is pointless."""
        return self._watch.error is not None or self._refusal is not None

    def _release(self) -> None:
        self._producer = None
        if self._owns_registry and self._registry is not None:
            self._registry.close()
            self._registry = None

    def _finish_flush(self, producer: Producer, left: int, *, close: bool) -> None:
        """After a flush's wait, with ``left`` events still queued: report. Raises
        :class:`DeliveryError` (or the cluster's refusal) for every failure nobody saw and
        every event still queued; on ``close`` those are purged from librdkafka first."""
        if left and close:
            # Nothing will serve these reports after close(): take the events back from
            # librdkafka so each future fails now, with its own reason, and none is sent later.
            producer.purge()
            producer.flush(0)
        failed, self._failed = self._failed, []
        unseen = [f for f in failed if not f._observed]
        queued = list(self._pending.values())
        entries = [(f.event, f._failed_error()) for f in unseen]
        reason = f"still queued at the flush deadline ({self._last_error or 'no error seen'})"
        still = DeliveryError(reason, [], code="_TIMED_OUT", retriable=True)
        entries += [(f.event, still) for f in queued]
        self._errors_logged.clear()
        if failed or queued:
            log.warning(
                "%d of the payment events sent to %s since the last flush failed, %d are "
                "still queued (%d raised by this %s): %s",
                len(failed),
                self.settings.topic,
                len(queued),
                len(entries),
                "close" if close else "flush",
                _reasons([f._failed_error() for f in failed] + [still] * len(queued)),
                extra={"failed": len(failed), "queued": len(queued)},
            )
        refused = self._refusal
        if refused is not None:
            self._refusal = None
            raise AuthorizationError(
                f"{refused}; {len(entries)} payment event(s) not delivered",
                resource_type=refused.resource_type,
                resource=refused.resource,
                operation=refused.operation,
                code=refused.code,
                undelivered=[(event, str(refused)) for event, _ in entries],
            )
        if left and self._watch.error is not None:
            raise self._watch.error
        if not entries:
            return
        errors = [error for _, error in entries]
        codes = collections.Counter(e.code for e in errors)
        raise DeliveryError(
            f"{len(entries)} payment event(s) not delivered to {self.settings.topic}: "
            f"{_reasons(errors)}",
            [(event, _reason(error)) for event, error in entries],
            code=codes.most_common(1)[0][0] if codes else None,
            retriable=all(e.retriable for e in errors),
        )

    def _on_delivery(self, future: DeliveryFuture, err: Any, msg: Any) -> None:
        self._pending.pop(id(future), None)
        if err is None:
            if future._token is not None and self._telemetry is not None:
                self._telemetry.delivered(future._token, msg)
            future._settle((msg.partition(), msg.offset()), None)
        else:
            self._telemetry_failed(future, err.name())
            refused = self._watch.classify(err, resource=self.settings.topic, operation="WRITE")
            if isinstance(refused, AuthorizationError) and self._refusal is None:
                self._refusal = refused
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "payment %s not delivered: %s",
                    future.event.payment_id,
                    err.str(),
                    extra={"payment_id": str(future.event.payment_id)},
                )
            self._failed.append(future)
            future._settle(None, err)
        if self._report_budget is not None:
            self._report_budget -= 1
            if self._report_budget <= 0:
                raise _BudgetSpentError  # librdkafka keeps the rest queued for the next poll

    def _delivery_error(self, event: PaymentEvent, failure: Any) -> DeliveryError:
        if isinstance(failure, DeliveryError):
            return failure
        code = failure.name()
        seen = self._last_error or "no broker error seen"
        if code == "_PURGE_QUEUE":
            why = f"not sent: the producer closed with it still queued ({seen})"
        elif code == "_PURGE_INFLIGHT":
            why = (
                f"unknown whether written: the producer closed before the broker answered ({seen})"
            )
        else:
            why = failure.str()
        return DeliveryError(
            f"payment {event.payment_id} was not delivered to {self.settings.topic}: {why}",
            [(event, why)],
            code=code,
            retriable=_retriable(failure),
        )

    def _callback_failed(self, future: DeliveryFuture, exc: Exception) -> None:
        self._callback_errors += 1
        # The first one with its traceback; the rest in one line each at DEBUG, not a flood.
        if self._callback_errors == 1:
            log.error(
                "delivery callback for payment %s raised",
                future.event.payment_id,
                exc_info=exc,
            )
        else:
            log.debug("delivery callback for payment %s raised: %r", future.event.payment_id, exc)

    def _on_error(self, err: Any) -> None:
        self._last_error = err.str()
        first = self._watch.error is None
        if self._watch.observe(err):
            if first:  # librdkafka repeats it on every reconnect: one line is enough
                log.error("producer refused: %s", self._watch.error)
            return
        if err.fatal():
            log.error("fatal producer error: %s", err.str())
        elif self._last_error not in self._errors_logged:
            # librdkafka repeats an outage's error every few seconds: once per flush is enough.
            self._errors_logged.add(self._last_error)
            log.warning("producer: %s", self._last_error)
        else:
            log.debug("producer: %s", self._last_error)


class PaymentProducer(_ProducerBase):
    """Sends :class:`PaymentEvent`s to the payments topic; use it as a context manager.

    On start it makes sure the schema may be used (registering it when ``auto_register``;
    otherwise only an already registered version is accepted) and caches its id. ``key``
    picks the message key (the user, by default, which keeps each user's payments in order).
    ``kafka_overrides`` are librdkafka settings for this producer alone; like
    ``Settings.kafka_options`` they may not touch the keys the delivery guarantees rest on.
    """

    def _init_face(self) -> None:
        self._next_poll = 0.0
        # Delivery reports send() may still take in during its poll; None outside send().
        self._report_budget: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Check and register the schema, create the topic if missing (``create_topic``),
        then connect; idempotent."""
        if self._producer is None:
            self._producer = self._connect()
        return self

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

        Raises :class:`DeliveryError` listing every event not delivered. Events still queued
        at the deadline are purged from librdkafka first, so each of their futures fails at
        once (instead of waiting forever on a closed producer) and none is sent afterwards.
        """
        producer = self._producer
        if producer is None:
            return
        try:
            self._flush(producer, self._flush_timeout if timeout is None else timeout, close=True)
        finally:
            self._release()

    # -- sending -----------------------------------------------------------------------------

    def send(
        self,
        event: PaymentEvent,
        *,
        on_delivery: Callable[[DeliveryFuture], object] | None = None,
    ) -> DeliveryFuture:
        """Queue ``event`` for delivery and return at once.

        When librdkafka's local queue is full this waits (serving delivery reports) up to
        ``queue_timeout`` seconds: back-pressure, never a silent drop. Otherwise it takes in
        at most a few hundred delivery reports per call, so a backlog (every event of an
        outage timing out together) is worked off over the next sends, not in one slow call.
        """
        producer, serialize = self._started()
        value, key = self._encode(event, serialize)
        future = DeliveryFuture(event, self)
        if on_delivery is not None:
            future.add_done_callback(on_delivery)
        headers = None if self._telemetry is None else self._trace(future, key)
        deadline: float | None = None
        while True:
            try:
                producer.produce(
                    self.settings.topic, value, key, on_delivery=future, headers=headers
                )
                break
            except BufferError:
                now = time.monotonic()
                deadline = deadline or now + self._queue_timeout
                if now >= deadline:
                    self._telemetry_failed(future, "_QUEUE_FULL")
                    raise self._queue_full_error(event) from None
                producer.poll(0.05)
            except KafkaException as exc:
                self._telemetry_failed(future, exc.args[0].name())
                raise self._refused_error(event, exc) from None
        # Registered only once queued: an event send() raised for is the caller's, not flush's.
        self._pending[id(future)] = future
        # Serving delivery reports costs about as much as a produce; once a millisecond keeps
        # callbacks timely and the report queue short without paying it on every send. A
        # backlog left over by the budget is served on the very next send.
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + _POLL_INTERVAL
            self._report_budget = _REPORTS_PER_SEND
            try:
                producer.poll(0)
            except _BudgetSpentError:
                self._next_poll = now
            finally:
                self._report_budget = None
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued event is delivered or ``timeout`` passes.

        Raises :class:`DeliveryError` with every failed delivery nobody observed and every
        event still queued at the deadline; it is ``retriable`` when every one of them can
        be sent again (an outage, not bad data).
        """
        self._flush(self._started()[0], timeout, close=False)

    @property
    def in_flight(self) -> int:
        """Events queued but not yet acknowledged by the broker."""
        return len(self._producer) if self._producer is not None else 0

    # -- internals ---------------------------------------------------------------------------

    def _poll(self, timeout: float) -> bool:
        """Serve delivery reports for up to ``timeout``; False once the producer is closed."""
        if self._producer is None:
            return False
        # A wait serves every report, even one started from a callback inside send()'s poll.
        budget, self._report_budget = self._report_budget, None
        try:
            self._producer.poll(timeout)
        finally:
            self._report_budget = budget
        return True

    def _flush_watched(self, producer: Producer, timeout: float | None) -> int:
        """``flush`` in slices, stopping early when the cluster refused us (login, TLS, ACL):
        those events would otherwise wait out the whole timeout for nothing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left_time = _FLUSH_SLICE if deadline is None else deadline - time.monotonic()
            left = int(producer.flush(max(0.0, min(_FLUSH_SLICE, left_time))))
            if not left or self._watch.error is not None or self._refusal is not None:
                return left
            if deadline is not None and time.monotonic() >= deadline:
                return left

    def _flush(self, producer: Producer, timeout: float | None, *, close: bool) -> None:
        self._finish_flush(producer, self._flush_watched(producer, timeout), close=close)


class _BudgetSpentError(Exception):
    """Raised from a delivery report to end send()'s poll early (librdkafka yields)."""


def _retriable(err: Any) -> bool:
    """Whether sending the same event again can work: librdkafka's flag, or an outage.

    librdkafka calls a message timeout non-retriable because *it* stopped retrying; for the
    caller the broker was merely unreachable, and the same event can be sent again.
    """
    return bool(err.retriable()) or err.name() in _OUTAGE_CODES


def _reason(error: DeliveryError) -> str:
    return error.undelivered[0][1] if error.undelivered else error.message


def _reasons(errors: Sequence[DeliveryError]) -> str:
    """``reason (code) x count`` for the most common reasons, most common first."""
    counts = collections.Counter((_reason(e), e.code) for e in errors)
    shown = [
        f"{why} ({code}) x{n}" if code else f"{why} x{n}"
        for (why, code), n in counts.most_common(_REASONS_SHOWN)
    ]
    if len(counts) > _REASONS_SHOWN:
        shown.append(f"and {len(counts) - _REASONS_SHOWN} other reason(s)")
    return "; ".join(shown)
