"""``AsyncPaymentProducer``: the asyncio face of :class:`~paykafka.PaymentProducer`.

Everything that is not waiting (settings, schema admission, the serializer, the key, the
librdkafka config, every error's wording) is the sync producer's own code, inherited from
``_ProducerBase``. What is new here is only how the waiting is done:

* ``produce()`` into librdkafka's local queue never blocks, so it is called on the loop;
* one poller thread per producer serves librdkafka's delivery reports (``poll()``) and hands
  them to the loop in batches, with one ``call_soon_threadsafe`` per batch rather than one per
  message (each costs a write to the loop's self-pipe);
* a full local queue suspends only the sending coroutine until reports free some room.

So the loop never waits on librdkafka, and there is one extra thread, not one per message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaException

from paykafka._errors import DeliveryError
from paykafka._event import PaymentEvent
from paykafka._producer import Delivery, _ProducerBase, key_by_user
from paykafka._registry import RegistryClient
from paykafka._schema import PaymentSchema
from paykafka._settings import Settings

__all__ = ["AsyncPaymentProducer", "DeliveryTask"]

log = logging.getLogger(__name__)

# Seconds the poller waits in librdkafka for a report before checking whether to stop.
_POLLER_WAIT = 0.05
# Seconds a sender waits for room in a full queue before trying again anyway.
_ROOM_WAIT = 0.05
# Reports settled per turn of the loop: a burst of thousands is spread over several turns so
# timers and other tasks run in between.
_DRAIN_BATCH = 256
# Reports the poller thread serves before it steps aside for the loop's thread (see _Report).
_GIL_YIELD_EVERY = 32
# Seconds of back-to-back enqueues after which one yields to the loop: a tight send loop
# that never has to wait would otherwise hold the loop (timers, other requests) until it ends.
_YIELD_INTERVAL = 0.001


class DeliveryTask(asyncio.Future[Delivery]):
    """The outcome of :meth:`AsyncPaymentProducer.enqueue`: await it for the :class:`Delivery`.

    A plain asyncio future that also remembers whether anyone looked at its outcome, so a
    failure nobody awaited is raised by the next :meth:`AsyncPaymentProducer.flush` instead of
    only being logged at garbage collection.
    """

    _observed = False

    def result(self) -> Delivery:
        """The delivery, or the :class:`DeliveryError` raised."""
        self._observed = True
        return super().result()

    def exception(self) -> BaseException | None:
        """The :class:`DeliveryError`, or ``None`` once delivered."""
        self._observed = True
        return super().exception()

    def __await__(self) -> Generator[Any, None, Delivery]:
        self._observed = True
        return super().__await__()


class _Report:
    """One queued event: librdkafka's delivery callback for it, called on the poller thread.

    It only records the report; the loop settles the future (asyncio futures are not
    thread-safe).
    """

    __slots__ = ("event", "future", "owner")

    def __init__(self, owner: AsyncPaymentProducer, event: PaymentEvent, future: DeliveryTask):
        self.owner = owner
        self.event = event
        self.future = future

    def __call__(self, err: Any, msg: Any) -> None:
        owner = self.owner
        owner._reports.append((self, err, msg))
        owner._served += 1
        if not owner._served % _GIL_YIELD_EVERY:
            # One poll() can serve tens of thousands of reports, taking the GIL back after
            # each; without a real pause the loop's thread starves for hundreds of ms (measured
            # 350 ms at 55k reports; with this, loop lag p99 ~6 ms). sleep(0) lets it in.
            time.sleep(0)


class AsyncPaymentProducer(_ProducerBase):
    """Sends :class:`PaymentEvent`s from asyncio code; use it with ``async with``.

    ``await producer.send(event)`` returns the :class:`Delivery` once the broker acknowledged
    it; many sends may be in flight at once (``asyncio.gather``). :meth:`enqueue` is the
    high-rate form: it returns as soon as the event is queued, with a future for its delivery.
    Settings, schema admission, keys, errors and ``queue_timeout`` / ``flush_timeout`` are
    those of :class:`~paykafka.PaymentProducer`.
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
        kafka_overrides: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            settings,
            registry=registry,
            schema=schema,
            key=key,
            flush_timeout=flush_timeout,
            queue_timeout=queue_timeout,
            kafka_overrides=kafka_overrides,
        )
        # Filled on the poller thread (deque.append is atomic), emptied on the loop.
        self._reports: collections.deque[tuple[_Report, Any, Any]] = collections.deque()
        self._pending: dict[int, _Report] = {}
        # Failed deliveries, with their future unless nobody was left waiting on it.
        self._unreported: list[tuple[PaymentEvent, DeliveryError, DeliveryTask | None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        self._drain_scheduled = False
        self._next_yield = 0.0
        self._served = 0  # reports served by the poller thread (only it writes this)
        # Set on the loop when reports freed room in the queue / when nothing is in flight.
        self._room = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Self:
        """Admit the schema, create the topic if missing, connect and start the poller;
        idempotent. The registry and admin calls run in a worker thread."""
        if self._producer is not None:
            return self
        self._loop = asyncio.get_running_loop()
        producer = await asyncio.to_thread(self._connect)
        self._producer = producer
        self._stopping.clear()
        self._poller = threading.Thread(
            target=self._serve, args=(producer, self._loop), name="paykafka-delivery", daemon=True
        )
        self._poller.start()
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close()
            return
        try:
            await self.close()
        except DeliveryError as undelivered:
            # The body's own exception wins; the undelivered events must still be seen.
            log.error("%s", undelivered)  # noqa: TRY400 - no traceback: the body's error is raised
            exc.add_note(str(undelivered))

    async def close(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (default ``flush_timeout``), stop the poller, release.

        Raises :class:`DeliveryError` listing every event not delivered.
        """
        if self._producer is None:
            return
        try:
            await self.flush(self._flush_timeout if timeout is None else timeout)
        finally:
            self._stopping.set()
            poller, self._poller = self._poller, None
            if poller is not None:
                await asyncio.to_thread(poller.join)
            self._drain()
            self._release()

    # -- sending -----------------------------------------------------------------------------

    async def send(self, event: PaymentEvent) -> Delivery:
        """Send ``event`` and return where the broker stored it.

        Raises :class:`DeliveryError` if it was not delivered. Cancelling the call does not
        take the event back: if it then fails, the next :meth:`flush` reports it.
        """
        return await (await self.enqueue(event))

    async def enqueue(self, event: PaymentEvent) -> DeliveryTask:
        """Queue ``event`` and return a future of its :class:`Delivery` at once.

        Suspends only when librdkafka's local queue is full, until delivery reports free room
        (back-pressure, never a drop), raising :class:`DeliveryError` after ``queue_timeout``
        seconds of a full queue.
        """
        producer = self._started()[0]
        value, key = self._encode(event)
        loop = self._loop
        assert loop is not None
        future = DeliveryTask(loop=loop)
        report = _Report(self, event, future)
        deadline: float | None = None
        while True:
            try:
                producer.produce(self.settings.topic, value, key, on_delivery=report)
                break
            except BufferError:
                now = time.monotonic()
                deadline = deadline or now + self._queue_timeout
                if now >= deadline:
                    raise self._queue_full_error(event) from None
                await self._wait_for_room(min(_ROOM_WAIT, deadline - now))
            except KafkaException as exc:
                raise self._refused_error(event, exc) from None
        # Registered only once queued: an event enqueue() raised for is the caller's.
        self._pending[id(report)] = report
        self._idle.clear()
        now = time.monotonic()
        if now >= self._next_yield:
            self._next_yield = now + _YIELD_INTERVAL
            await asyncio.sleep(0)
        return future

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued event is delivered or ``timeout`` passes.

        Raises :class:`DeliveryError` with every failed delivery nobody awaited and every
        event still queued at the deadline.
        """
        self._started()
        if self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        failed = [
            (event, str(error))
            for event, error, future in self._unreported
            if future is None or not future._observed
        ]
        self._unreported.clear()
        queued = [r.event for r in self._pending.values()]
        error = self._undelivered_error(failed, queued)
        if error is not None:
            raise error

    @property
    def in_flight(self) -> int:
        """Events queued but not yet acknowledged by the broker."""
        return len(self._pending)

    # -- internals ---------------------------------------------------------------------------

    async def _wait_for_room(self, timeout: float) -> None:
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), timeout)

    def _serve(self, producer: Any, loop: asyncio.AbstractEventLoop) -> None:
        """The poller thread: serve librdkafka's reports, wake the loop once per batch."""
        reports = self._reports
        while not self._stopping.is_set():
            producer.poll(_POLLER_WAIT)
            if reports and not self._drain_scheduled:
                self._drain_scheduled = True
                try:
                    loop.call_soon_threadsafe(self._drain)
                except RuntimeError:  # the loop closed under us: nobody is left to tell
                    log.warning("event loop closed with %d delivery reports unread", len(reports))
                    return

    def _drain(self) -> None:
        """On the loop: settle the futures of the reports the poller collected, a batch per turn."""
        self._drain_scheduled = False
        reports, pending = self._reports, self._pending
        topic = self.settings.topic
        settled = False
        for _ in range(min(len(reports), _DRAIN_BATCH)):
            report, err, msg = reports.popleft()
            pending.pop(id(report), None)
            future = report.future
            settled = True
            if err is None:
                if not future.done():
                    future.set_result(Delivery(report.event, topic, msg.partition(), msg.offset()))
                continue
            error = self._failed_error(report.event, err)
            if future.done():  # cancelled: its sender stopped waiting, flush() must tell
                self._unreported.append((report.event, error, None))
                continue
            future.set_exception(error)
            self._unreported.append((report.event, error, future))
        if settled:
            self._room.set()
            if not pending:
                self._idle.set()
        if reports and not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)
