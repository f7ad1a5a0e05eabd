"""The processor's decisions, with no I/O: bring your own consumer, producer, threads or loop.

:class:`ProcessingCore` is what both processor faces (``PaymentProcessor`` for threads,
``AsyncPaymentProcessor`` for asyncio) ask before and after each piece of I/O. It never touches
a socket, a clock or a thread (times are passed in), so every rule is a fast unit test:

Batches (``Batch``: the inputs of one transaction)::

    collecting() -> Batch            start a new batch (revokes drop from it, see ``revoked``)
    fetched(batch, records, now, queued=False)
                                     records read; the first ones open the batch's window:
                                     ``queued`` ones (already waiting in the client when the
                                     collection began) waited since the previous collection
                                     ended, so the window counts from then (see ``Batch.add``)
    collected(batch, now)            the collection is over (the transaction begins)
    batch.done(now) / batch.room     the batch is full or its window is over / how many more
    batch.closes_in(now)             seconds left of the window (None before the first record)
    batch.first_offsets()            where to seek back to when the batch is aborted
    batch.next_offsets()             what to commit: one past each partition's last record

Partitions::

    assigned(partitions) / revoked(partitions) / at_end(topic, partition) / all_at_end()

One input at a time, inside the open transaction (``Step`` says what the shell does)::

    decode_failed(retriable) -> Step ABORT (a registry outage: not the record's fault),
                                     DEAD_LETTER, or RAISE with dead letters off
    admit(where) -> Admission        HANDLE, or DEAD_LETTER once the handler failed on this
                                     input more than ``handler_retries`` times
    handler_failed(where, error) -> Step
                                     ABORT (back off, handle the batch again) or RAISE (dead
                                     letters off and retries used up)

After the transaction::

    committed(batch)                 count it; forget its inputs' failures; reset the backoff
    aborted(batch)                   count it; the batch is emptied (it is read again)
    recovery(exc) -> Recovery        what an error met during a transaction means: abort or
                                     not, and retry after a delay or raise
    backing_off(why) -> AbortBatch   the control-flow error that aborts and retries later,
                                     with the next backoff delay (doubling up to 5 s)

Transactional errors of librdkafka: :func:`classify_txn_error` (fatal, abort, retry).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, Protocol

import attrs

from paykafka._errors import ConfigError, PayKafkaError, TransactionError
from paykafka._event import PaymentEvent

__all__ = [
    "FENCED_CODES",
    "AbortBatch",
    "Admission",
    "Batch",
    "Output",
    "ProcessingCore",
    "Recovery",
    "Step",
    "TxnAction",
    "as_outputs",
    "checked_outputs",
    "classify_txn_error",
]

#: librdkafka's names for "this transactional id now belongs to someone else".
FENCED_CODES = frozenset({"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"})
#: Longest wait between two attempts at a batch that keeps failing.
MAX_BACKOFF = 5.0

Where = tuple[str, int, int]


class InputRecord(Protocol):
    """What the core reads from an input record (confluent-kafka's ``Message`` has all three)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


# -- outputs ---------------------------------------------------------------------------------


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


def as_outputs(result: Iterable[Output] | Output | None) -> list[object]:
    """A handler's result as a list: ``None`` is none, one ``Output`` is one, an iterable is
    read to its end (a generator's errors are the handler's: call this where those are caught).
    """
    return [] if result is None else [result] if isinstance(result, Output) else [*result]


def checked_outputs(items: list[object]) -> list[Output]:
    """``items`` if every one is an ``Output``; anything else is a programming error in the
    handler (``TypeError``), which stops the processor rather than being retried."""
    for item in items:
        if not isinstance(item, Output):
            raise TypeError(
                f"the handler must return Outputs, got {type(item).__name__}: "
                "return [Output(topic, event), ...]"
            )
    return items  # type: ignore[return-value]  # every item checked above


# -- librdkafka's transactional errors -------------------------------------------------------


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


# -- decisions -------------------------------------------------------------------------------


class Step(enum.Enum):
    """What a shell does with one input, or after a failure on it."""

    #: Call the handler and write its outputs into the transaction.
    HANDLE = "handle"
    #: Write the input to the dead-letter topic inside the transaction.
    DEAD_LETTER = "dead_letter"
    #: Abort the transaction, back off, handle the batch again (raise ``backing_off(...)``).
    ABORT = "abort"
    #: Abort the transaction and raise the error: the processor stops.
    RAISE = "raise"


@attrs.frozen
class Admission:
    """Whether to handle an input, and (for a dead letter) what the handler said last."""

    step: Step
    #: Handler failures on this input so far.
    attempts: int = 0
    #: The handler's last error, for the dead letter.
    error: str = ""


@attrs.frozen
class Recovery:
    """What an error met during a transaction means (see :meth:`ProcessingCore.recovery`)."""

    #: Abort the open transaction and seek back to the batch's first offsets.
    abort: bool
    #: Seconds to wait before reading the batch again; ``None``: raise the error.
    retry_in: float | None
    why: str
    #: The producer is stuck in a call: replace it rather than abort with it.
    wedged: bool = False


class AbortBatch(Exception):  # noqa: N818 - control flow, never seen by callers
    """The batch in hand is aborted and handled again after ``delay`` seconds.

    ``wedged``: the producer is stuck inside a call that never returned, so it cannot abort;
    it is replaced instead (claiming the id anew aborts its transaction on the broker).
    """

    def __init__(self, why: str, delay: float = 0.0, *, wedged: bool = False) -> None:
        super().__init__(why)
        self.delay = delay
        self.wedged = wedged


@attrs.define
class Batch:
    """The inputs of one transaction, the window that closes it, and what it wrote."""

    records: list[Any] = attrs.field(factory=list)
    #: Most inputs; and seconds after the first input that the batch waits for more.
    size: int = 1000
    window: float = 0.1
    #: When the window closes (set by the first record).
    deadline: float | None = None
    #: When the previous batch's collection ended (records queued since waited from then).
    since: float | None = None
    #: Outputs written and dead-letter reasons, in the open transaction (counted at commit).
    written: int = 0
    dead_reasons: list[str] = attrs.field(factory=list)

    def add(self, records: Iterable[Any], now: float, *, queued: bool = False) -> None:
        """Append records read from the consumer; the first ones open the window.

        The window bounds how long an input waits for its transaction to begin. Records that
        were already ``queued`` in the client when this collection began have waited since
        the previous one ended (while its transaction ran), so for them the window counts
        from then, as Kafka Streams counts ``commit.interval.ms`` from the last commit: while
        inputs keep coming a transaction begins every window (or every commit, if commits
        take longer) instead of every window plus one commit, which is what kept the
        end-to-end p99 near window + two commits. After an idle spell the window counts from
        the first record.
        """
        self.records.extend(records)
        if self.deadline is None and self.records:
            start = min(now, self.since) if queued and self.since is not None else now
            self.deadline = start + self.window

    @property
    def room(self) -> int:
        """How many more inputs the batch takes."""
        return max(0, self.size - len(self.records))

    def closes_in(self, now: float) -> float | None:
        """Seconds until the window closes (<= 0: closed); ``None`` before the first record."""
        return None if self.deadline is None else self.deadline - now

    def done(self, now: float) -> bool:
        """Full, or its window is over."""
        return self.room == 0 or (self.deadline is not None and now >= self.deadline)

    def first_offsets(self) -> dict[tuple[str, int], int]:
        """Per partition, where to seek back to for the batch to be read again."""
        first: dict[tuple[str, int], int] = {}
        for msg in self.records:
            first.setdefault((msg.topic(), msg.partition()), msg.offset())
        return first

    def next_offsets(self) -> list[tuple[str, int, int]]:
        """Per partition, the offset to commit: one past the batch's last record."""
        last: dict[tuple[str, int], int] = {}
        for msg in self.records:
            last[(msg.topic(), msg.partition())] = msg.offset()
        return [(t, p, o + 1) for (t, p), o in sorted(last.items())]

    def drop(self, topic: str, partition: int) -> None:
        """Forget one partition's records: it was revoked before the batch began."""
        self.records = [m for m in self.records if m.partition() != partition or m.topic() != topic]

    def reset_effects(self) -> None:
        """The transaction was aborted: nothing it wrote counts."""
        self.written = 0
        self.dead_reasons = []


class ProcessingCore:
    """Batches, partitions, handler failures, backoff and the processor's counters.

    Not thread-safe; a shell calls it from one thread (the sync one from its ``run()`` thread,
    the async one from the event loop, or from a worker thread while the loop awaits it).
    """

    def __init__(
        self,
        *,
        batch_size: int,
        batch_ms: int,
        handler_retries: int = 3,
        retry_backoff: float = 0.5,
        dead_letters: bool = True,
    ) -> None:
        if handler_retries < 0:
            raise ConfigError(f"handler_retries must be >= 0, got {handler_retries}")
        if retry_backoff < 0:
            raise ConfigError(f"retry_backoff must be >= 0 seconds, got {retry_backoff}")
        self.batch_size = batch_size
        self.batch_window = batch_ms / 1000
        self.handler_retries = handler_retries
        self.retry_backoff = retry_backoff
        self.dead_letters = dead_letters
        self._backoff = retry_backoff
        self._collected_at: float | None = None
        self._collecting = Batch(size=batch_size, window=self.batch_window)
        # Handler failures per input (topic, partition, offset): how many, and the last error.
        self._failures: dict[Where, tuple[int, str]] = {}
        self._assigned: set[tuple[str, int]] = set()
        self._at_end: set[tuple[str, int]] = set()
        #: Inputs whose transaction committed (dead-lettered ones included).
        self.handled = 0
        #: Outputs committed.
        self.written = 0
        #: Inputs committed as dead letters.
        self.dead_lettered = 0
        #: Transactions committed and aborted.
        self.committed_count = 0
        self.aborted_count = 0

    # -- partitions --------------------------------------------------------------------------

    def assigned(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions now ours."""
        self._assigned.update(partitions)

    def revoked(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions taken away. A revoke happens only between transactions (librdkafka
        serves it from ``consume()``), so only the batch being collected holds their records:
        they are dropped, and the next owner reads them from the committed offset."""
        for topic, partition in partitions:
            self._collecting.drop(topic, partition)
            self._assigned.discard((topic, partition))
            self._at_end.discard((topic, partition))

    def at_end(self, topic: str, partition: int) -> None:
        """The consumer reached the end of a partition."""
        self._at_end.add((topic, partition))

    def all_at_end(self) -> bool:
        """Some partition is assigned and every assigned one was read to its end."""
        return bool(self._assigned) and self._assigned <= self._at_end

    # -- batches -----------------------------------------------------------------------------

    def collecting(self) -> Batch:
        """A new, empty batch; the one revokes drop records from until the next."""
        self._collecting = Batch(
            size=self.batch_size, window=self.batch_window, since=self._collected_at
        )
        return self._collecting

    def fetched(
        self, batch: Batch, records: list[Any], now: float, *, queued: bool = False
    ) -> None:
        """Records read (errors already taken out): add them, and they are no longer at end.
        ``queued``: they were waiting in the client when this collection began."""
        for msg in records:
            self._at_end.discard((msg.topic(), msg.partition()))
        batch.add(records, now, queued=queued)

    def collected(self, batch: Batch, now: float) -> None:
        """The collection of ``batch`` is over: its transaction begins (if it has records)."""
        self._collected_at = now if batch.records else None

    # -- one input ---------------------------------------------------------------------------

    def decode_failed(self, *, retriable: bool) -> Step:
        """An input does not decode: wait out a registry outage (``ABORT``), else dead-letter
        it, or (dead letters off) stop."""
        if retriable:
            return Step.ABORT
        return Step.DEAD_LETTER if self.dead_letters else Step.RAISE

    def admit(self, where: Where) -> Admission:
        """Handle an input, unless the handler already failed on it more than
        ``handler_retries`` times: then it is dead-lettered (with dead letters on; with them
        off, the handler's last failure has already stopped the processor)."""
        failures, error = self._failures.get(where, (0, ""))
        if failures > self.handler_retries:
            return Admission(Step.DEAD_LETTER, failures, error)
        return Admission(Step.HANDLE, failures)

    def handler_failed(self, where: Where, error: str) -> Step:
        """The handler raised on ``where``: abort and retry the batch, or (retries used up and
        dead letters off) raise. With dead letters on, the retry after the last failure
        dead-letters the input (see :meth:`admit`)."""
        failures = self._failures.get(where, (0, ""))[0] + 1
        self._failures[where] = (failures, error)
        if failures > self.handler_retries and not self.dead_letters:
            return Step.RAISE
        return Step.ABORT

    def attempts(self, where: Where) -> int:
        """Handler failures on ``where`` so far."""
        return self._failures.get(where, (0, ""))[0]

    # -- after the transaction ---------------------------------------------------------------

    def committed(self, batch: Batch) -> None:
        """The batch's transaction committed: count it and forget its inputs' failures."""
        for msg in batch.records:
            self._failures.pop((msg.topic(), msg.partition(), msg.offset()), None)
        self.committed_count += 1
        self.handled += len(batch.records)
        self.written += batch.written
        self.dead_lettered += len(batch.dead_reasons)
        self._backoff = self.retry_backoff

    def aborted(self, batch: Batch) -> dict[tuple[str, int], int]:
        """The batch's transaction was aborted: count it; returns where to seek back to. The
        batch is emptied: its records are read again from those offsets."""
        first = batch.first_offsets()
        self.aborted_count += 1
        batch.records = []
        batch.reset_effects()
        return first

    def backing_off(self, why: str, *, wedged: bool = False) -> AbortBatch:
        """Abort and handle the batch again after the current backoff, which then doubles."""
        delay, self._backoff = self._backoff, min(self._backoff * 2, MAX_BACKOFF)
        return AbortBatch(why, delay, wedged=wedged)

    def recovery(self, exc: BaseException) -> Recovery:
        """What an error raised while a batch's transaction was open means.

        - ``AbortBatch``: abort (or, ``wedged``, replace the stuck producer), then read the
          batch again after its delay;
        - ``TransactionError`` (fenced or broken for good): raise; there is nothing left to
          abort with;
        - another retriable paykafka error (a registry or broker outage met on the way, such
          as a new output topic's schema): the batch is not at fault, abort and retry later;
        - anything else (a bug in the handler with dead letters off, cancellation, a
          KeyboardInterrupt): abort, so nothing of the batch stays open and its inputs are read
          again by whoever runs next, and raise.
        """
        if isinstance(exc, AbortBatch):
            return Recovery(abort=True, retry_in=exc.delay, why=str(exc), wedged=exc.wedged)
        if isinstance(exc, TransactionError):
            return Recovery(abort=False, retry_in=None, why=str(exc))
        if isinstance(exc, PayKafkaError) and exc.retriable:
            backoff = self.backing_off(str(exc))
            return Recovery(abort=True, retry_in=backoff.delay, why=str(exc))
        return Recovery(abort=True, retry_in=None, why=f"{type(exc).__name__}: {exc}")
