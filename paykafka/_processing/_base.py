"""What both processor faces share and that is not waiting: options, clients' configs, the
blocking transactional steps as functions, and one input's way into the open transaction.

Like httpx's ``BaseClient`` (and :class:`paykafka._tracking.TrackerBase`): ``PaymentProcessor``
(threads) and ``AsyncPaymentProcessor`` (asyncio) subclass :class:`ProcessorBase` and only add
the loop that reads, calls the handler and waits. The blocking librdkafka calls of a transaction
(claiming the id, sending offsets, committing, aborting) are whole methods here: the sync face
calls them, the async face runs the same methods in a worker thread, so neither copies them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import attrs
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import KafkaError as _RdKafkaError

from paykafka._admin import ensure_topic
from paykafka._dlq import dead_letter_headers
from paykafka._errors import (
    BrokerUnavailableError,
    DecodeError,
    FencedError,
    KafkaError,
    PayKafkaError,
    TransactionError,
)
from paykafka._event import PaymentEvent
from paykafka._governance import SchemaGate
from paykafka._observability import Telemetry, telemetry_for
from paykafka._processing._core import (
    FENCED_CODES,
    Batch,
    Output,
    ProcessingCore,
    Step,
    TxnAction,
    classify_txn_error,
)
from paykafka._producer import key_by_user
from paykafka._registry import RegistryClient
from paykafka._schema import PaymentSchema, load_schema
from paykafka._serde import EventDeserializer, EventSerializer
from paykafka._settings import Settings, client_kafka_options

__all__ = [
    "FIRST_RECORD_WAIT",
    "Decoded",
    "ProcessorBase",
    "WedgedCallError",
    "call_within",
    "fatal_error",
]

log = logging.getLogger("paykafka.processor")

_UNREACHABLE = frozenset({"_TRANSPORT", "_TIMED_OUT", "_ALL_BROKERS_DOWN", "_RESOLVE"})
#: Seconds an empty batch waits for its first record before run() checks its stop conditions.
FIRST_RECORD_WAIT = 0.2

#: How long past its own timeout a librdkafka transactional call may take before it is
#: considered stuck for good (see :func:`call_within`).
WEDGE_GRACE = 5.0

#: A decoded input: (writer schema id, event).
Decoded = tuple[int, PaymentEvent]
Headers = list[tuple[str, str | bytes | None]] | None


def fatal_error(err: Any, transactional_id: str) -> TransactionError:
    """The error a fatal librdkafka transactional error stops the processor with."""
    if err.name() in FENCED_CODES:
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


class WedgedCallError(Exception):
    """A librdkafka call did not return within its deadline (see :func:`call_within`)."""


def call_within(fn: Callable[[], Any], timeout: float, what: str) -> None:
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
        raise WedgedCallError(f"{what} did not return within {timeout:g} s")
    if outcome[0] is not None:
        raise outcome[0]


class ProcessorBase:
    """Options, the core, the clients and the transactional steps both faces share.

    ``output_topics`` are checked (schema admitted, topic created when ``create_topic``) at
    start; a topic a handler names later is checked on first use. Batches hold up to
    ``transaction_batch_size`` inputs, and an input waits at most ``transaction_batch_ms`` for
    its transaction (``Settings``). A handler that raises aborts the batch, which is handled
    again after ``retry_backoff`` (doubling); after ``handler_retries`` failures on the same
    input it is dead-lettered inside the transaction (or, with ``dead_letters=False``, the
    error is raised and the processor stops). ``kafka_options`` are librdkafka settings for
    this processor's consumer and producer (``kafka_overrides`` is their deprecated old name).
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
        kafka_options: Mapping[str, Any] | None = None,
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
        self._timeout = transaction_timeout
        self._overrides = client_kafka_options(kafka_options, kafka_overrides, type(self).__name__)
        self._core = ProcessingCore(
            batch_size=self.settings.transaction_batch_size,
            batch_ms=self.settings.transaction_batch_ms,
            handler_retries=handler_retries,
            retry_backoff=retry_backoff,
            dead_letters=dead_letters,
        )
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._decode: EventDeserializer | None = None
        self._serializers: dict[str, EventSerializer] = {}
        self._fatal: str | None = None
        self._init_face()

    def _init_face(self) -> None:
        """The face's own state (its stop flag)."""

    # -- counters ----------------------------------------------------------------------------

    @property
    def handled(self) -> int:
        """Inputs whose transaction committed (dead-lettered ones included)."""
        return self._core.handled

    @property
    def written(self) -> int:
        """Outputs committed."""
        return self._core.written

    @property
    def dead_lettered(self) -> int:
        """Inputs committed as dead letters."""
        return self._core.dead_lettered

    @property
    def transactions(self) -> tuple[int, int]:
        """Transactions (committed, aborted) so far."""
        return self._core.committed_count, self._core.aborted_count

    # -- starting and closing (blocking; the async face runs them in a thread) ---------------

    def _open(self) -> None:
        """Admit the output schemas, claim the transactional id, join the group.

        Claiming the id (``init_transactions``) fences any older instance with the same id
        and aborts the transaction it left open.
        """
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

    def _shut(self) -> None:
        """Leave the group. Everything handled is already committed; nothing else is."""
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        self._core.collecting()
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

    # -- the transaction's blocking steps ----------------------------------------------------

    def _begin(self) -> None:
        """Open a transaction."""
        producer = self._started()[0]
        self._call(producer.begin_transaction, "beginning a transaction")

    def _finish(self, batch: Batch) -> None:
        """Send the batch's next offsets into the transaction and commit it."""
        producer, consumer, _ = self._started()
        offsets = [TopicPartition(t, p, o) for t, p, o in batch.next_offsets()]
        group = consumer.consumer_group_metadata()
        try:
            self._call(
                lambda: call_within(
                    lambda: producer.send_offsets_to_transaction(offsets, group, self._timeout),
                    self._timeout + WEDGE_GRACE,
                    "send-offsets",
                ),
                "sending the inputs' offsets",
            )
        except WedgedCallError as exc:
            raise self._core.backing_off(
                f"sending the inputs' offsets: {exc}", wedged=True
            ) from None
        self._call(lambda: producer.commit_transaction(self._timeout), "committing", retry=True)

    def _abort(self, batch: Batch, why: str, wedged: bool = False) -> None:
        """Abort the open transaction (if any) and seek back to the batch's first offsets.

        A ``wedged`` producer is stuck inside a call and cannot abort: a new producer claims
        the id, which makes the broker abort the stuck one's transaction.
        """
        producer = self._started()[0]
        log.warning("aborting the transaction of %d input(s): %s", len(batch.records), why)
        if wedged:
            log.error(
                "the transactional producer is stuck (librdkafka#5511, after a group "
                "coordinator died): a new producer claims %s and the batch is handled again",
                self.transactional_id,
            )
            self._renew_producer(stuck=True)
        else:
            self._abort_open(producer)
        self._seek_back(self._core.aborted(batch))

    def _abort_open(self, producer: Producer) -> None:
        """Abort with ``producer``; one in a fatal state (not fenced) is replaced."""
        try:
            # Records still being sent race the abort: librdkafka may end the transaction while
            # a partition is being added to it, which the broker refuses as INVALID_TXN_STATE
            # (a fatal error; librdkafka#4849). Once they are acknowledged, the abort is clean.
            producer.flush(self._timeout)
            producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                if err.name() in FENCED_CODES:
                    raise fatal_error(err, self.transactional_id) from None
                log.warning("transactional producer failed (%s); claiming the id anew", err.str())
                self._renew_producer()
            elif err.code() != _RdKafkaError._STATE:  # _STATE: no transaction was open
                raise self._kafka_error(err, "aborting the transaction") from None

    def _seek_back(self, offsets: dict[tuple[str, int], int]) -> None:
        """Seek the consumer back (never waits), so those records are read again."""
        consumer = self._consumer
        if consumer is None:  # closed: the group's next owner starts at the committed offsets
            return
        for (topic, partition), offset in offsets.items():
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # Revoked meanwhile: its next owner starts at the committed offset, which is
                # the first one not committed, so nothing is skipped.
                log.info("cannot seek back to %s[%d]@%d: %s", topic, partition, offset, exc)

    def _renew_producer(self, *, stuck: bool = False) -> None:
        """Replace the transactional producer: one in a fatal state that was not fenced (so
        our id is still ours), or one ``stuck`` inside a call that never returned, which is
        left to the thread stuck in it (never flushed or closed).

        Claiming the id again bumps its epoch: the broker aborts the transaction the old
        producer left open, and nothing it wrote becomes visible.
        """
        old, self._producer = self._producer, None
        if old is not None and not stuck:
            with contextlib.suppress(KafkaException):
                old.flush(0)
        self._producer = self._new_producer()

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
        if err.fatal() and err.name() in FENCED_CODES:
            raise fatal_error(err, self.transactional_id)
        # Anything else aborts the batch; a producer in a fatal state is renewed by the abort.
        raise self._core.backing_off(f"{what}: {err.str()}")

    def _serializer(self, topic: str) -> EventSerializer:
        """The serializer of an output topic; the first use admits the schema (registry)."""
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

    # -- one input, inside the open transaction (never waits) --------------------------------

    def _admit(self, batch: Batch, msg: Any, decoded: Decoded | DecodeError) -> PaymentEvent | None:
        """The event to hand to the handler, or None when the input was dead-lettered into
        the transaction instead (undecodable, or the handler kept failing on it)."""
        if isinstance(decoded, DecodeError):
            step = self._core.decode_failed(retriable=decoded.retriable)
            if step is Step.ABORT:  # registry outage: not the record's fault, wait it out
                raise self._core.backing_off(f"cannot decode yet: {decoded}") from None
            if step is Step.RAISE:
                raise decoded
            self._dead_letter(batch, msg, decoded.reason.value, str(decoded), decoded.schema_id)
            return None
        where = (msg.topic(), msg.partition(), msg.offset())
        admission = self._core.admit(where)
        if admission.step is Step.DEAD_LETTER:
            self._dead_letter(
                batch,
                msg,
                "handler_failed",
                admission.error,
                decoded[0],
                attempts=admission.attempts,
            )
            return None
        return decoded[1]

    def _handler_error(self, msg: Any, exc: Exception) -> BaseException:
        """What to raise for a handler's error: the error itself when the processor must stop,
        else the abort-and-retry of the batch."""
        where = (msg.topic(), msg.partition(), msg.offset())
        step = self._core.handler_failed(where, f"{type(exc).__name__}: {exc}")
        if step is Step.RAISE:
            return exc
        log.warning(
            "handler failed on %s[%d]@%d (attempt %d): %r; the batch is aborted",
            *where,
            self._core.attempts(where),
            exc,
        )
        return self._core.backing_off(f"handler failed: {exc!r}")

    def _unknown_topics(self, outputs: Iterable[Output]) -> set[str]:
        """Output topics without a serializer yet (their first use asks the registry)."""
        return {o.topic for o in outputs if o.topic not in self._serializers}

    def _write(self, batch: Batch, outputs: list[Output], headers: Headers) -> None:
        """Write a handler's outputs into the open transaction, keyed by user."""
        producer = self._started()[0]
        for output in outputs:
            self._produce(
                producer,
                output.topic,
                self._serializer(output.topic)(output.event),
                key_by_user(output.event).encode(),
                headers,
            )
        batch.written += len(outputs)

    def _dead_letter(
        self,
        batch: Batch,
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
        self._produce(self._started()[0], self.settings.dlq_topic, msg.value(), msg.key(), headers)
        batch.dead_reasons.append(reason)
        log.warning(
            "dead-lettering %s[%d]@%d to %s in the transaction: %s",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            self.settings.dlq_topic,
            reason,
            extra={"reason": reason, "offset": msg.offset(), "partition": msg.partition()},
        )

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
                # The local queue is full (a batch far larger than queue.buffering.max.messages):
                # serve librdkafka until it drains. Rare enough to wait for, even on a loop.
                producer.poll(0.05)
            except KafkaException as exc:
                self._raise_for(exc.args[0], f"writing to {topic}")
            else:
                return

    def _span(self, msg: Any, event: PaymentEvent) -> AbstractContextManager[object]:
        """The handler's ``process`` span, continuing the input's trace (telemetry on)."""
        assert self._telemetry is not None
        return self._telemetry.handling(msg.topic(), self.settings.group_id, event, msg)

    def _committed(self, batch: Batch, began: float) -> None:
        """Count a committed batch (telemetry too: an aborted batch counts nothing)."""
        self._core.committed(batch)
        log.debug(
            "committed %d input(s), %d output(s) in %.1f ms",
            len(batch.records),
            batch.written,
            (time.monotonic() - began) * 1000,
        )
        telemetry = self._telemetry
        if telemetry is not None:
            group = self.settings.group_id
            for msg in batch.records:
                telemetry.handled(msg.topic(), group)
            for reason in batch.dead_reasons:
                telemetry.dead_lettered(self.settings.topic, group, reason)

    # -- reading -----------------------------------------------------------------------------

    def _fetched(
        self, batch: Batch, messages: list[Any], now: float, *, queued: bool = False
    ) -> None:
        """Feed what ``consume()`` returned: records to the batch, errors handled.
        ``queued``: the first read of a collection, of what waited in the client."""
        good: list[Any] = []
        for msg in messages:
            if msg.error() is None:
                good.append(msg)
                continue
            # In order: an end-of-partition after records of it must not be undone by feeding
            # those records afterwards.
            if good:
                self._core.fetched(batch, good, now, queued=queued)
                good = []
            self._on_message_error(msg)
        if good:
            self._core.fetched(batch, good, now, queued=queued)

    def _idle_done(self, idle_for: float, idle_timeout: float | None, stop_at_end: bool) -> bool:
        """After an empty batch: whether ``run()`` stops (end reached, or idle too long)."""
        if stop_at_end and self._core.all_at_end():
            return True
        return idle_timeout is not None and idle_for >= idle_timeout

    # -- callbacks and small things ----------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._core.assigned((tp.topic, tp.partition) for tp in partitions)
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Called only from consume(), between transactions: nothing is open, nothing to commit.
        self._core.revoked((tp.topic, tp.partition) for tp in partitions)
        log.info("revoked %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _on_message_error(self, msg: Any) -> None:
        err = msg.error()
        if err.code() == _RdKafkaError._PARTITION_EOF:
            self._core.at_end(msg.topic(), msg.partition())
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
            return fatal_error(err, self.transactional_id)
        if err.name() in _UNREACHABLE:
            return BrokerUnavailableError(
                f"no Kafka broker answered at {self.settings.bootstrap_servers} while {what}: "
                f"{err.str()}; start one (paykafka stack up) or fix PAYKAFKA_BOOTSTRAP_SERVERS",
                code=err.name(),
            )
        return KafkaError(f"{what}: {err.str()}", code=err.name(), retriable=err.retriable())

    #: How the face says that it was used before it started.
    _NOT_STARTED = "the processor is not started"

    def _started(self) -> tuple[Producer, Consumer, EventDeserializer]:
        if self._producer is None or self._consumer is None or self._decode is None:
            raise PayKafkaError(self._NOT_STARTED)
        return self._producer, self._consumer, self._decode
