"""``AsyncPaymentProcessor``: the asyncio face of the exactly-once processor.

Every decision (batches, handler failures and dead letters, backoff, which errors abort and
which stop) is :class:`paykafka._processing.ProcessingCore`'s, and every step of a transaction
:class:`paykafka._processing.ProcessorBase`'s, the same as for the sync ``PaymentProcessor``.
This module only decides where each piece runs:

* on the loop: reading (``consume(n, 0)``, which never waits; when nothing came the loop sleeps
  a few milliseconds and asks again), decoding with a known writer schema, ``await
  handler(event)``, serializing and queueing the outputs (``produce()`` never waits);
* in a worker thread: librdkafka's transactional calls, which block on the broker (claiming the
  id, beginning, sending the offsets, committing, aborting), a writer schema or output topic seen
  for the first time (the registry), and starting and closing the clients.

A batch of inputs is handled one input after the other, like the sync face, so one user's
outputs keep their order; the loop gets a turn every few inputs, so other tasks keep running
while a large batch is handled.

Cancelling :meth:`~AsyncPaymentProcessor.run` stops it cleanly: a transaction still open is
aborted (nothing of it becomes visible) and its inputs are read again by whoever runs next; a
commit already under way in its thread is waited for, so what is committed is known, and then
the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

from paykafka._errors import DecodeError
from paykafka._event import PaymentEvent
from paykafka._processing._base import FIRST_RECORD_WAIT, Decoded, Headers, ProcessorBase
from paykafka._processing._core import Batch, Output, as_outputs, checked_outputs
from paykafka._signals import call_on_loop, install_loop_stop_signals

__all__ = ["AsyncHandler", "AsyncPaymentProcessor"]

log = logging.getLogger("paykafka.processor")

# Seconds between reads of librdkafka while a batch waits for records: bounds the latency the
# polling adds, at ~200 cheap calls a second.
_IDLE_POLL = 0.005
# Records taken from librdkafka per consume() call: building each Message costs ~1 us, so this
# bounds one turn of the loop while a large batch is collected.
_READ_BATCH = 250
# Inputs handled between two turns of the loop: bounds how long one turn takes (decode,
# handler, serialize, produce: ~50 us each), so the loop's lag stays a few milliseconds.
_YIELD_EVERY = 32
# Frame header bytes that carry the writer schema id (after the magic byte).
_ID_BYTES = slice(1, 5)

#: ``async def handler(event)`` returning the outputs of one input: an iterable of them, one,
#: or None for none.
AsyncHandler = Callable[[PaymentEvent], Awaitable["Iterable[Output] | Output | None"]]

T = TypeVar("T")


class AsyncPaymentProcessor(ProcessorBase):
    """:class:`~paykafka.PaymentProcessor` for asyncio: ``async with``, ``await run(handler)``.

    The same settings (``transaction_batch_size``, ``transaction_batch_ms``,
    ``transactional_id``), options, errors (``FencedError`` when a newer instance took the
    transactional id) and guarantees: each batch's outputs, in-transaction dead letters and
    input offsets commit in one Kafka transaction. ``handler`` is ``async def handler(event)``
    returning ``Output``, an iterable of them, or ``None``.
    """

    _NOT_STARTED = (
        "the processor is not started: use `async with AsyncPaymentProcessor() as processor:` "
        "or await start() first"
    )

    def _init_face(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        # A cancellation that arrived while a commit ran in its thread: delivered once the
        # commit's outcome is recorded.
        self._cancelled = False
        self._known_ids: set[bytes] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Self:
        """Admit the output schemas, claim the transactional id, join the group; idempotent."""
        if self._consumer is None:
            self._loop = asyncio.get_running_loop()
            await self._off_loop(self._open)
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
        """Leave the group. Everything handled is already committed; nothing else is."""
        await self._off_loop(self._shut)

    def stop(self) -> None:
        """Ask :meth:`run` to stop after the current transaction.

        Safe from any thread and from signal handlers.
        """
        if not call_on_loop(self._loop, self._request_stop):
            self._stopping = True

    def _request_stop(self) -> None:
        self._stopping = True
        self._wake.set()

    # -- running -----------------------------------------------------------------------------

    async def run(
        self,
        handler: AsyncHandler,
        *,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        stop_at_end: bool = False,
        handle_signals: bool = True,
    ) -> int:
        """Process batches until stopped; returns how many inputs were committed.

        Stops on :meth:`stop` (SIGINT and SIGTERM call it when the loop runs in the main
        thread), after about ``max_events`` inputs (a whole batch is committed), after
        ``idle_timeout`` seconds without input, or (``stop_at_end``) once every assigned
        partition was read to its end; always after committing the batch in hand. Cancelling
        it aborts the open transaction instead (see the module's docstring).
        """
        self._started()
        restore = (
            install_loop_stop_signals(self.stop, "the current transaction")
            if handle_signals
            else None
        )
        start = self._core.handled
        idle_since = time.monotonic()
        try:
            while not self._stopping:
                if max_events is not None and self._core.handled - start >= max_events:
                    break
                batch = await self._collect()
                if not batch.records:
                    if self._idle_done(time.monotonic() - idle_since, idle_timeout, stop_at_end):
                        break
                    continue
                idle_since = time.monotonic()
                await self._process(handler, batch)
                self._deliver_cancellation()
        finally:
            if restore is not None:
                restore()
        return self._core.handled - start

    # -- one transaction ---------------------------------------------------------------------

    async def _collect(self) -> Batch:
        """Up to ``transaction_batch_size`` inputs, waiting at most ``transaction_batch_ms``
        after the first one; reads never wait, the loop sleeps between them."""
        consumer = self._started()[1]
        batch = self._core.collecting()
        give_up = time.monotonic() + FIRST_RECORD_WAIT
        queued = True  # the first read: what waited in librdkafka while the last commit ran
        try:
            while not self._stopping:
                messages = consumer.consume(min(batch.room, _READ_BATCH), 0)
                now = time.monotonic()
                self._fetched(batch, messages, now, queued=queued)
                queued = False
                if batch.done(now):
                    break
                if messages:
                    await asyncio.sleep(0)  # records trickling in must not hold the loop
                    continue
                left = batch.closes_in(now)
                if left is None:
                    if now >= give_up:
                        break  # nothing yet: let run() check its stop conditions
                    left = give_up - now
                await self._sleep(min(_IDLE_POLL, left))
        except BaseException:
            # Cancelled while collecting: the records read so far are read again (by this
            # processor if it runs again, else by whoever owns the partitions next).
            self._seek_back(batch.first_offsets())
            raise
        self._core.collected(batch, time.monotonic())
        return batch

    async def _process(self, handler: AsyncHandler, batch: Batch) -> None:
        """Handle ``batch`` in one transaction, until it commits or the processor must stop."""
        while batch.records:
            began = time.monotonic()
            try:
                await self._transaction(handler, batch)
            except BaseException as exc:
                recovery = self._core.recovery(exc)
                if recovery.abort:
                    await self._off_loop(self._abort, batch, recovery.why, recovery.wedged)
                if recovery.retry_in is None:
                    raise
                if recovery.retry_in:
                    await self._sleep(recovery.retry_in)
                if self._stopping:
                    return
                batch = await self._collect()  # read again from where the consumer was sought to
            else:
                self._committed(batch, began)
                return

    async def _transaction(self, handler: AsyncHandler, batch: Batch) -> None:
        await self._off_loop(self._begin)
        for i, msg in enumerate(batch.records):
            if i and i % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # other tasks get the loop between slices of the batch
            decoded = self._decoded_now(msg) or await self._decoded(msg)
            event = self._admit(batch, msg, decoded)
            if event is None:
                continue
            headers: Headers = None
            try:
                if self._telemetry is None:
                    result = await handler(event)
                else:
                    with self._span(msg, event):
                        result = await handler(event)
                        headers = self._telemetry.context_headers()
                items = as_outputs(result)
            except Exception as exc:
                raise self._handler_error(msg, exc) from exc
            outputs = checked_outputs(items)
            for topic in self._unknown_topics(outputs):
                await self._off_loop(self._serializer, topic)  # the registry, once per topic
            self._write(batch, outputs, headers)
        await self._off_loop(self._finish, batch, keep_result=True)

    def _decoded_now(self, msg: Any) -> Decoded | DecodeError | None:
        """The hot path: decoded on the loop when the writer schema is known (no registry);
        None sends the input down :meth:`_decoded` (a coroutine per input costs a little, so
        only the first input of each writer schema pays for one)."""
        value = msg.value()
        if type(value) is not bytes or value[_ID_BYTES] not in self._known_ids:
            return None
        try:
            return self._started()[2].decode(value)
        except DecodeError as exc:
            return exc

    async def _decoded(self, msg: Any) -> Decoded | DecodeError:
        """The input decoded: on the loop when its writer schema is known, else in a thread
        (the first sight of a schema id asks the registry)."""
        decoder = self._started()[2]
        value = msg.value()
        known = type(value) is bytes and value[_ID_BYTES] in self._known_ids
        try:
            if known:
                return decoder.decode(value)
            decoded = await self._off_loop(decoder.decode, value)
        except DecodeError as exc:
            return exc
        self._known_ids.add(value[_ID_BYTES])
        return decoded

    # -- waiting -----------------------------------------------------------------------------

    async def _off_loop(self, fn: Callable[..., T], *args: Any, keep_result: bool = False) -> T:
        """``fn(*args)`` in a worker thread, the loop free meanwhile.

        librdkafka's calls cannot be interrupted, so a cancellation waits for the call to end
        (what it did is then known) and is delivered after it: at once, or, with
        ``keep_result`` (the commit), once the caller recorded the result.
        """
        call = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            while not call.done():
                try:
                    await asyncio.shield(call)
                except asyncio.CancelledError:
                    continue
                except BaseException:  # noqa: BLE001 - its outcome is read below
                    break
            if call.exception() is not None or not keep_result:
                raise
            self._cancelled = True
            return call.result()

    def _deliver_cancellation(self) -> None:
        if self._cancelled:
            self._cancelled = False
            raise asyncio.CancelledError

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if :meth:`stop` is called meanwhile."""
        if self._stopping or seconds <= 0:
            await asyncio.sleep(0)
            return
        wake = self._wake
        wake.clear()
        timer = asyncio.get_running_loop().call_later(seconds, wake.set)
        try:
            await wake.wait()
        finally:
            timer.cancel()
