"""``AsyncPaymentTracker``: the asyncio shell over the tracking core.

Every decision (which record is next, key order, at most ``concurrency`` in flight, retry or
dead-letter, which offset is safe to commit, when to pause fetching) is made by
:class:`paykafka._tracking.TrackerCore`, the same core the sync ``PaymentTracker`` uses. This
module only does the I/O, on the event loop's thread:

* librdkafka is read with ``consume(n, 0)``, which never waits; when nothing came, the loop
  sleeps a few milliseconds (or until a handler finishes) and asks again. Rebalance and commit
  callbacks are served by those same calls, so the core is only ever touched from the loop;
* handlers run as tasks, at most ``concurrency`` at once, one per key at a time;
* what blocks (dead-letter writes that wait for their ack, the first fetch of a writer schema
  from the registry, the final commit and close) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self, cast

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
from paykafka._signals import call_on_loop, install_loop_stop_signals
from paykafka._tracking import TrackedEvent, TrackerBase, Verdict, Work
from paykafka._tracking._base import Decoded

__all__ = ["AsyncPaymentTracker"]

log = logging.getLogger(__name__)

# Records taken from librdkafka per consume() call.
_BATCH = 500
# Seconds between reads of librdkafka when the last one found nothing (a handler finishing
# wakes the loop sooner). Bounds the latency a quiet topic adds, at ~200 cheap calls/s.
_IDLE_POLL = 0.005
# Handlers started per turn of the loop: their first steps (decoding) run in the next turn, so
# this bounds how long one turn takes (and so the loop's lag) when hundreds are ready at once.
_HANDOUT_BATCH = 32
# Frame header bytes that carry the writer schema id (after the magic byte).
_ID_BYTES = slice(1, 5)

#: ``async def handler(event)``, or ``async def handler(event, tx)`` with an inbox.
Handler = Callable[..., Awaitable[object]]


class AsyncPaymentTracker(TrackerBase):
    """Reads :class:`PaymentEvent`s from asyncio code; use it with ``async with``.

    ``async for event in tracker`` hands events out one at a time, each acknowledged when the
    loop asks for the next. ``await tracker.run(handler)`` calls ``async def handler(event)``
    with up to ``concurrency`` events at once: one user's (key's) events strictly in offset
    order, different users' concurrently, and only offsets below the lowest unhandled record
    committed. ``concurrency=1`` handles one event at a time, like the sync tracker.

    The options are :class:`~paykafka.PaymentTracker`'s (the same ``TrackerBase``):
    ``handler_retries`` / ``retry_backoff`` retry a failing handler (holding back only later
    events of that key), then its record is dead-lettered (or the error raised with
    ``dead_letters=False``); ``max_buffered`` bounds the records held (fetching pauses while
    that many are held); commits happen every ``Settings.commit_interval``.
    """

    def _init_shell(self) -> None:
        if self._inbox is not None and not isinstance(self._inbox, AsyncInbox):
            raise ConfigError(
                "AsyncPaymentTracker needs an async inbox: AsyncSqliteInbox or AsyncPostgresInbox"
            )
        self._consumer: Consumer | None = None
        self._decode: EventDeserializer | None = None
        self._known_ids: set[bytes] = set()
        self._dlq: DeadLetterWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._closing = False
        self._incremental = False
        self._failure: BaseException | None = None
        self._tasks: dict[Work[Any], asyncio.Task[None]] = {}
        self._idle_since = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Self:
        """Connect and subscribe; idempotent."""
        if self._consumer is not None:
            return self
        self._loop = asyncio.get_running_loop()
        schema = self._schema
        if schema is None:
            schema = await asyncio.to_thread(load_schema, self.settings.schema_path)
        self._decode, conf = self._prepare(schema)
        try:
            consumer = Consumer(conf)
        except KafkaException as exc:
            raise client_creation_error(self.settings, exc) from None
        self._started_at = time.monotonic()
        consumer.subscribe(
            [self.settings.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._consumer = consumer
        log.info(
            "async tracker subscribed to %s as group %s (concurrency %d)",
            self.settings.topic,
            self.settings.group_id,
            self.policy.concurrency,
        )
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Abandon what is in flight, commit what was handled and leave the group."""
        consumer = self._consumer
        if consumer is None:
            return
        self._stopping = self._closing = True
        await self._abandon(list(self._tasks))
        offsets = self._core.to_commit(time.monotonic())
        self._consumer = None
        try:
            if offsets:
                await asyncio.to_thread(self._commit_now, consumer, offsets)
        finally:
            # close() serves the final revoke from its own thread; _closing keeps it harmless.
            await asyncio.to_thread(consumer.close)
            if self._dlq is not None:
                await asyncio.to_thread(self._dlq.close)
            if self._owns_registry and self._registry is not None:
                self._registry.close()
                self._registry = None

    def stop(self) -> None:
        """Ask the tracker to stop: nothing new is handed out, what is in flight finishes.

        Safe from any thread and from signal handlers.
        """
        if not call_on_loop(self._loop, self._request_stop):
            self._stopping = True

    @property
    def in_flight(self) -> int:
        """Events handed to a handler and not yet finished."""
        return self._core.in_flight

    async def commit(self) -> None:
        """Commit the offsets of handled events now (normally done every ``commit_interval``)."""
        consumer = self._started()
        offsets = self._core.to_commit(time.monotonic())
        if offsets:
            await asyncio.to_thread(self._commit_now, consumer, offsets)

    # -- reading one at a time -----------------------------------------------------------------

    async def records(
        self,
        *,
        max_records: int | None = None,
        idle_timeout: float | None = None,
        stop_at_end: bool = False,
    ) -> AsyncIterator[TrackedEvent]:
        """Events with their position, one at a time, until :meth:`stop`, ``max_records``,
        ``idle_timeout`` seconds without one, or (``stop_at_end``) every assigned partition
        read to its end. Each is acknowledged when the loop asks for the next one; one the
        loop did not get past (``break``, an exception) is read again."""
        if self._inbox is not None:
            raise ConfigError(
                "a tracker with an inbox applies events in run(handler), inside the inbox's "
                "transaction; iterating would acknowledge them outside it"
            )
        self._started()
        count = 0
        self._idle_since = time.monotonic()
        while not self._stopping and (max_records is None or count < max_records):
            work = await self._next(idle_timeout, stop_at_end, limit=1)
            if work is None:
                break
            decoded = await self._decoded(work)
            if decoded is None:
                continue
            record = TrackedEvent.of(work, decoded)
            count += 1
            try:
                yield record
            except GeneratorExit:
                self._core.release(work)
                raise
            self._core.handled(work)
            self._idle_since = time.monotonic()
        self._raise_failure()

    async def __aiter__(self) -> AsyncIterator[PaymentEvent]:
        """Events until :meth:`stop`; each acknowledged when the loop asks for the next."""
        async for record in self.records():
            yield record.event

    # -- handling concurrently -----------------------------------------------------------------

    async def run(
        self,
        handler: Handler,
        *,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        stop_at_end: bool = False,
        handle_signals: bool = True,
    ) -> int:
        """Await ``handler(event)`` for each event, up to ``concurrency`` at once, until
        stopped; returns how many were handled.

        SIGINT and SIGTERM (when the loop runs in the main thread) and :meth:`stop` end it
        gracefully: nothing new starts, handlers in flight finish, what was handled is
        committed. Cancelling ``run()`` abandons the handlers in flight instead (they are
        cancelled and their events read again later).
        """
        self._started()
        restore = self._install_signals() if handle_signals else None
        before = self._core.handled_count
        self._idle_since = time.monotonic()
        core = self._core
        loop = asyncio.get_running_loop()
        try:
            while not self._stopping:
                done = core.handled_count - before
                if max_events is not None and done >= max_events:
                    break
                got = self._pump()
                now = time.monotonic()
                room = _HANDOUT_BATCH
                if max_events is not None:
                    room = min(room, max_events - done - core.in_flight)
                started = 0
                while started < room:
                    work = core.next_work(now)
                    if work is None:
                        break
                    self._tasks[work] = loop.create_task(self._handle(handler, work))
                    started += 1
                if started == _HANDOUT_BATCH or got:
                    await asyncio.sleep(0)  # let what started run before handing out more
                    continue
                if self._finished(now, idle_timeout, stop_at_end):
                    break
                await self._sleep(self._wait(now))
            await self._settle()
        except BaseException:
            await self._abandon(list(self._tasks))
            raise
        finally:
            if restore is not None:
                restore()
        self._raise_failure()
        return self._core.handled_count - before

    # -- internals: the pump -------------------------------------------------------------------

    async def _next(
        self, idle_timeout: float | None, stop_at_end: bool, *, limit: int | None
    ) -> Work[Any] | None:
        """The next record whose turn it is, reading Kafka while there is none; None once the
        tracker stops, goes idle for ``idle_timeout`` or (``stop_at_end``) reached the end."""
        core = self._core
        while not self._stopping:
            got = self._pump()
            now = time.monotonic()
            work = core.next_work(now) if limit is None or limit > 0 else None
            if work is not None:
                return work
            if got:
                await asyncio.sleep(0)
                continue
            if self._finished(now, idle_timeout, stop_at_end):
                return None
            await self._sleep(self._wait(now))
        return None

    def _finished(self, now: float, idle_timeout: float | None, stop_at_end: bool) -> bool:
        """Nothing held or in flight, and the end reached or idle for ``idle_timeout``."""
        core = self._core
        if core.in_flight or core.held:
            self._idle_since = now
            return False
        if stop_at_end and core.all_at_end():
            return True
        return idle_timeout is not None and now - self._idle_since >= idle_timeout

    def _wait(self, now: float) -> float:
        """Seconds to sleep before reading Kafka again: a short poll, or until a retry is due."""
        deadline = self._core.next_deadline()
        if deadline is None:
            return _IDLE_POLL
        return max(0.0, min(_IDLE_POLL, deadline - now))

    def _pump(self) -> int:
        """Read what librdkafka has (never waiting), pause or resume, commit when due."""
        consumer = self._consumer
        if consumer is None:
            return 0
        core = self._core
        now = time.monotonic()
        # A full buffer takes no more until handlers free room or flow() pauses fetching;
        # paused, consume() still serves heartbeats and rebalances and returns nothing.
        messages = [] if core.full and not core.paused else consumer.consume(_BATCH, 0)
        self._check_access()
        if messages:
            good = []
            for msg in messages:
                if msg.error() is None:
                    good.append(msg)
                    continue
                # In order: an end-of-partition after records of it must not be undone by
                # feeding those records afterwards.
                if good:
                    core.fetched(good)
                    good = []
                self._on_message_error(msg)
            if good:
                core.fetched(good)
        pause, resume = core.flow(now)
        try:
            if pause:
                consumer.pause([TopicPartition(t, p) for t, p in pause])
                log.debug("paused %d partitions: %d records held", len(pause), core.held)
            if resume:
                consumer.resume([TopicPartition(t, p) for t, p in resume])
        except KafkaException as exc:
            log.info("pause/resume: %s", exc.args[0].str())
        if core.commit_due(now):
            offsets = core.to_commit(now)
            if offsets:
                try:
                    consumer.commit(offsets=_positions(offsets), asynchronous=True)
                except KafkaException as exc:
                    core.commit_failed(offsets)
                    log.warning("commit failed: %s", exc.args[0].str())
        return len(messages)

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a handler finishes meanwhile."""
        wake = self._wake
        if seconds <= 0 or wake.is_set():
            wake.clear()
            await asyncio.sleep(0)
            return
        timer = asyncio.get_running_loop().call_later(seconds, wake.set)
        try:
            await wake.wait()
        finally:
            timer.cancel()
            wake.clear()

    async def _settle(self) -> None:
        """Let every handler in flight finish (a graceful stop), serving Kafka meanwhile."""
        while self._tasks:
            self._pump()
            await self._sleep(_IDLE_POLL)

    async def _abandon(self, works: list[Work[Any]]) -> None:
        """Cancel the handlers of ``works``; their records go back unacknowledged."""
        tasks = [self._tasks[w] for w in works if w in self._tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals: one record -----------------------------------------------------------------

    async def _handle(self, handler: Handler, work: Work[Any]) -> None:
        core = self._core
        try:
            decoded = self._decoded_now(work) or await self._decoded(work)
            if decoded is None:
                return
            inbox = self._inbox
            outcome = InboxOutcome.APPLIED
            try:
                if inbox is None:
                    if self._telemetry is None:
                        await handler(decoded[1])
                    else:
                        with self._observed(work, decoded[1], counted=True):
                            await handler(decoded[1])
                else:
                    outcome = await self._apply(inbox, handler, work, decoded[1])
            except asyncio.CancelledError:
                core.release(work)
                raise
            except Exception as exc:  # noqa: BLE001 - any handler error goes to the retry policy
                await self._failed(work, decoded, exc)
            else:
                if outcome is InboxOutcome.APPLIED:
                    core.handled(work)
                else:
                    settled = self._settle_outcome(work, outcome, stopping=self._stopping)
                    await self._conflict(work, decoded, settled)
        finally:
            self._tasks.pop(work, None)
            self._wake.set()

    async def _apply(
        self, inbox: Inbox | AsyncInbox, handler: Handler, work: Work[Any], event: PaymentEvent
    ) -> InboxOutcome:
        """``await handler(event, tx)`` through the inbox (inside its span with telemetry)."""
        assert isinstance(inbox, AsyncInbox)
        self._check_age(work)
        if self._telemetry is None:
            return await inbox.apply(event, handler)
        with self._observed(work, event):
            outcome = await inbox.apply(event, handler)
        if outcome is InboxOutcome.APPLIED:
            self._count_handled(work)
        return outcome

    async def _conflict(self, work: Work[Any], decoded: Decoded, verdict: Verdict | None) -> None:
        """Dead-letter (or raise) a payment whose id was applied before with other content."""
        if verdict is None:
            return
        conflict = ConflictingDuplicateError(str(decoded[1].payment_id))
        if verdict is Verdict.DEAD_LETTER:
            await self._dead_letter(
                work, DecodeReason.CONFLICTING_DUPLICATE.value, str(conflict), decoded[0]
            )
        elif verdict is Verdict.RAISE:
            self._fail(conflict)

    async def _failed(self, work: Work[Any], decoded: Decoded, exc: Exception) -> None:
        if isinstance(exc, DatabaseError) and exc.retriable:
            # The inbox's database is away: not the record's fault, retried without limit.
            held = self._core.unavailable(work, time.monotonic(), stopping=self._stopping)
            self._log_unavailable_verdict(work, exc, held)
            return
        verdict = self._core.handler_failed(work, time.monotonic(), stopping=self._stopping)
        self._log_handler_verdict(work, exc, verdict)
        if verdict is Verdict.DEAD_LETTER:
            await self._dead_letter(
                work, "handler_failed", f"{type(exc).__name__}: {exc}", decoded[0]
            )
        elif verdict is Verdict.RAISE:
            self._fail(exc)

    def _decoded_now(self, work: Work[Any]) -> Decoded | None:
        """The hot path: the record decoded at once when its writer schema is known and it
        decodes cleanly; None sends it down :meth:`_decoded` (a coroutine costs a little on
        every event, so only the rare cases pay for one)."""
        if work.value is not None:
            return cast("Decoded", work.value)
        value = work.record.value()
        if type(value) is not bytes or value[_ID_BYTES] not in self._known_ids:
            return None
        assert self._decode is not None
        try:
            decoded = self._decode.decode(value)
        except Exception:  # noqa: BLE001 - _decoded() decodes it again and deals with it
            return None
        work.value = decoded
        return decoded

    async def _decoded(self, work: Work[Any]) -> Decoded | None:
        """The record's (schema id, event), decoded once; None when the core decided otherwise
        (retry later, dead-lettered, or a failure that stops the run)."""
        if work.value is not None:
            return cast("Decoded", work.value)
        value = work.record.value()
        decode = self._decode
        assert decode is not None
        try:
            if type(value) is bytes and value[_ID_BYTES] in self._known_ids:
                decoded = decode.decode(value)
            else:
                # A writer schema not seen yet may need the registry: not on the loop.
                decoded = await asyncio.to_thread(decode.decode, value)
                if type(value) is bytes:
                    self._known_ids.add(value[_ID_BYTES])
        except DecodeError as exc:
            verdict = self._core.decode_failed(
                work, time.monotonic(), retriable=exc.retriable, stopping=self._stopping
            )
            self._log_decode_verdict(work, exc, verdict)
            if verdict is Verdict.DEAD_LETTER:
                await self._dead_letter(work, exc.reason.value, str(exc), exc.schema_id)
            elif verdict is Verdict.RAISE:
                self._fail(exc)
            return None
        except Exception as exc:  # noqa: BLE001 - not the record's fault (refused credentials...)
            self._core.release(work)
            self._fail(exc)
            return None
        work.value = decoded
        return decoded

    async def _dead_letter(
        self, work: Work[Any], reason: str, message: str, schema_id: int | None
    ) -> None:
        if self._dlq is None:
            self._dlq = DeadLetterWriter(self.settings)
        try:
            await asyncio.to_thread(
                self._dlq.write,
                work.record,
                reason=reason,
                message=message,
                schema_id=schema_id,
                attempts=max(work.attempts, 1),
            )
        except BaseException as exc:
            self._core.release(work)  # not dead-lettered, so not skipped either
            if isinstance(exc, Exception):
                self._fail(exc)
            raise
        self._core.dead_lettered(work)
        self._count_dead_letter(work, reason)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._request_stop()

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _request_stop(self) -> None:
        self._stopping = True
        self._wake.set()

    # -- internals: librdkafka's callbacks (served by consume(), on the loop) -------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._core.assigned((tp.topic, tp.partition) for tp in partitions)
        if self._incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        # In case librdkafka kept a pause from before a revoke: the core starts every assigned
        # partition unpaused, and a paused one it never resumes would never be read again.
        consumer.resume(partitions)
        log.info("assigned %s", [f"{tp.topic}[{tp.partition}]" for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        core = self._core
        core.revoking(tps)
        # Abandon the handlers of those partitions: their records are not committed and the
        # next owner reads them; cancelling keeps two owners from handling one key at once.
        for work, task in list(self._tasks.items()):
            if (work.topic, work.partition) in tps:
                task.cancel()
        offsets = core.revoked(tps)
        if offsets and not self._closing:
            self._commit_now(consumer, offsets)
        self._unassign(consumer, partitions)
        log.info("revoked %s", [f"{t}[{p}]" for t, p in tps])

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        for work, task in list(self._tasks.items()):
            if (work.topic, work.partition) in tps:
                task.cancel()
        self._core.lost(tps)
        self._unassign(consumer, partitions)
        log.warning("lost %s: nothing of them is committed", [f"{t}[{p}]" for t, p in tps])

    def _unassign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._incremental:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def _on_commit(self, err: Any, partitions: list[TopicPartition]) -> None:
        if err is None or err.code() == _RdKafkaError._NO_OFFSET:
            return
        log.warning("commit failed: %s", err.str())
        self._core.commit_failed(
            {(tp.topic, tp.partition): tp.offset for tp in partitions if tp.offset >= 0}
        )

    def _on_message_error(self, msg: Any) -> None:
        err = msg.error()
        if err.code() == _RdKafkaError._PARTITION_EOF:
            self._core.at_end(msg.topic(), msg.partition())
            return
        refused = self._watch.classify(err)
        if refused is not None:
            self._fail(refused)
            return
        if err.fatal():
            self._fail(KafkaError(f"fatal consumer error: {err.str()}", code=err.name()))
            return
        log.warning("consumer: %s", err.str(), extra={"code": err.name()})

    def _on_error(self, err: Any) -> None:
        first = self._watch.error is None
        if self._watch.observe(err):
            if first:  # librdkafka repeats it on every reconnect: one line is enough
                log.error("tracker refused: %s", self._watch.error)
                assert self._watch.error is not None
                self._fail(self._watch.error)
            return
        log.warning("consumer: %s", err.str())

    @staticmethod
    def _commit_now(consumer: Consumer, offsets: dict[tuple[str, int], int]) -> None:
        try:
            consumer.commit(offsets=_positions(offsets), asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() != _RdKafkaError._NO_OFFSET:
                log.warning("commit failed: %s", err.str())

    def _install_signals(self) -> Callable[[], None] | None:
        return install_loop_stop_signals(self._request_stop, "the events in flight are handled")

    def _started(self) -> Consumer:
        if self._consumer is None:
            raise PayKafkaError(
                "the tracker is not started: use `async with AsyncPaymentTracker() as tracker:` "
                "or await start() first"
            )
        return self._consumer


def _positions(offsets: dict[tuple[str, int], int]) -> list[TopicPartition]:
    return [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
