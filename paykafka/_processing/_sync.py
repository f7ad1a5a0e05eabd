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

This module is the thread face: it waits in librdkafka's calls. Every decision is
:class:`~paykafka._processing.ProcessingCore`'s, every step of a transaction
:class:`~paykafka._processing.ProcessorBase`'s; ``paykafka.aio.AsyncPaymentProcessor`` is the
asyncio face over the same two.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self

from paykafka._errors import DecodeError
from paykafka._event import PaymentEvent
from paykafka._processing._base import FIRST_RECORD_WAIT, Decoded, Headers, ProcessorBase
from paykafka._processing._core import Batch, Output, as_outputs, checked_outputs
from paykafka._signals import install_stop_signals

__all__ = ["Handler", "PaymentProcessor"]

log = logging.getLogger("paykafka.processor")

#: A handler returns the outputs of one input: an iterable of them, one, or None for none.
Handler = Callable[[PaymentEvent], "Iterable[Output] | Output | None"]


class PaymentProcessor(ProcessorBase):
    """Reads payments as a group and writes each batch's outputs and offsets in one transaction.

    Use it as a context manager and call :meth:`run` with the handler. ``output_topics`` are
    checked (schema admitted, topic created when ``create_topic``) at start; a topic a handler
    names later is checked on first use. Batches hold up to ``transaction_batch_size`` inputs,
    and an input waits at most ``transaction_batch_ms`` for its transaction (``Settings``). A
    handler that raises aborts the batch, which is handled again after ``retry_backoff``
    (doubling); after ``handler_retries`` failures on the same input it is dead-lettered inside
    the transaction (or, with ``dead_letters=False``, the error is raised and the processor
    stops).
    ``kafka_options`` are librdkafka settings for this processor alone (``kafka_overrides``,
    their old name, still works with a ``DeprecationWarning``).
    """

    _NOT_STARTED = (
        "the processor is not started: use `with PaymentProcessor() as processor:` or "
        "call start() first"
    )

    def _init_face(self) -> None:
        self._stop = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Admit the output schemas, claim the transactional id, join the group; idempotent."""
        if self._consumer is None:
            self._open()
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
        """Leave the group. Everything handled is already committed; nothing else is."""
        self._shut()

    def stop(self) -> None:
        """Ask :meth:`run` to stop after the current transaction (thread- and signal-safe)."""
        self._stop.set()

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
        restore = (
            install_stop_signals(self.stop, "the current transaction") if handle_signals else None
        )
        start = self._core.handled
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                if max_events is not None and self._core.handled - start >= max_events:
                    break
                batch = self._collect()
                if not batch.records:
                    if self._idle_done(time.monotonic() - idle_since, idle_timeout, stop_at_end):
                        break
                    continue
                idle_since = time.monotonic()
                self._process(handler, batch)
        finally:
            if restore is not None:
                restore()
        return self._core.handled - start

    # -- one transaction ---------------------------------------------------------------------

    def _collect(self) -> Batch:
        """Up to ``transaction_batch_size`` inputs, waiting at most ``transaction_batch_ms``
        after the first one; a partition revoked meanwhile is dropped (see ``_on_revoke``)."""
        consumer = self._started()[1]
        batch = self._core.collecting()
        # What waited in librdkafka while the last transaction ran (never waits).
        self._fetched(batch, consumer.consume(batch.room, 0), time.monotonic(), queued=True)
        while not self._stop.is_set():
            now = time.monotonic()
            if batch.done(now):
                break
            left = batch.closes_in(now)
            if left is None:
                # The first record to arrive: consume(n, t) waits for all n, which at a
                # trickle would delay the first by the whole t.
                self._fetched(batch, consumer.consume(1, FIRST_RECORD_WAIT), time.monotonic())
                if not batch.records:
                    break  # nothing within FIRST_RECORD_WAIT: let run() check its stop conditions
            else:
                self._fetched(batch, consumer.consume(batch.room, left), time.monotonic())
        self._core.collected(batch, time.monotonic())
        return batch

    def _process(self, handler: Handler, batch: Batch) -> None:
        """Handle ``batch`` in one transaction, until it commits or the processor must stop."""
        while batch.records:
            began = time.monotonic()
            try:
                self._transaction(handler, batch)
            except BaseException as exc:
                recovery = self._core.recovery(exc)
                if recovery.abort:
                    self._abort(batch, recovery.why, recovery.wedged)
                if recovery.retry_in is None:
                    raise
                if recovery.retry_in:
                    self._stop.wait(recovery.retry_in)
                if self._stop.is_set():
                    return
                batch = self._collect()  # read again from where the consumer was sought to
            else:
                self._committed(batch, began)
                return

    def _transaction(self, handler: Handler, batch: Batch) -> None:
        decoder = self._started()[2]
        self._begin()
        for msg in batch.records:
            decoded: Decoded | DecodeError
            try:
                decoded = decoder.decode(msg.value())
            except DecodeError as exc:
                decoded = exc
            event = self._admit(batch, msg, decoded)
            if event is None:
                continue
            headers: Headers = None
            try:
                if self._telemetry is None:
                    result = handler(event)
                else:
                    with self._span(msg, event):
                        result = handler(event)
                        headers = self._telemetry.context_headers()
                items = as_outputs(result)
            except Exception as exc:
                raise self._handler_error(msg, exc) from exc
            self._write(batch, checked_outputs(items), headers)
        self._finish(batch)
