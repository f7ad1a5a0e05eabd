"""``PaymentProcessor``: payments in, payments out, exactly once between Kafka topics.

A processor reads the payments topic as a consumer group and hands each event to
``handler(event) -> Iterable[Output]``. The outputs of a batch of inputs, the dead letters of
the inputs that cannot be decoded, and the inputs' next offsets are written in **one Kafka
transaction** (``send_offsets_to_transaction`` with the consumer's group metadata). Readers
with ``isolation.level=read_committed`` see either all of a batch's effects or none of them:

- a handler error, an abortable Kafka error or a crash aborts the transaction; the consumer is
  sought back to the batch's first offsets (a restarted instance starts at the committed ones)
  and the batch is handled again;
- a fatal error (this transactional id was taken over by a newer instance: fenced) stops the
  processor with :class:`~paykafka.FencedError`; the newer instance carries on.

Transactional ids (KIP-447). The broker fences a zombie in two ways: by the producer epoch of
its transactional id (a newer instance with the same id bumps it) and by the consumer group
generation sent with the offsets (a member that lost its partitions in a rebalance cannot commit
offsets for them). The second makes per-partition transactional ids unnecessary, so one id per
running instance is enough. It is kept *stable across restarts* of that instance
(``<group_id>-<hostname>`` unless ``transactional_id`` says otherwise) because a restarted
instance then aborts its predecessor's open transaction at once in ``init_transactions()``;
with a fresh id every start, read_committed readers of the output partitions would wait for
that transaction to time out (``transaction.timeout.ms``, 60 s) before seeing anything newer.

The handler must be a pure function of its event as far as exactly-once goes: its outputs are
transactional, anything else it does (HTTP calls, database writes) happens again on a retry.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self

import attrs
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import KafkaError as _RdKafkaError

from paykafka._admin import ensure_topic
from paykafka._dlq import dead_letter_headers
from paykafka._errors import (
    BrokerUnavailableError,
    ConfigError,
    DecodeError,
    FencedError,
    KafkaError,
    PayKafkaError,
    TransactionError,
)
from paykafka._event import PaymentEvent
from paykafka._governance import SchemaGate
from paykafka._observability import Telemetry, telemetry_for
from paykafka._producer import key_by_user
from paykafka._registry import RegistryClient
from paykafka._schema import PaymentSchema, load_schema
from paykafka._serde import EventDeserializer, EventSerializer
from paykafka._settings import Settings
from paykafka._signals import install_stop_signals

__all__ = ["Output", "PaymentProcessor", "TxnAction", "classify_txn_error"]

log = logging.getLogger(__name__)

_MAX_BACKOFF = 5.0
#: How long past its own timeout a librdkafka transactional call may take before it is
#: considered stuck for good (see ``_call_within``).
_WEDGE_GRACE = 5.0
# librdkafka's names for "this transactional id now belongs to someone else".
_FENCED_CODES = frozenset({"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"})
_UNREACHABLE = frozenset({"_TRANSPORT", "_TIMED_OUT", "_ALL_BROKERS_DOWN", "_RESOLVE"})

#: A handler returns the outputs of one input: an iterable of them, one, or None for none.
Handler = Callable[[PaymentEvent], "Iterable[Output] | Output | None"]


def _topic_name(_inst: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"an Output needs a topic name, got {value!r}")


def _payment(_inst: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, PaymentEvent):
        raise TypeError(f"an Output carries a PaymentEvent, got {type(value).__name__}")


@attrs.frozen
class Output:
    """One event a handler wants written, and the topic it goes to.

    The topic is governed like the payments topic: its ``<topic>-value`` subject holds the
    payment schema (registered when the processor first writes there and ``auto_register``).
    The record is keyed by user, so one user's payments keep their order on the output too.
    """

    topic: str = attrs.field(validator=_topic_name)
    event: PaymentEvent = attrs.field(validator=_payment)


class TxnAction:
    """What to do about a failed transactional call (see :func:`classify_txn_error`)."""

    FATAL = "fatal"
    ABORT = "abort"
    RETRY = "retry"


def classify_txn_error(err: Any) -> str:
    """Fatal (stop), abort (abort, rewind, handle the batch again) or retry (same call again).

    librdkafka sorts its transactional errors the same way; a plain error that claims none
    of the three is handled like an abortable one: aborting is always safe, as nothing of the
    transaction becomes visible, while retrying a call of unknown state may not be.
    """
    if err.fatal():
        return TxnAction.FATAL
    if err.txn_requires_abort():
        return TxnAction.ABORT
    if err.retriable():
        return TxnAction.RETRY
    return TxnAction.ABORT


def _fatal_error(err: Any, transactional_id: str) -> TransactionError:
    if err.name() in _FENCED_CODES:
        return FencedError(
            f"processor fenced: another instance started with transactional id "
            f"{transactional_id!r} ({err.str()}); this one stopped and nothing it wrote since is "
            "committed. If two instances are meant to run, give each its own "
            "PAYKAFKA_TRANSACTIONAL_ID",
            code=err.name(),
        )
    return TransactionError(
        f"transactional producer {transactional_id!r} failed for good: {err.str()}; the open "
        "transaction is aborted and its inputs will be handled again; start the processor anew",
        code=err.name(),
    )


class _AbortBatchError(Exception):
    """The batch in hand is aborted and handled again (internal control flow).

    ``wedged``: the producer is stuck inside a call that never returned, so it cannot abort;
    it is replaced instead (claiming the id anew aborts its transaction on the broker).
    """

    def __init__(self, why: str, delay: float = 0.0, *, wedged: bool = False) -> None:
        super().__init__(why)
        self.delay = delay
        self.wedged = wedged


class _WedgedCallError(Exception):
    """A librdkafka call did not return within its deadline (see :func:`_call_within`)."""


def _call_within(fn: Callable[[], Any], timeout: float, what: str) -> None:
    """Run ``fn`` on a thread of its own and give up on it after ``timeout`` seconds.

    Why: ``send_offsets_to_transaction`` ignores its own timeout and can block forever when
    the group coordinator dies and drops out of the cluster metadata (librdkafka#5456,
    #5511; seen here when a broker is SIGKILLed). A processor blocked there stops for good
    without a word. On timeout the call is abandoned: its daemon thread keeps the producer
    alive (destroying a client while a thread is inside it is not safe), and the caller
    replaces the producer. Exceptions of ``fn`` are raised here, in the caller's thread.
    """
    outcome: list[BaseException | None] = []
    done = threading.Event()

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            outcome.append(exc)
        else:
            outcome.append(None)
        finally:
            done.set()

    threading.Thread(target=run, name=f"paykafka-{what}", daemon=True).start()
    if not done.wait(timeout):
        raise _WedgedCallError(f"{what} did not return within {timeout:g} s")
    if outcome[0] is not None:
        raise outcome[0]


@attrs.define
class _Batch:
    """The inputs of one transaction, and the offsets they move the group to."""

    records: list[Any] = attrs.field(factory=list)

    def first_offsets(self) -> dict[tuple[str, int], int]:
        """Per partition, where to seek back to for the batch to be read again."""
        first: dict[tuple[str, int], int] = {}
        for msg in self.records:
            first.setdefault((msg.topic(), msg.partition()), msg.offset())
        return first

    def next_offsets(self) -> list[TopicPartition]:
        """Per partition, the offset to commit: one past the batch's last record."""
        last: dict[tuple[str, int], int] = {}
        for msg in self.records:
            last[(msg.topic(), msg.partition())] = msg.offset()
        return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]

    def drop(self, topic: str, partition: int) -> None:
        """Forget one partition's records: it was revoked before the batch began."""
        self.records = [m for m in self.records if m.partition() != partition or m.topic() != topic]


class PaymentProcessor:
    """Reads payments as a group and writes each batch's outputs and offsets in one transaction.

    Use it as a context manager and call :meth:`run` with the handler. ``output_topics`` are
    checked (schema admitted, topic created when ``create_topic``) at start; a topic a handler
    names later is checked on first use. Batches hold up to ``transaction_batch_size`` inputs
    and wait at most ``transaction_batch_ms`` after the first (``Settings``). A handler that
    raises aborts the batch, which is handled again after ``retry_backoff`` (doubling); after
    ``handler_retries`` failures on the same input it is dead-lettered inside the transaction
    (or, with ``dead_letters=False``, the error is raised and the processor stops).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        registry: RegistryClient | None = None,
        schema: PaymentSchema | None = None,
        output_topics: Sequence[str] = (),
        dead_letters: bool = True,
        handler_retries: int = 3,
        retry_backoff: float = 0.5,
        transaction_timeout: float = 30.0,
        kafka_overrides: dict[str, Any] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self._telemetry = telemetry_for(self.settings, telemetry)
        self.transactional_id = (
            self.settings.transactional_id or f"{self.settings.group_id}-{socket.gethostname()}"
        )
        self._registry = registry
        self._owns_registry = registry is None
        self._schema = schema
        self._output_topics = tuple(output_topics)
        self._dead_letters = dead_letters
        self._handler_retries = handler_retries
        self._retry_backoff = retry_backoff
        self._timeout = transaction_timeout
        self._overrides = dict(kafka_overrides or {})
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._decode: EventDeserializer | None = None
        self._serializers: dict[str, EventSerializer] = {}
        self._collecting = _Batch()
        # Handler failures per input (topic, partition, offset): how many, and the last error.
        self._failures: dict[tuple[str, int, int], tuple[int, str]] = {}
        self._backoff = retry_backoff
        self._stop = threading.Event()
        self._assigned: set[tuple[str, int]] = set()
        self._at_end: set[tuple[str, int]] = set()
        self._fatal: str | None = None
        self._handled = 0
        self._written = 0
        self._dead_lettered = 0
        self._committed = 0
        self._aborted = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Admit the output schemas, claim the transactional id, join the group; idempotent.

        Claiming the id (``init_transactions``) fences any older instance with the same id
        and aborts the transaction it left open.
        """
        if self._consumer is not None:
            return self
        schema = self._schema or load_schema(self.settings.schema_path)
        self._schema = schema
        if self._registry is None:
            self._registry = RegistryClient(self.settings)
        self._decode = EventDeserializer(schema, self._registry.schema_by_id)
        for topic in self._output_topics:
            self._serializer(topic)
        self._producer = self._new_producer()
        consumer = Consumer(
            self.settings.processor_consumer_config(
                self._overrides, error_cb=self._on_error, **{"enable.partition.eof": True}
            )
        )
        consumer.subscribe(
            [self.settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        self._consumer = consumer
        log.info(
            "processor subscribed to %s as group %s, transactional id %s",
            self.settings.topic,
            self.settings.group_id,
            self.transactional_id,
        )
        return self

    def _new_producer(self) -> Producer:
        """A transactional producer that has claimed our id (fencing any older holder)."""
        producer = Producer(
            self.settings.transactional_producer_config(
                self.transactional_id, self._overrides, error_cb=self._on_error
            )
        )
        try:
            producer.init_transactions(self._timeout)
        except KafkaException as exc:
            raise self._kafka_error(exc.args[0], "claiming the transactional id") from None
        return producer

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Leave the group. Everything handled is already committed; nothing else is."""
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        self._collecting = _Batch()
        try:
            if consumer is not None:
                consumer.close()
        finally:
            if producer is not None:
                with contextlib.suppress(KafkaException):  # a fenced producer has nothing to say
                    producer.flush(0)
            if self._owns_registry and self._registry is not None:
                self._registry.close()
                self._registry = None

    def stop(self) -> None:
        """Ask :meth:`run` to stop after the current transaction (thread- and signal-safe)."""
        self._stop.set()

    @property
    def handled(self) -> int:
        """Inputs whose transaction committed (dead-lettered ones included)."""
        return self._handled

    @property
    def written(self) -> int:
        """Outputs committed."""
        return self._written

    @property
    def dead_lettered(self) -> int:
        """Inputs committed as dead letters."""
        return self._dead_lettered

    @property
    def transactions(self) -> tuple[int, int]:
        """Transactions (committed, aborted) so far."""
        return self._committed, self._aborted

    # -- running -----------------------------------------------------------------------------

    def run(
        self,
        handler: Handler,
        *,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        stop_at_end: bool = False,
        handle_signals: bool = True,
    ) -> int:
        """Process batches until stopped; returns how many inputs were committed.

        Stops on :meth:`stop` (SIGINT and SIGTERM call it, from the main thread), after about
        ``max_events`` inputs (a whole batch is committed), after ``idle_timeout`` seconds
        without input, or (``stop_at_end``) once every assigned partition was read to its end.
        """
        self._started()
        restore = self._install_signals() if handle_signals else None
        start = self._handled
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                if max_events is not None and self._handled - start >= max_events:
                    break
                batch = self._collect()
                if not batch.records:
                    if stop_at_end and self._assigned and self._assigned <= self._at_end:
                        break
                    if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                        break
                    continue
                idle_since = time.monotonic()
                self._process(handler, batch)
        finally:
            if restore is not None:
                restore()
        return self._handled - start

    # -- one transaction ---------------------------------------------------------------------

    def _collect(self) -> _Batch:
        """Up to ``transaction_batch_size`` inputs, waiting at most ``transaction_batch_ms``
        after the first one; a partition revoked meanwhile is dropped (see ``_on_revoke``)."""
        consumer = self._started()[1]
        size = self.settings.transaction_batch_size
        window = self.settings.transaction_batch_ms / 1000
        batch = self._collecting = _Batch()
        deadline: float | None = None
        while len(batch.records) < size and not self._stop.is_set():
            if deadline is None:
                # What librdkafka already holds, else the first record to arrive: consume(n, t)
                # waits for all n, which at a trickle would delay the first by the whole t.
                messages = consumer.consume(size, 0) or consumer.consume(1, 0.2)
            else:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                messages = consumer.consume(size - len(batch.records), wait)
            for msg in messages:
                if msg.error() is not None:
                    self._on_message_error(msg)
                    continue
                self._at_end.discard((msg.topic(), msg.partition()))
                batch.records.append(msg)
            if deadline is None:
                if batch.records:
                    deadline = time.monotonic() + window
                elif not messages:
                    break  # nothing within 0.2 s: let run() check its stop conditions
        return batch

    def _process(self, handler: Handler, batch: _Batch) -> None:
        """Handle ``batch`` in one transaction, until it commits or the processor must stop."""
        while batch.records:
            try:
                try:
                    self._transaction(handler, batch)
                except PayKafkaError as exc:
                    if not exc.retriable or isinstance(exc, TransactionError):
                        raise
                    # A registry or broker outage met on the way (a new output topic's schema):
                    # the batch is not at fault, so it is retried like an abortable error.
                    raise self._backing_off(str(exc)) from exc
            except _AbortBatchError as abort:
                self._abort(batch, str(abort), wedged=abort.wedged)
                if abort.delay:
                    self._stop.wait(abort.delay)
                if self._stop.is_set():
                    return
                batch = self._collect()  # read again from where the consumer was sought to
            except TransactionError:
                raise  # fenced or broken for good: there is nothing left to abort with
            except BaseException as exc:
                # Anything else stops the processor, but nothing of the batch may stay open
                # and its inputs must be read again by whoever runs next.
                self._abort(batch, f"{type(exc).__name__}: {exc}")
                raise
            else:
                self._backoff = self._retry_backoff
                return

    def _transaction(self, handler: Handler, batch: _Batch) -> None:
        producer, consumer, decoder = self._started()
        self._call(producer.begin_transaction, "beginning a transaction")
        written = dead = 0
        dead_reasons: list[str] = []
        telemetry = self._telemetry
        for msg in batch.records:
            try:
                schema_id, event = decoder.decode(msg.value())
            except DecodeError as exc:
                if exc.retriable:  # registry outage: not the record's fault, wait it out
                    raise self._backing_off(f"cannot decode yet: {exc}") from None
                if not self._dead_letters:
                    raise
                self._produce_dead_letter(producer, msg, exc.reason.value, str(exc), exc.schema_id)
                dead += 1
                dead_reasons.append(exc.reason.value)
                continue
            where = (msg.topic(), msg.partition(), msg.offset())
            failures, last_error = self._failures.get(where, (0, ""))
            if failures > self._handler_retries:
                self._produce_dead_letter(
                    producer, msg, "handler_failed", last_error, schema_id, attempts=failures
                )
                dead += 1
                dead_reasons.append("handler_failed")
                continue
            written += self._handle(producer, handler, msg, event, where=where, failures=failures)
        offsets, group = batch.next_offsets(), consumer.consumer_group_metadata()
        try:
            self._call(
                lambda: _call_within(
                    lambda: producer.send_offsets_to_transaction(offsets, group, self._timeout),
                    self._timeout + _WEDGE_GRACE,
                    "send-offsets",
                ),
                "sending the inputs' offsets",
            )
        except _WedgedCallError as exc:
            raise self._backing_off(f"sending the inputs' offsets: {exc}", wedged=True) from None
        self._call(lambda: producer.commit_transaction(self._timeout), "committing", retry=True)
        for msg in batch.records:
            self._failures.pop((msg.topic(), msg.partition(), msg.offset()), None)
        self._committed += 1
        self._handled += len(batch.records)
        self._written += written
        self._dead_lettered += dead
        if telemetry is not None:  # counted once committed: an aborted batch counts nothing
            group = self.settings.group_id
            for msg in batch.records:
                telemetry.handled(msg.topic(), group)
            for reason in dead_reasons:
                telemetry.dead_lettered(self.settings.topic, group, reason)

    def _handle(
        self,
        producer: Producer,
        handler: Handler,
        msg: Any,
        event: PaymentEvent,
        *,
        where: tuple[str, int, int],
        failures: int,
    ) -> int:
        """Call the handler on one input and write its outputs into the open transaction;
        returns how many. A handler error aborts the batch (raised as a back-off)."""
        telemetry = self._telemetry
        headers = None
        try:
            if telemetry is None:
                result = handler(event)
            else:
                result, headers = self._traced(telemetry, handler, msg, event)
            outputs: list[object] = (
                [] if result is None else [result] if isinstance(result, Output) else [*result]
            )
        except Exception as exc:
            self._failures[where] = (failures + 1, f"{type(exc).__name__}: {exc}")
            if failures + 1 > self._handler_retries and not self._dead_letters:
                raise
            log.warning(
                "handler failed on %s[%d]@%d (attempt %d): %r; the batch is aborted",
                *where,
                failures + 1,
                exc,
            )
            raise self._backing_off(f"handler failed: {exc!r}") from exc
        for output in outputs:
            if not isinstance(output, Output):
                raise TypeError(
                    f"the handler must return Outputs, got {type(output).__name__}: "
                    "return [Output(topic, event), ...]"
                )
            self._produce(
                producer,
                output.topic,
                self._serializer(output.topic)(output.event),
                key_by_user(output.event).encode(),
                headers,
            )
        return len(outputs)

    def _traced(
        self, telemetry: Telemetry, handler: Handler, msg: Any, event: PaymentEvent
    ) -> tuple[Iterable[Output] | Output | None, list[tuple[str, str | bytes | None]] | None]:
        """``handler(event)`` inside its ``process`` span, continuing the input's trace; the
        outputs carry that span's context, so their readers continue the same trace."""
        with telemetry.handling(msg.topic(), self.settings.group_id, event, msg):
            return handler(event), telemetry.context_headers()

    def _produce(
        self,
        producer: Producer,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Any = None,
    ) -> None:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers)
            except BufferError:
                producer.poll(0.05)  # the local queue is full: let it drain
            except KafkaException as exc:
                self._raise_for(exc.args[0], f"writing to {topic}")
            else:
                return

    def _produce_dead_letter(
        self,
        producer: Producer,
        msg: Any,
        reason: str,
        message: str,
        schema_id: int | None,
        *,
        attempts: int = 1,
    ) -> None:
        headers = dead_letter_headers(
            msg, reason=reason, message=message, schema_id=schema_id, attempts=attempts
        )
        self._produce(producer, self.settings.dlq_topic, msg.value(), msg.key(), headers)
        log.warning(
            "dead-lettering %s[%d]@%d to %s in the transaction: %s",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            self.settings.dlq_topic,
            reason,
            extra={"reason": reason, "offset": msg.offset(), "partition": msg.partition()},
        )

    def _call(self, fn: Callable[[], Any], what: str, *, retry: bool = False) -> None:
        """Run one transactional call; retriable errors repeat it (``retry``) a few times."""
        for attempt in range(5):
            try:
                fn()
            except KafkaException as exc:
                err = exc.args[0]
                if retry and classify_txn_error(err) == TxnAction.RETRY and attempt < 4:
                    log.info("%s: %s; retrying", what, err.str())
                    continue
                self._raise_for(err, what)
            else:
                return

    def _raise_for(self, err: Any, what: str) -> None:
        if err.fatal() and err.name() in _FENCED_CODES:
            raise _fatal_error(err, self.transactional_id)
        # Anything else aborts the batch; a producer in a fatal state is renewed by the abort.
        raise self._backing_off(f"{what}: {err.str()}")

    def _backing_off(self, why: str, *, wedged: bool = False) -> _AbortBatchError:
        delay, self._backoff = self._backoff, min(self._backoff * 2, _MAX_BACKOFF)
        return _AbortBatchError(why, delay, wedged=wedged)

    def _abort(self, batch: _Batch, why: str, *, wedged: bool = False) -> None:
        """Abort the open transaction (if any) and seek back to the batch's first offsets.

        A ``wedged`` producer is stuck inside a call and cannot abort: a new producer claims
        the id, which makes the broker abort the stuck one's transaction.
        """
        producer, consumer, _ = self._started()
        log.warning("aborting the transaction of %d input(s): %s", len(batch.records), why)
        if wedged:
            log.error(
                "the transactional producer is stuck (librdkafka#5511, after a group "
                "coordinator died): a new producer claims %s and the batch is handled again",
                self.transactional_id,
            )
            self._producer = None  # left to the thread stuck in it; never flushed or closed
            self._producer = self._new_producer()
        else:
            self._abort_open(producer)
        self._aborted += 1
        for (topic, partition), offset in batch.first_offsets().items():
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # Revoked meanwhile: its next owner starts at the committed offset, which is
                # this batch's first one, since the batch was not committed.
                log.info("cannot seek back to %s[%d]@%d: %s", topic, partition, offset, exc)
        batch.records = []

    def _abort_open(self, producer: Producer) -> None:
        try:
            # Records still being sent race the abort: librdkafka may end the transaction while
            # a partition is being added to it, which the broker refuses as INVALID_TXN_STATE
            # (a fatal error; librdkafka#4849). Once they are acknowledged, the abort is clean.
            producer.flush(self._timeout)
            producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                if err.name() in _FENCED_CODES:
                    raise _fatal_error(err, self.transactional_id) from None
                self._renew_producer(err)
            elif err.code() != _RdKafkaError._STATE:  # _STATE: no transaction was open
                raise self._kafka_error(err, "aborting the transaction") from None

    def _renew_producer(self, err: Any) -> None:
        """Replace a producer in a fatal state that was not fenced (so our id is still ours).

        Claiming the id again bumps its epoch: the broker aborts the transaction the old
        producer left open, and nothing it wrote becomes visible.
        """
        log.warning("transactional producer failed (%s); claiming the id anew", err.str())
        old, self._producer = self._producer, None
        if old is not None:
            with contextlib.suppress(KafkaException):
                old.flush(0)
        self._producer = self._new_producer()

    def _serializer(self, topic: str) -> EventSerializer:
        found = self._serializers.get(topic)
        if found is not None:
            return found
        assert self._registry is not None
        assert self._schema is not None
        settings = attrs.evolve(self.settings, topic=topic)
        schema_id = SchemaGate(self._registry, settings).admit(self._schema)
        if settings.create_topic:
            try:
                ensure_topic(settings, timeout=5.0)
            except BrokerUnavailableError as exc:
                log.warning("cannot check that topic %s exists: %s", topic, exc)
        found = self._serializers[topic] = EventSerializer(self._schema, schema_id)
        return found

    # -- callbacks and small things --------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Called only from consume(), between transactions: nothing is open, nothing to commit.
        for tp in partitions:
            self._collecting.drop(tp.topic, tp.partition)
            self._assigned.discard((tp.topic, tp.partition))
            self._at_end.discard((tp.topic, tp.partition))
        log.info("revoked %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _on_message_error(self, msg: Any) -> None:
        err = msg.error()
        if err.code() == _RdKafkaError._PARTITION_EOF:
            self._at_end.add((msg.topic(), msg.partition()))
            return
        if err.fatal():
            raise KafkaError(f"fatal consumer error: {err.str()}", code=err.name())
        log.warning("consumer: %s", err.str(), extra={"code": err.name()})

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._fatal = err.str()
            log.error("fatal processor error: %s", err.str())
        else:
            log.warning("processor: %s", err.str())

    def _kafka_error(self, err: Any, what: str) -> KafkaError:
        if err.fatal():
            return _fatal_error(err, self.transactional_id)
        if err.name() in _UNREACHABLE:
            return BrokerUnavailableError(
                f"no Kafka broker answered at {self.settings.bootstrap_servers} while {what}: "
                f"{err.str()}; start one (paykafka stack up) or fix PAYKAFKA_BOOTSTRAP_SERVERS",
                code=err.name(),
            )
        return KafkaError(f"{what}: {err.str()}", code=err.name(), retriable=err.retriable())

    def _install_signals(self) -> Callable[[], None] | None:
        return install_stop_signals(self.stop, "the current transaction")

    def _started(self) -> tuple[Producer, Consumer, EventDeserializer]:
        if self._producer is None or self._consumer is None or self._decode is None:
            raise PayKafkaError(
                "the processor is not started: use `with PaymentProcessor() as processor:` or "
                "call start() first"
            )
        return self._producer, self._consumer, self._decode
