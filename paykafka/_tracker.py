"""``PaymentTracker``: typed events out of the payments topic, at least once.

The delivery guarantee rests on one rule: an offset is stored (and later committed by
librdkafka) only after its event was handled. Iterating acknowledges an event when the loop
asks for the next one; ``run(handler)`` acknowledges after the handler returns. A crash
between the two re-delivers the event instead of losing it.

A record that can never become a ``PaymentEvent`` (not Confluent framing, unknown schema id,
corrupt Avro, a schema that is not a payment, invalid values) goes to the dead-letter topic and
tracking continues. A registry outage is not bad data: the record is retried with backoff, and
ids already seen keep decoding from the cache.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from types import FrameType, TracebackType
from typing import Any, Self

import attrs
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    TopicPartition,
)
from confluent_kafka import KafkaError as _RdKafkaError

from paykafka._dlq import DeadLetterWriter
from paykafka._errors import DecodeError, KafkaError, PayKafkaError
from paykafka._event import PaymentEvent
from paykafka._observability import Telemetry, telemetry_for
from paykafka._observability._telemetry import STATISTICS_INTERVAL_MS
from paykafka._registry import RegistryClient
from paykafka._schema import PaymentSchema, load_schema, require_agreement
from paykafka._security import SecurityWatch, client_creation_error
from paykafka._serde import EventDeserializer
from paykafka._settings import Settings, client_kafka_options

__all__ = ["PaymentTracker", "TrackedEvent"]

log = logging.getLogger(__name__)

_MAX_BACKOFF = 5.0
# Seconds without any partition before a tracker checks for plaintext-against-TLS.
_DIAGNOSE_AFTER = 2.0
# Records taken from librdkafka per consume() call; see PaymentTracker._next_message.
_BATCH = 500


@attrs.frozen
class TrackedEvent:
    """An event with where it was read from."""

    event: PaymentEvent
    topic: str
    partition: int
    offset: int
    key: str | None
    schema_id: int
    #: When the broker appended the record (UTC), if it says.
    appended_at: datetime | None


class PaymentTracker:
    """Reads :class:`PaymentEvent`s from the payments topic; use it as a context manager.

    ``from_beginning`` replays each partition from its first offset the first time it is
    assigned, whatever the group committed before (the tutorial's ``--from-beginning``).
    ``handler_retries`` and ``dead_letters`` govern :meth:`run`: a handler that raises is
    retried with backoff, then its record is dead-lettered (or the error raised when
    ``dead_letters`` is off).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        registry: RegistryClient | None = None,
        schema: PaymentSchema | None = None,
        from_beginning: bool = False,
        dead_letters: bool = True,
        handler_retries: int = 3,
        retry_backoff: float = 0.5,
        kafka_options: Mapping[str, Any] | None = None,
        kafka_overrides: dict[str, Any] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self._telemetry = telemetry
        self._registry = registry
        self._owns_registry = registry is None
        self._schema = schema
        self._from_beginning = from_beginning
        self._dead_letters = dead_letters
        self._handler_retries = handler_retries
        self._retry_backoff = retry_backoff
        self._overrides = client_kafka_options(kafka_options, kafka_overrides, "PaymentTracker")
        self._consumer: Consumer | None = None
        self._decode: EventDeserializer | None = None
        self._dlq: DeadLetterWriter | None = None
        self._unacked: Any = None
        self._batch: deque[Any] = deque()
        self._stop = threading.Event()
        self._replayed: set[tuple[str, int]] = set()
        self._assigned: set[tuple[str, int]] = set()
        self._at_end: set[tuple[str, int]] = set()
        self._handled = 0
        self._dead_lettered = 0
        self._watch = SecurityWatch(self.settings, operation="READ")
        self._started_at = time.monotonic()
        self._diagnosed = False
        # Grows while the registry is out, across polls; a decoded record resets it.
        self._decode_backoff = retry_backoff

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Connect and subscribe; idempotent."""
        if self._consumer is not None:
            return self
        schema = self._schema or load_schema(self.settings.schema_path)
        require_agreement(schema)
        if self._registry is None:
            self._registry = RegistryClient(self.settings)
        self._decode = EventDeserializer(schema, self._registry.schema_by_id)
        self._telemetry = telemetry = telemetry_for(self.settings, self._telemetry)
        library: dict[str, Any] = {"enable.partition.eof": True}
        if telemetry is not None and telemetry.wants_statistics:
            group = self.settings.group_id
            if "statistics.interval.ms" not in self._overrides:
                library["statistics.interval.ms"] = STATISTICS_INTERVAL_MS
            library["stats_cb"] = lambda stats: telemetry.statistics(group, stats)
        conf = self.settings.consumer_config(self._overrides, error_cb=self._on_error, **library)
        if self._from_beginning:
            conf["auto.offset.reset"] = "earliest"
        try:
            self._consumer = Consumer(conf)
        except KafkaException as exc:
            raise client_creation_error(self.settings, exc) from None
        self._started_at = time.monotonic()
        self._consumer.subscribe(
            [self.settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        log.info(
            "tracker subscribed to %s as group %s", self.settings.topic, self.settings.group_id
        )
        return self

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
        """Commit what was handled and leave the group. The event in hand is not committed."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        self._unacked = None
        self._batch.clear()  # never handled, never stored: the group reads them again
        try:
            self._commit(consumer)
        finally:
            consumer.close()
            if self._dlq is not None:
                self._dlq.close()
            if self._owns_registry and self._registry is not None:
                self._registry.close()
                self._registry = None

    def stop(self) -> None:
        """Ask a running loop to stop after the current event (thread- and signal-safe)."""
        self._stop.set()

    @property
    def handled(self) -> int:
        """Events handled (acknowledged) so far."""
        return self._handled

    @property
    def dead_lettered(self) -> int:
        """Records sent to the dead-letter topic so far."""
        return self._dead_lettered

    def commit(self) -> None:
        """Commit the offsets of handled events now (normally done in the background)."""
        self._commit(self._started())

    # -- reading -----------------------------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> TrackedEvent | None:
        """The next event, or ``None`` if none came within ``timeout``.

        Asking for the next event acknowledges the previous one.
        """
        self.ack()
        deadline = time.monotonic() + timeout
        consumer = self._started()
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            msg = self._next_message(consumer, min(left, 0.5))
            self._check_access()
            if msg is None:
                continue
            if msg.error() is not None:
                self._on_message_error(msg)
                continue
            try:
                schema_id, event = self._decoder().decode(msg.value())
            except DecodeError as exc:
                if exc.retriable:
                    self._retry_later(consumer, msg, exc, self._decode_backoff)
                    self._decode_backoff = min(self._decode_backoff * 2, _MAX_BACKOFF)
                    continue
                self._dead_letter(msg, exc.reason.value, str(exc), exc.schema_id, exc)
                continue
            except BaseException:
                # Not the record's fault (refused registry credentials...): it must be read
                # again by whoever polls next, not skipped by a later stored offset.
                self._rewind(msg)
                raise
            self._decode_backoff = self._retry_backoff
            self._unacked = msg
            key = msg.key()
            ts_type, ts = msg.timestamp()
            return TrackedEvent(
                event=event,
                topic=msg.topic() or self.settings.topic,
                partition=msg.partition() or 0,
                offset=msg.offset() or 0,
                key=key.decode("utf-8", "replace") if key is not None else None,
                schema_id=schema_id,
                appended_at=datetime.fromtimestamp(ts / 1000, UTC) if ts_type and ts > 0 else None,
            )
        return None

    def ack(self) -> None:
        """Mark the event last returned by :meth:`poll` as handled."""
        msg, self._unacked = self._unacked, None
        if msg is not None and self._consumer is not None:
            self._consumer.store_offsets(message=msg)
            self._handled += 1

    def records(
        self,
        *,
        max_records: int | None = None,
        idle_timeout: float | None = None,
        stop_at_end: bool = False,
    ) -> Iterator[TrackedEvent]:
        """Events with their position, until :meth:`stop`, ``max_records``, ``idle_timeout``
        seconds without one, or (``stop_at_end``) every assigned partition read to its end."""
        count = 0
        idle_since = time.monotonic()
        while not self._stop.is_set():
            if max_records is not None and count >= max_records:
                break
            record = self.poll(0.5)
            if record is None:
                if stop_at_end and self._assigned and self._assigned <= self._at_end:
                    break
                if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                    break
                continue
            idle_since = time.monotonic()
            count += 1
            in_hand = self._unacked
            try:
                yield record
            except GeneratorExit:
                # The loop left early (break, or its body raised): the event in hand was not
                # asked past, so it is read again instead of being acknowledged by the next poll.
                # (Only if still in hand: a generator closed late must not touch a newer one.)
                if in_hand is not None and self._unacked is in_hand:
                    self._unacked = None
                    self._rewind(in_hand)
                raise
        self.ack()

    def __iter__(self) -> Iterator[PaymentEvent]:
        """Events forever (until :meth:`stop` or a signal); each is acknowledged when the
        loop asks for the next one."""
        for record in self.records():
            yield record.event

    def run(
        self,
        handler: Callable[[PaymentEvent], object],
        *,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        stop_at_end: bool = False,
        handle_signals: bool = True,
    ) -> int:
        """Call ``handler`` for each event until stopped; returns how many were handled.

        SIGINT and SIGTERM stop the loop cleanly after the current event (when called from
        the main thread), committing everything handled.
        """
        restore = self._install_signals() if handle_signals else None
        handled = 0
        try:
            for record in self.records(
                max_records=max_events, idle_timeout=idle_timeout, stop_at_end=stop_at_end
            ):
                self._handle(handler, record)
                self.ack()
                handled += 1
        finally:
            if restore is not None:
                restore()
        return handled

    # -- internals ---------------------------------------------------------------------------

    def _handle(self, handler: Callable[[PaymentEvent], object], record: TrackedEvent) -> None:
        delay = self._retry_backoff
        telemetry = self._telemetry
        for attempt in range(1, self._handler_retries + 2):
            try:
                if telemetry is None:
                    handler(record.event)
                else:
                    self._observed_call(telemetry, handler, record)
            except Exception as exc:
                if attempt <= self._handler_retries and not self._stop.is_set():
                    if telemetry is not None:
                        telemetry.retried(record.topic, self.settings.group_id)
                    log.warning(
                        "handler failed on %s[%d]@%d (attempt %d): %r; retrying in %.1fs",
                        record.topic,
                        record.partition,
                        record.offset,
                        attempt,
                        exc,
                        delay,
                    )
                    self._stop.wait(delay)
                    delay = min(delay * 2, _MAX_BACKOFF)
                    continue
                if not self._dead_letters:
                    msg, self._unacked = self._unacked, None
                    self._rewind(msg)
                    raise
                msg, self._unacked = self._unacked, None
                self._dead_letter(
                    msg,
                    "handler_failed",
                    f"{type(exc).__name__}: {exc}",
                    record.schema_id,
                    exc,
                    attempts=attempt,
                )
                return
            if telemetry is not None:
                telemetry.handled(record.topic, self.settings.group_id)
            return

    def _observed_call(
        self, telemetry: Telemetry, handler: Callable[[PaymentEvent], object], record: TrackedEvent
    ) -> None:
        msg = self._unacked
        with telemetry.handling(
            topic=record.topic,
            group=self.settings.group_id,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            event=record.event,
            headers=msg.headers() if msg is not None else None,
        ):
            handler(record.event)

    def _dead_letter(
        self,
        msg: Any,
        reason: str,
        message: str,
        schema_id: int | None,
        cause: BaseException,
        *,
        attempts: int = 1,
    ) -> None:
        if not self._dead_letters:
            raise cause
        if self._dlq is None:
            self._dlq = DeadLetterWriter(self.settings)
        try:
            self._dlq.write(
                msg, reason=reason, message=message, schema_id=schema_id, attempts=attempts
            )
        except BaseException:
            self._rewind(msg)  # not dead-lettered, so not skipped either
            raise
        self._dead_lettered += 1
        if self._telemetry is not None:
            self._telemetry.dead_lettered(msg.topic(), self.settings.group_id, reason)
        if self._consumer is not None:
            self._consumer.store_offsets(message=msg)

    def _next_message(self, consumer: Consumer, timeout: float) -> Any:
        """The next record: from the batch in hand, else from a new batch, else wait for one.

        Why: one ``consume()`` per batch costs far less than one ``poll()`` per record. The
        batch is taken without waiting (only what librdkafka has already fetched), and when
        there is none ``poll()`` returns as soon as one record arrives, so batching adds no
        latency. Records in hand are not acknowledged: a seek or a revoke drops those of its
        partition (:meth:`_drop_batched`) and ``close()`` drops all, so they are read again.
        """
        batch = self._batch
        if batch:
            return batch.popleft()
        records = consumer.consume(_BATCH, 0)
        if records:
            batch.extend(records)
            return batch.popleft()
        return consumer.poll(timeout)

    def _drop_batched(self, topic: str | None, partition: int | None) -> None:
        """Forget records in hand from one partition: it was sought back or revoked."""
        if self._batch:
            self._batch = deque(
                m for m in self._batch if m.partition() != partition or m.topic() != topic
            )

    def _retry_later(self, consumer: Consumer, msg: Any, exc: DecodeError, delay: float) -> None:
        log.warning(
            "cannot decode %s[%d]@%d yet (%s); retrying in %.1fs, the record is kept",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            exc,
            delay,
        )
        consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
        self._drop_batched(msg.topic(), msg.partition())
        self._stop.wait(delay)

    def _rewind(self, msg: Any) -> None:
        """Seek back to ``msg`` so the next poll reads it again: it was not handled."""
        if msg is None or self._consumer is None:
            return
        self._drop_batched(msg.topic(), msg.partition())
        try:
            self._consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
        except KafkaException as exc:
            # Partition revoked meanwhile: its new owner starts at the committed offset, which
            # is still before this record.
            log.info(
                "cannot seek back to %s[%d]@%d: %s",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                exc.args[0].str(),
            )

    def _on_message_error(self, msg: Any) -> None:
        err = msg.error()
        code = err.code()
        tp = (msg.topic(), msg.partition())
        if code == _RdKafkaError._PARTITION_EOF:
            self._at_end.add(tp)
            return
        refused = self._watch.classify(err)
        if refused is not None:
            raise refused
        if err.fatal():
            raise KafkaError(f"fatal consumer error: {err.str()}", code=err.name())
        log.warning("consumer: %s", err.str(), extra={"code": err.name()})

    def _check_access(self) -> None:
        """Raise a refused login or TLS failure; and if no partition came after a while,
        check once whether this plaintext client is talking to a TLS listener."""
        self._watch.check()
        if (
            not self._diagnosed
            and not self._assigned
            and time.monotonic() - self._started_at > _DIAGNOSE_AFTER
        ):
            self._diagnosed = True
            self._watch.diagnose()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._assigned.add(key)
            if self._from_beginning and key not in self._replayed:
                tp.offset = OFFSET_BEGINNING
                self._replayed.add(key)
        consumer.assign(partitions)
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._unacked = None
        for tp in partitions:
            self._drop_batched(tp.topic, tp.partition)
            self._assigned.discard((tp.topic, tp.partition))
            self._at_end.discard((tp.topic, tp.partition))
        self._commit(consumer)

    def _commit(self, consumer: Consumer) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() != _RdKafkaError._NO_OFFSET:
                log.warning("commit failed: %s", err.str())

    def _on_error(self, err: Any) -> None:
        first = self._watch.error is None
        if self._watch.observe(err):
            if first:  # librdkafka repeats it on every reconnect: one line is enough
                log.error("tracker refused: %s", self._watch.error)
            return
        log.warning("consumer: %s", err.str())

    def _install_signals(self) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: stopping after the current event", signum)
            self.stop()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for s, handler in previous.items():
                signal.signal(s, handler)

        return restore

    def _started(self) -> Consumer:
        if self._consumer is None:
            raise PayKafkaError(
                "the tracker is not started: use `with PaymentTracker() as tracker:` or call "
                "start() first"
            )
        return self._consumer

    def _decoder(self) -> EventDeserializer:
        assert self._decode is not None
        return self._decode
