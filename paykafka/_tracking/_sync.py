"""``PaymentTracker``: typed events out of the payments topic, at least once, with threads.

A thin shell over :class:`~paykafka._tracking._core.TrackerCore`: it reads records with
confluent-kafka, feeds them to the core, runs what the core hands out, and commits the
offsets the core says are safe (each partition's handled prefix) every ``commit_interval``,
on revoke and on close. So a crash, a stop or a rebalance re-delivers unhandled events
instead of skipping them.

``run(handler)`` calls the handler in ``concurrency`` worker threads while the calling thread
keeps serving the consumer (fetching, heartbeats, rebalances), pausing the partitions once
the buffer is full: a handler slower than ``max.poll.interval.ms`` does not cost the group
membership. Iterating (``records()``, ``poll()``, ``for event in tracker``) hands events to
the caller one at a time in its own thread; the caller is then the handler.

A record that can never become a ``PaymentEvent`` goes to the dead-letter topic and tracking
continues; with dead letters off, the error is raised and the tracker stays on that record. A
registry outage is not bad data: the record is retried with backoff, holding back only later
records of its key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as _RdKafkaError

from paykafka._dlq import DeadLetterWriter
from paykafka._errors import (
    ConfigError,
    ConflictingDuplicateError,
    DatabaseError,
    DecodeError,
    DecodeReason,
    KafkaError,
    PayKafkaError,
)
from paykafka._event import PaymentEvent
from paykafka._exactly_once import AsyncInbox, Inbox, InboxOutcome
from paykafka._schema import load_schema
from paykafka._security import client_creation_error
from paykafka._serde import EventDeserializer
from paykafka._signals import install_stop_signals
from paykafka._tracking._base import Decoded, TrackedEvent, TrackerBase
from paykafka._tracking._core import Verdict, Work

if TYPE_CHECKING:
    from paykafka._observability._metrics import ConsumerSeries

__all__ = ["PaymentTracker"]

log = logging.getLogger("paykafka.tracker")

# Records taken from librdkafka per consume() call: one call per batch costs far less than
# one poll() per record.
_BATCH = 500
# Longest a revoke waits for in-flight handlers of the revoked partitions. It runs inside the
# rebalance, which the group gives up on after max.poll.interval.ms: never wait half of that.
_REVOKE_WAIT = 30.0

TP = tuple[str, int]


def _take(consumer: Consumer, timeout: float) -> list[Any]:
    """What librdkafka has fetched already (without waiting), else the first record to come
    within ``timeout``. Why: ``consume(n, t)`` waits for all ``n`` records or all of ``t``."""
    msgs: list[Any] = consumer.consume(_BATCH, 0)
    if msgs:
        return msgs
    msg = consumer.poll(timeout)
    return [] if msg is None else [msg]


class _Run:
    """One ``run()``'s limits and shared state (read by the workers under the lock)."""

    def __init__(
        self, limit: int | None, idle_timeout: float | None, stop_at_end: bool, seen: int
    ) -> None:
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.stop_at_end = stop_at_end
        self.failures: list[BaseException] = []
        self.running = True
        self.seen = seen
        self.idle_since = time.monotonic()


class PaymentTracker(TrackerBase):
    """Reads :class:`PaymentEvent`s from the payments topic; use it as a context manager.

    ``concurrency`` handlers run at once in :meth:`run` (threads): records of one key (user)
    strictly in offset order, different keys concurrently. ``1`` handles one record at a
    time. ``handler_retries`` and ``dead_letters`` govern :meth:`run`: a handler that raises
    is retried with backoff (holding back only its key), then its record is dead-lettered (or
    the error raised when ``dead_letters`` is off). ``from_beginning``: see
    :class:`~paykafka._tracking._base.TrackerBase`. ``inbox`` (a :class:`~paykafka.SqliteInbox`
    or :class:`~paykafka.PostgresInbox`) applies each payment once: see :meth:`run`.
    """

    def _init_shell(self) -> None:
        if self._inbox is not None and not isinstance(self._inbox, Inbox):
            raise ConfigError(
                "PaymentTracker needs a SqliteInbox or a PostgresInbox (the Async* inboxes are "
                "for AsyncPaymentTracker)"
            )
        self._consumer: Consumer | None = None
        self._decode: EventDeserializer | None = None
        self._dlq: DeadLetterWriter | None = None
        self._dlq_lock = threading.Lock()
        # Guards the core: workers, the polling thread and librdkafka callbacks share it.
        self._cond = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._in_hand: Work[Any] | None = None
        self._incremental = False
        self._revoking = False
        self._last_fetch = 0.0
        self._revoke_wait = _REVOKE_WAIT
        self._undecodable = 0  # dead letters that never were events (not run()'s events)
        # The consumer is used by the calling thread and by the keeper (re-entrant: librdkafka
        # runs rebalance callbacks inside consume(), and they call the consumer again).
        self._client = threading.RLock()
        # Since when the calling thread has been inside a handler (or the caller's loop body);
        # the keeper serves the consumer when that lasts.
        self._busy_since: float | None = None
        self._kept: list[TP] = []
        self._keeper: threading.Thread | None = None
        self._closing = threading.Event()
        self._keep_after = 1.0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Connect and subscribe; idempotent."""
        if self._consumer is not None:
            return self
        self._decode, conf = self._prepare(self._schema or load_schema(self.settings.schema_path))
        self._revoke_wait = min(
            _REVOKE_WAIT, float(conf.get("max.poll.interval.ms", 300_000)) / 2000
        )
        poll_interval = float(conf.get("max.poll.interval.ms", 300_000)) / 1000
        self._keep_after = min(1.0, poll_interval / 4)
        try:
            self._consumer = Consumer(conf)
        except KafkaException as exc:
            raise client_creation_error(self.settings, exc) from None
        self._started_at = time.monotonic()
        self._closing.clear()
        self._keeper = threading.Thread(target=self._keep, name="paykafka-keeper", daemon=True)
        self._keeper.start()
        self._consumer.subscribe(
            [self.settings.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
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
        consumer = self._consumer
        if consumer is None:
            return
        with self._cond:
            if self._in_hand is not None:
                self._core.release(self._in_hand)
                self._in_hand = None
                self._cond.notify_all()
        self._busy_since = None
        self._closing.set()
        if self._keeper is not None:
            self._keeper.join()
            self._keeper = None
        try:
            self._commit(consumer, final=True)
        finally:
            with self._client:
                consumer.close()  # revokes (and commits nothing new) before leaving
            self._consumer = None
            if self._dlq is not None:
                self._dlq.close()
            if self._owns_registry and self._registry is not None:
                self._registry.close()
                self._registry = None

    def stop(self) -> None:
        """Ask a running loop to stop after the events in flight (thread- and signal-safe)."""
        self._stop.set()

    def commit(self) -> None:
        """Commit the offsets of handled events now (normally done every commit_interval)."""
        self._commit(self._started(), final=True)

    # -- reading one at a time ---------------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> TrackedEvent | None:
        """The next event, or ``None`` if none came within ``timeout``.

        Asking for the next event acknowledges the previous one.
        """
        if self._inbox is not None:
            raise ConfigError(
                "a tracker with an inbox applies events in run(handler), inside the inbox's "
                "transaction; iterating would acknowledge them outside it"
            )
        self.ack()
        consumer = self._started()
        core = self._core
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            now = time.monotonic()
            with self._cond:
                work = core.next_work(now)
                due = core.commit_due(now)
            if due:
                self._commit(consumer)
            if work is not None:
                decoded = self._decoded(work)
                if decoded is None:
                    continue
                self._in_hand = work
                self._busy_since = time.monotonic()  # the caller's loop body is the handler
                return TrackedEvent.of(work, decoded)
            left = deadline - now
            if left <= 0:
                return None
            retry_at = core.next_deadline()
            wait = min(left, 0.5) if retry_at is None else min(left, max(retry_at - now, 0.0))
            if core.full:
                self._stop.wait(min(wait, 0.05))
            else:
                self._fetch(consumer, wait)
        return None

    def ack(self) -> None:
        """Mark the event last returned by :meth:`poll` as handled."""
        work, self._in_hand = self._in_hand, None
        self._busy_since = None
        if work is not None:
            with self._cond:
                self._core.handled(work)
                if self._revoking:
                    self._cond.notify_all()

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
                if stop_at_end and self._core.all_at_end():
                    break
                if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                    break
                continue
            idle_since = time.monotonic()
            count += 1
            in_hand = self._in_hand
            try:
                yield record
            except GeneratorExit:
                # The loop left early (break, or its body raised): the event in hand was not
                # asked past, so it is handed out again instead of being acknowledged.
                # (Only if still in hand: a generator closed late must not touch a newer one.)
                if in_hand is not None and self._in_hand is in_hand:
                    self._in_hand = None
                    self._busy_since = None
                    with self._cond:
                        self._core.release(in_hand)
                        self._cond.notify_all()
                raise
        self.ack()

    def __iter__(self) -> Iterator[PaymentEvent]:
        """Events forever (until :meth:`stop` or a signal); each is acknowledged when the
        loop asks for the next one."""
        for record in self.records():
            yield record.event

    # -- handling with workers ---------------------------------------------------------------

    def run(
        self,
        handler: Callable[..., object],
        *,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        stop_at_end: bool = False,
        handle_signals: bool = True,
    ) -> int:
        """Call ``handler`` for each event until stopped; returns how many were handled, as
        :attr:`handled` counts them (dead-lettered records are counted in :attr:`dead_lettered`;
        ``max_events`` counts events finished either way; records that never decoded into an
        event are not events).

        SIGINT and SIGTERM stop the loop cleanly (when called from the main thread): no new
        event is started, the ones in flight finish (a failing one is left unacknowledged, to
        be read again), and everything handled is committed.

        With an ``inbox`` the handler is ``handler(event, tx)`` and runs inside the inbox's
        transaction (see :class:`~paykafka.SqliteInbox`); payments applied before are skipped
        and counted in :attr:`duplicates`.
        """
        consumer = self._started()
        self.ack()
        restore = self._install_signals() if handle_signals else None
        core = self._core
        start = core.handled_count
        finished = self._events_finished()
        limit = None if max_events is None else finished + max_events
        state = _Run(limit, idle_timeout, stop_at_end, finished)
        try:
            if self.policy.concurrency == 1 and self._inbox is None:
                self._run_inline(consumer, handler, state)
            else:
                self._run_workers(consumer, handler, state)
        finally:
            if restore is not None:
                restore()
        if state.failures:
            raise state.failures[0]
        return core.handled_count - start

    def _run_inline(  # noqa: PLR0912, PLR0915 - the hot loop, inlined on purpose (benchmarks/)
        self, consumer: Consumer, handler: Callable[[PaymentEvent], object], state: _Run
    ) -> None:
        """One at a time, in the calling thread (the keeper serves the consumer meanwhile).

        The hot loop: one lock per record (reporting the last one and taking the next
        together) and the decode inlined; every failure takes the general path."""
        core = self._core
        cond = self._cond
        stop = self._stop
        monotonic = time.monotonic
        decode = self._decoder().decode
        limit = state.limit
        done: Work[Any] | None = None
        telemetry = self._telemetry
        # With metrics alone, handler calls are timed here rather than through Telemetry.call:
        # the per-event cost is then two clock reads and one write of the series.
        group = self.settings.group_id
        timers: dict[str, ConsumerSeries] | None = None
        if telemetry is not None and telemetry.timer(self.settings.topic, group) is not None:
            timers = {}
        while not stop.is_set():
            now = monotonic()
            with cond:
                if done is not None:
                    core.handled(done)
                    done = None
                    if self._revoking:
                        cond.notify_all()
                if limit is None or (
                    core.handled_count + core.dead_lettered_count - self._undecodable < limit
                ):
                    work = core.next_work(now)
                else:
                    work = None
                due = core.commit_due(now)
            if due:
                self._commit(consumer)
            if work is None:
                if not self._between(consumer, state):
                    return
                continue
            self._busy_since = now
            try:
                value = work.value
                if value is None:
                    try:
                        value = work.value = decode(work.record.value())
                    except Exception:  # noqa: BLE001 - the general path decides what it means
                        value = self._decoded(work)
                if value is not None:
                    try:
                        if telemetry is None:
                            handler(value[1])  # type: ignore[index]
                        elif timers is None:
                            telemetry.call(
                                handler,
                                value[1],  # type: ignore[index]
                                work.topic,
                                group,
                                work.record,
                            )
                        else:
                            timer = timers.get(work.topic)
                            if timer is None:
                                made = telemetry.timer(work.topic, group)
                                assert made is not None
                                timer = timers[work.topic] = made
                            started = perf_counter()
                            try:
                                handler(value[1])  # type: ignore[index]
                            except BaseException:
                                timer.duration.observe(perf_counter() - started)
                                raise
                            timer.handled_in(perf_counter() - started)
                    except Exception as exc:  # noqa: BLE001 - the core decides what it means
                        self._handler_failed(work, value, exc)  # type: ignore[arg-type]
                    else:
                        done = work
            except BaseException as exc:  # noqa: BLE001 - re-raised by run()
                with cond:
                    core.release(work)
                state.failures.append(exc)
                return
            finally:
                self._busy_since = None
        if done is not None:
            with cond:
                core.handled(done)

    def _run_workers(self, consumer: Consumer, handler: Callable[..., object], state: _Run) -> None:
        """``concurrency`` worker threads handle; this thread serves the consumer."""
        workers = [
            threading.Thread(
                target=self._work,
                args=(handler, state),
                name=f"paykafka-handler-{i}",
                daemon=True,
            )
            for i in range(self.policy.concurrency)
        ]
        for worker in workers:
            worker.start()
        try:
            while not self._stop.is_set() and not state.failures:
                with self._cond:
                    full = self._core.full and not self._core.paused
                    if full:
                        self._cond.wait(0.05)  # a worker frees room soon, or flow() pauses
                if not self._between(consumer, state, fetch=not full):
                    return
        finally:
            with self._cond:
                state.running = False
                self._cond.notify_all()
            self._drain(consumer, workers)

    def _between(self, consumer: Consumer, state: _Run, *, fetch: bool = True) -> bool:
        """Everything but handling: limits, flow, commits, fetching. False: stop running."""
        core = self._core
        now = time.monotonic()
        with self._cond:
            done = self._events_finished()
            if state.limit is not None and done >= state.limit:
                return False
            if state.stop_at_end and core.all_at_end():
                return False
            pause, resume = core.flow(now)
            due = core.commit_due(now)
            busy = core.held > 0
        if done != state.seen:
            state.seen = done
            state.idle_since = now
        elif (
            state.idle_timeout is not None
            and now - max(state.idle_since, self._last_fetch) >= state.idle_timeout
        ):
            return False
        self._flow(consumer, pause, resume)
        if due:
            self._commit(consumer)
        if fetch:
            retry_at = core.next_deadline()
            wait = 0.1 if busy else 0.5
            if retry_at is not None:
                wait = min(wait, max(retry_at - now, 0.0))
            self._fetch(consumer, wait)
        return not state.failures

    def _work(self, handler: Callable[..., object], state: _Run) -> None:
        """A worker thread: take the next record the core hands out, decode, handle, report."""
        core = self._core
        cond = self._cond
        stop = self._stop
        monotonic = time.monotonic
        limit, failures = state.limit, state.failures
        done: Work[Any] | None = None
        while True:
            with cond:
                if done is not None:
                    core.handled(done)
                    done = None
                    if self._revoking:
                        cond.notify_all()
                while True:
                    if not state.running or stop.is_set() or failures:
                        return
                    finished = self._events_finished()
                    if limit is None or finished + core.in_flight < limit:
                        work = core.next_work(monotonic())
                        if work is not None:
                            break
                    retry_at = core.next_deadline()
                    cond.wait(0.5 if retry_at is None else max(retry_at - monotonic(), 0.001))
            try:
                if self._handle(handler, work):
                    done = work
            except BaseException as exc:  # noqa: BLE001 - re-raised by run() in its caller
                with cond:
                    failures.append(exc)
                    cond.notify_all()
                return

    def _handle(self, handler: Callable[..., object], work: Work[Any]) -> bool:
        """Decode and handle one record; True when handled (the caller tells the core, so it
        can take its next record under the same lock). With an inbox the handler runs inside
        its transaction, once per payment id."""
        decoded = self._decoded(work)
        if decoded is None:
            return False
        inbox = self._inbox
        outcome = InboxOutcome.APPLIED
        try:
            if inbox is None:
                if self._telemetry is None:
                    handler(decoded[1])
                else:
                    self._traced_call(handler, work, decoded[1])
            else:
                outcome = self._apply(inbox, handler, work, decoded[1])
        except DatabaseError as exc:
            if not exc.retriable:
                self._handler_failed(work, decoded, exc)
                return False
            with self._cond:
                verdict = self._core.unavailable(
                    work, time.monotonic(), stopping=self._stop.is_set()
                )
                self._cond.notify_all()
            self._log_unavailable_verdict(work, exc, verdict)
            return False
        except Exception as exc:  # noqa: BLE001 - the core decides what it means
            self._handler_failed(work, decoded, exc)
            return False
        except BaseException:
            with self._cond:
                self._core.release(work)
            raise
        if outcome is InboxOutcome.APPLIED:
            return True
        with self._cond:
            settled = self._settle_outcome(work, outcome, stopping=self._stop.is_set())
            self._cond.notify_all()
        if settled is Verdict.DEAD_LETTER:
            conflict = ConflictingDuplicateError(str(decoded[1].payment_id))
            self._dead_letter(
                work, DecodeReason.CONFLICTING_DUPLICATE.value, str(conflict), decoded[0], conflict
            )
        elif settled is Verdict.RAISE:
            raise ConflictingDuplicateError(str(decoded[1].payment_id))
        return False

    def _apply(
        self,
        inbox: Inbox | AsyncInbox,
        handler: Callable[..., object],
        work: Work[Any],
        event: PaymentEvent,
    ) -> InboxOutcome:
        """``handler(event, tx)`` through the inbox (inside its span when telemetry is on)."""
        assert isinstance(inbox, Inbox)
        self._check_age(work)
        if self._telemetry is None:
            return inbox.apply(event, handler)
        with self._observed(work, event):
            outcome = inbox.apply(event, handler)
        if outcome is InboxOutcome.APPLIED:
            self._count_handled(work)
        return outcome

    def _handler_failed(self, work: Work[Any], decoded: Decoded, exc: Exception) -> None:
        """Carry out the core's verdict on a failed handler; raises when it says so."""
        with self._cond:
            verdict = self._core.handler_failed(
                work, time.monotonic(), stopping=self._stop.is_set()
            )
            self._cond.notify_all()
        self._log_handler_verdict(work, exc, verdict)
        if verdict is Verdict.DEAD_LETTER:
            self._dead_letter(
                work, "handler_failed", f"{type(exc).__name__}: {exc}", decoded[0], exc
            )
        elif verdict is Verdict.RAISE:
            raise exc

    def _drain(self, consumer: Consumer, workers: list[threading.Thread]) -> None:
        """Wait for the workers to finish what is in flight, serving the consumer meanwhile
        (paused) so a long handler does not cost the group membership."""
        ours: list[TP] = []
        while any(w.is_alive() for w in workers):
            with self._cond:
                fresh = [tp for tp in self._core.assignment if tp not in self._core.paused]
            fresh = [tp for tp in fresh if tp not in ours]
            self._flow(consumer, fresh, [])
            ours += fresh
            self._fetch(consumer, 0.1)  # nothing normally (paused); kept in the core if any
            for worker in workers:
                worker.join(0.0)
        with self._cond:
            # The core's own pauses stay until it resumes them; ours end here.
            resume = [
                tp for tp in ours if tp in self._core.assignment and tp not in self._core.paused
            ]
        self._flow(consumer, [], resume)

    # -- the core's decisions, carried out ---------------------------------------------------

    def _decoded(self, work: Work[Any]) -> Decoded | None:
        """The record's decoded event, or None when the core decided otherwise (retry later,
        dead-lettered); raises when the core says so."""
        value = work.value
        if value is not None:
            return cast("Decoded", value)
        try:
            decoded = self._decoder().decode(work.record.value())
        except DecodeError as exc:
            with self._cond:
                verdict = self._core.decode_failed(
                    work, time.monotonic(), retriable=exc.retriable, stopping=self._stop.is_set()
                )
                self._cond.notify_all()
            self._log_decode_verdict(work, exc, verdict)
            if verdict is Verdict.DEAD_LETTER:
                self._dead_letter(work, exc.reason.value, str(exc), exc.schema_id, exc)
                with self._cond:
                    self._undecodable += 1
            elif verdict is Verdict.RAISE:
                raise
            return None
        except BaseException:
            # Not the record's fault (refused registry credentials...): it must be read
            # again, not skipped.
            with self._cond:
                self._core.release(work)
            raise
        work.value = decoded
        return decoded

    def _events_finished(self) -> int:
        """Events handled, found applied before (an inbox's duplicates) or dead-lettered after
        their handler failed (under ``_cond``)."""
        core = self._core
        return (
            core.handled_count + core.duplicate_count + core.dead_lettered_count - self._undecodable
        )

    def _dead_letter(
        self,
        work: Work[Any],
        reason: str,
        message: str,
        schema_id: int | None,
        cause: BaseException,
    ) -> None:
        try:
            with self._dlq_lock:
                if self._dlq is None:
                    self._dlq = DeadLetterWriter(self.settings)
                dlq = self._dlq
            dlq.write(
                work.record,
                reason=reason,
                message=message,
                schema_id=schema_id,
                attempts=max(work.attempts, 1),
            )
        except BaseException:
            with self._cond:
                self._core.release(work)  # not dead-lettered, so not skipped either
            raise
        with self._cond:
            self._core.dead_lettered(work)
        self._count_dead_letter(work, reason)
        del cause

    def _fetch(self, consumer: Consumer, timeout: float) -> None:
        """Read what librdkafka has (waiting up to ``timeout`` for the first) into the core."""
        with self._client:
            if self._kept:
                self._unkeep(consumer)
            msgs = _take(consumer, timeout)
        self._check_access()
        if msgs:
            self._feed(msgs)

    def _feed(self, msgs: list[Any]) -> None:
        self._last_fetch = time.monotonic()
        core = self._core
        with self._cond:
            if all(m.error() is None for m in msgs):
                core.fetched(msgs)
            else:
                batch: list[Any] = []
                for msg in msgs:
                    if msg.error() is None:
                        batch.append(msg)
                        continue
                    core.fetched(batch)
                    batch = []
                    self._on_message_error(msg)
                core.fetched(batch)
            self._cond.notify_all()

    # -- the keeper: serving the consumer while the calling thread is in a handler ------------

    def _keep(self) -> None:
        """While the calling thread has been in one handler (or loop body) longer than
        ``_keep_after``, pause every partition and keep calling the consumer, so heartbeats,
        ``max.poll.interval.ms`` and rebalances are served; records that still come are fed
        to the core, never dropped."""
        keeping = False
        while not self._closing.wait(0.0 if keeping else 0.2):
            since = self._busy_since
            keeping = since is not None and time.monotonic() - since >= self._keep_after
            if not keeping:
                continue
            if not self._client.acquire(timeout=0.2):
                continue
            try:
                consumer = self._consumer
                if consumer is None or self._busy_since is None:
                    continue
                with self._cond:
                    core = self._core
                    fresh = [
                        tp
                        for tp in core.assignment
                        if tp not in core.paused and tp not in self._kept
                    ]
                self._flow(consumer, fresh, [])
                self._kept += fresh
                with self._cond:
                    due = core.commit_due(time.monotonic())
                if due:
                    self._commit(consumer)  # what was handled before this long one
                msgs = _take(consumer, 0.1)
            finally:
                self._client.release()
            if msgs:
                try:
                    self._feed(msgs)
                except PayKafkaError as exc:  # the calling thread's next fetch raises it
                    log.warning("keeper: %s", exc)

    def _unkeep(self, consumer: Consumer) -> None:
        """Resume what the keeper paused (the core's own pauses stay). Holds ``_client``."""
        with self._cond:
            resume = [
                tp
                for tp in self._kept
                if tp in self._core.assignment and tp not in self._core.paused
            ]
        self._kept = []
        self._flow(consumer, [], resume)

    def _flow(self, consumer: Consumer, pause: list[TP], resume: list[TP]) -> None:
        if not pause and not resume:
            return
        try:
            with self._client:
                if pause:
                    consumer.pause([TopicPartition(t, p) for t, p in pause])
                if resume:
                    consumer.resume([TopicPartition(t, p) for t, p in resume])
        except KafkaException as exc:
            log.info("pause/resume: %s", exc.args[0].str())

    def _commit(self, consumer: Consumer, *, final: bool = False) -> None:
        """Commit the handled prefixes that moved; synchronously when ``final``."""
        with self._cond:
            offsets = self._core.to_commit(time.monotonic())
        if not offsets:
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            with self._client:
                if final:
                    consumer.commit(offsets=tps, asynchronous=False)
                else:
                    consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as exc:
            err = exc.args[0]
            log.warning("commit failed: %s", err.str())
            with self._cond:
                self._core.commit_failed(offsets)

    def _on_commit(self, err: Any, partitions: list[TopicPartition]) -> None:
        if err is None:
            return
        log.warning("commit failed: %s", err.str())
        failed = {(tp.topic, tp.partition): tp.offset for tp in partitions}
        with self._cond:
            self._core.commit_failed(failed)

    def _on_message_error(self, msg: Any) -> None:
        err = msg.error()
        if err.code() == _RdKafkaError._PARTITION_EOF:
            self._core.at_end(msg.topic(), msg.partition())
            return
        refused = self._watch.classify(err)
        if refused is not None:
            raise refused
        if err.fatal():
            raise KafkaError(f"fatal consumer error: {err.str()}", code=err.name())
        log.warning("consumer: %s", err.str(), extra={"code": err.name()})

    # -- rebalances (called by librdkafka inside consume(): the calling thread or the keeper) --

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self._cond:
            self._core.assigned((tp.topic, tp.partition) for tp in partitions)
        if self._incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Stop handing out the partitions' records, let the in-flight ones finish (for a
        while), commit exactly what was handled, then let the partitions go."""
        tps = [(tp.topic, tp.partition) for tp in partitions]
        # Records in flight are finished by workers, or by the calling thread while the keeper
        # runs this; in the calling thread itself nothing is in flight, so nothing waits.
        deadline = time.monotonic() + min(_REVOKE_WAIT, self._revoke_wait)
        with self._cond:
            self._revoking = True
            try:
                pending = self._core.revoking(tps)
                while pending and time.monotonic() < deadline:
                    self._cond.wait(min(0.5, deadline - time.monotonic()))
                    pending = self._core.in_flight_of(tps)
                offsets = self._core.revoked(tps)
            finally:
                self._revoking = False
        if offsets:
            try:
                consumer.commit(
                    offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                    asynchronous=False,
                )
            except KafkaException as exc:
                log.warning("commit on revoke failed: %s", exc.args[0].str())
        self._unassign(consumer, partitions)
        log.info("revoked %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The partitions may already be someone else's: drop their records, commit nothing."""
        tps = [(tp.topic, tp.partition) for tp in partitions]
        with self._cond:
            self._core.lost(tps)
        self._unassign(consumer, partitions)
        log.warning("lost %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _unassign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._incremental:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    # -- plumbing ------------------------------------------------------------------------------

    def _on_error(self, err: Any) -> None:
        if not self._refused(err):
            log.warning("consumer: %s", err.str())

    def _install_signals(self) -> Callable[[], None] | None:
        return install_stop_signals(self.stop, "the events in flight")

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
