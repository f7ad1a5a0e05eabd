"""``AsyncPaymentProducer``: the asyncio face of :class:`~paykafka.PaymentProducer`.

Everything that is not waiting is the sync producer's own code, inherited from
``_ProducerBase``: settings, schema admission, the serializer, the key, the librdkafka config,
the bookkeeping of queued and failed events, every error's wording. What differs is only how
the waiting is done, and none of it blocks the loop:

* ``produce()`` into librdkafka's local queue never waits, so it is called on the loop;
* delivery reports are served on the loop by ``poll(0)``, which never waits either: once a
  millisecond while events are in flight (and from a tight send loop, as the sync producer
  does), by one small task that sleeps while nothing is in flight. No thread at all, so no
  hand-off between threads and no fight for the GIL (a poller thread was measured first: it
  starved the loop for hundreds of milliseconds when a burst of reports arrived);
* a full local queue suspends only the sending coroutine, until reports free some room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaException

from paykafka._errors import DeliveryError
from paykafka._event import PaymentEvent
from paykafka._producer import Delivery, DeliveryFuture, _ProducerBase

__all__ = ["AsyncPaymentProducer", "DeliveryTask"]

log = logging.getLogger(__name__)

# Seconds between the loop's polls for delivery reports while events are in flight: the most
# a report waits, and a bound on how many one poll serves (so on how long it holds the loop).
_SERVE_INTERVAL = 0.001
# Seconds of back-to-back enqueues after which one yields to the loop: a tight send loop
# that never has to wait would otherwise hold the loop (timers, other requests) until it ends.
_YIELD_INTERVAL = 0.001
# Seconds a sender waits in a full queue before trying again.
_ROOM_WAIT = 0.002


class DeliveryTask(DeliveryFuture):
    """The outcome of :meth:`AsyncPaymentProducer.enqueue`: ``await`` it for the
    :class:`Delivery` (raises :class:`DeliveryError` if it failed).

    A :class:`DeliveryFuture` (``done()``, ``add_done_callback()``, ``exception()``) that is
    awaited instead of waited for. It costs nothing on the loop until someone awaits it; a
    failure nobody awaited is raised by the next :meth:`AsyncPaymentProducer.flush`.
    """

    __slots__ = ()

    def result(self, timeout: float | None = None) -> Delivery:
        """The delivery once known (never waits: ``await`` the task to wait).

        Raises :class:`DeliveryError` if it failed, :class:`asyncio.InvalidStateError` if the
        broker has not answered yet.
        """
        if not self.done():
            raise asyncio.InvalidStateError(
                f"payment {self.event.payment_id} has no delivery report yet: await the task"
            )
        return super().result(0)

    def __await__(self) -> Generator[Any, None, Delivery]:
        self._observed = True
        if not self.done():
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = [waiter]
            else:
                self._waiters.append(waiter)
            try:
                yield from waiter
            except asyncio.CancelledError:
                # This awaiter gave up: if the delivery then fails, flush() must say so.
                self._observed = False
                raise
        return self.result()

    def _settle(self, position: tuple[int, int] | None, failure: Any) -> None:
        super()._settle(position, failure)
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)


class AsyncPaymentProducer(_ProducerBase):
    """Sends :class:`PaymentEvent`s from asyncio code; use it with ``async with``.

    ``await producer.send(event)`` returns the :class:`Delivery` once the broker acknowledged
    it; many sends may be in flight at once (``asyncio.gather``). :meth:`enqueue` is the
    high-rate form: it returns as soon as the event is queued, with a :class:`DeliveryTask`
    to await later. Settings, schema admission, keys, errors and ``queue_timeout`` /
    ``flush_timeout`` are those of :class:`~paykafka.PaymentProducer`.
    """

    def _init_face(self) -> None:
        self._server: asyncio.Task[None] | None = None
        self._busy = asyncio.Event()  # set while events are in flight
        self._next_yield = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Self:
        """Admit the schema, create the topic if missing, connect; idempotent. The registry
        and admin calls run in a worker thread."""
        if self._producer is None:
            producer = await asyncio.to_thread(self._connect)
            self._producer = producer
            self._server = asyncio.get_running_loop().create_task(self._serve(producer))
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
        """Flush within ``timeout`` (default ``flush_timeout``), then release the client.

        Raises :class:`DeliveryError` listing every event not delivered.
        """
        producer = self._producer
        if producer is None:
            return
        try:
            await self._flush(producer, self._flush_timeout if timeout is None else timeout, True)
        finally:
            server, self._server = self._server, None
            if server is not None:
                server.cancel()
            self._release()

    # -- sending -----------------------------------------------------------------------------

    async def send(self, event: PaymentEvent) -> Delivery:
        """Send ``event`` and return where the broker stored it.

        Raises :class:`DeliveryError` if it was not delivered. Cancelling the call does not
        take the event back: if it then fails, the next :meth:`flush` reports it.
        """
        return await (await self.enqueue(event))

    async def enqueue(self, event: PaymentEvent) -> DeliveryTask:
        """Queue ``event`` and return its :class:`DeliveryTask` at once.

        Suspends only when librdkafka's local queue is full, until delivery reports free room
        (back-pressure, never a drop), raising :class:`DeliveryError` after ``queue_timeout``
        seconds of a full queue.
        """
        producer, serialize = self._started()
        value, key = self._encode(event, serialize)
        task = DeliveryTask(event, self)
        headers = None if self._telemetry is None else self._trace(task, key)
        deadline: float | None = None
        while True:
            try:
                producer.produce(self.settings.topic, value, key, on_delivery=task, headers=headers)
                break
            except BufferError:
                now = time.monotonic()
                deadline = deadline or now + self._queue_timeout
                if now >= deadline:
                    self._telemetry_failed(task, "_QUEUE_FULL")
                    raise self._queue_full_error(event) from None
                producer.poll(0)
                await asyncio.sleep(_ROOM_WAIT)
            except KafkaException as exc:
                self._telemetry_failed(task, exc.args[0].name())
                raise self._refused_error(event, exc) from None
        # Registered only once queued: an event enqueue() raised for is the caller's.
        pending = self._pending
        if not pending:
            self._busy.set()
        pending[id(task)] = task
        now = time.monotonic()
        if now >= self._next_yield:
            self._next_yield = now + _YIELD_INTERVAL
            producer.poll(0)
            await asyncio.sleep(0)
        return task

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued event is delivered or ``timeout`` passes.

        Raises :class:`DeliveryError` with every failed delivery nobody awaited and every
        event still queued at the deadline, as the sync producer's ``flush()`` does.
        """
        await self._flush(self._started()[0], timeout, False)

    @property
    def in_flight(self) -> int:
        """Events queued but not yet acknowledged by the broker."""
        return len(self._pending)

    # -- internals ---------------------------------------------------------------------------

    async def _flush(self, producer: Any, timeout: float | None, close: bool) -> None:
        """Wait on the loop (serving reports) until nothing is queued, the cluster refused
        us, or ``timeout`` passed; then report as the sync producer does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (
            self._pending
            and not self._refused()
            and (deadline is None or time.monotonic() < deadline)
        ):
            producer.flush(0)  # sends what lingers now, serves the reports there are
            if self._pending:
                await asyncio.sleep(_SERVE_INTERVAL)
        self._finish_flush(producer, len(self._pending), close=close)

    async def _serve(self, producer: Any) -> None:
        """Serve delivery reports every millisecond while events are in flight; else sleep."""
        busy = self._busy
        pending = self._pending
        while True:
            if not pending:
                busy.clear()
                await busy.wait()
            producer.poll(0)
            await asyncio.sleep(_SERVE_INTERVAL)
