"""The tracker's decisions, with no I/O: bring your own consumer, threads or event loop.

``TrackerCore`` is a state machine in the manner of h11. A shell (``PaymentTracker`` for
threads, an asyncio one for tasks, a transactional processor...) does the I/O and *feeds* the
core what happened; the core *decides* what to hand out, what to retry and when, what to
dead-letter, which offset per partition is safe to commit and when to pause fetching. It never
touches a socket, a clock or a thread, so every edge case is a fast unit test. It is not
thread-safe: a shell that calls it from several threads holds one lock around every call.

Feeding (the shell tells the core)::

    assigned(partitions)             partitions now ours (after the consumer's assign)
    fetched(records)                 records read from the consumer, in fetch order
    at_end(topic, partition)         the consumer reported the end of a partition
    revoking(partitions) -> n        a revoke began: hand out nothing more of these; returns
                                     how many of their records are still in flight
    revoked(partitions) -> offsets   the revoke ends: in-flight records are abandoned; returns
                                     the offsets to commit for them before unassigning
    lost(partitions)                 partitions lost without a clean revoke: drop, commit nothing

Handing out and completions (``Work`` is one record whose turn it is)::

    next_work(now) -> Work | None    the next record to handle, or None (nothing ready, or
                                     ``concurrency`` records already in flight)
    handled(work)                    the handler returned: the record is done
    handler_failed(work, now, stopping=False) -> Verdict
    decode_failed(work, now, retriable=..., stopping=False) -> Verdict
    dead_lettered(work)              the dead letter was acknowledged: the record is done
    duplicate(work)                  the record was applied before (an inbox said so): done,
                                     counted apart from handled records
    rejected(work, stopping=False) -> Verdict
                                     the record must never be applied (a conflicting duplicate):
                                     ``DEAD_LETTER``, or ``RAISE`` when dead letters are off
    unavailable(work, now, stopping=False) -> Verdict
                                     the handler could not run for a cause outside the record
                                     (its database is down): ``RETRY`` without limit
    release(work)                    hand it back unhandled; it will be handed out again

``Verdict`` tells the shell what to do after a failure: ``RETRY`` (nothing now: the record
is handed out again once its backoff has passed, see ``next_deadline()``), ``DEAD_LETTER``
(write it, then call ``dead_lettered`` or, if writing failed, ``release``), ``RAISE`` (the
record was released and stays unhandled; raise the error) or ``RELEASED`` (a stop is under
way, or the partition was revoked meanwhile: the record was handed back unacknowledged, to be
read again by whoever owns the partition next).

Committing and flow control::

    commit_due(now) -> bool          ``commit_interval`` passed and something moved
    to_commit(now, partitions=None) -> {(topic, partition): offset}
                                     offsets that moved since the last commit; each is the
                                     lowest offset not yet handled (a contiguous prefix), so a
                                     crash or a new owner never skips an unhandled record
    commit_failed(offsets)           the commit did not happen: offer those again next time
    full                             ``max_buffered`` records held: fetch no more for now
    flow(now=None) -> (pause, resume)
                                     partitions to pause / resume: fetching stops while
                                     ``max_buffered`` records are held (``pause_after``
                                     seconds, given ``now``) and resumes at half

Ordering: records with the same key in one partition are handed out strictly in offset order,
one at a time; records of different keys may be in flight together, at most ``concurrency`` of
them. Among the keys that are ready, the one whose next record was fetched first goes first.
A record waiting for a retry holds back only later records of its own key. Records without a
key share one key per partition (they keep partition order). With ``concurrency=1`` the core
is sequential: records are handed out strictly in fetch order, and a record waiting for a
handler retry holds back everything behind it (the sequential tracker's behaviour, at its
speed); a record waiting for the registry (a retriable decode failure) holds back only its own
partition, so other partitions keep flowing through a registry outage.

The record type is the shell's (confluent-kafka's ``Message`` fits): the core only calls
``topic()``, ``partition()``, ``offset()`` and ``key()`` on it, once, in :meth:`fetched`.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar

import attrs

__all__ = ["Policy", "RecordLike", "TrackerCore", "Verdict", "Work"]

TopicPartition = tuple[str, int]


class RecordLike(Protocol):
    """What the core reads from a record (confluent-kafka's ``Message`` has all four)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | str | None: ...


R = TypeVar("R", bound=RecordLike)


class Verdict(enum.Enum):
    """What a shell does after a failed decode or handler call."""

    #: Nothing now: the record is handed out again after its backoff (``next_deadline``).
    RETRY = "retry"
    #: Write the record to the dead-letter topic, then call ``dead_lettered`` (or ``release``).
    DEAD_LETTER = "dead_letter"
    #: The record stays unhandled (released); raise the error to the caller.
    RAISE = "raise"
    #: A stop is under way: the record was released unacknowledged; do not retry it.
    RELEASED = "released"


@attrs.frozen(kw_only=True)
class Policy:
    """How a core hands out, retries and commits; the same for every shell."""

    #: Records in flight at most (handlers running at once).
    concurrency: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    #: Records held (buffered + in flight) before fetching pauses; resumes at half.
    max_buffered: int = attrs.field(default=2000, validator=attrs.validators.ge(1))
    #: Retries of a failing handler before its record is dead-lettered (or raised).
    handler_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    #: First backoff in seconds; doubles per attempt up to ``max_backoff``.
    retry_backoff: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max_backoff: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))
    #: Dead-letter what cannot be decoded or handled; off: raise and stay on the record.
    dead_letters: bool = True
    #: Seconds between commits of handled offsets.
    commit_interval: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    #: Seconds the buffer must stay full *with no record done* before ``flow(now)`` pauses
    #: (0: at once). Handlers that make progress free room soon, and a pause costs librdkafka
    #: what it fetched ahead.
    pause_after: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))


_PENDING, _IN_FLIGHT, _DONE = 0, 1, 2


class Work(Generic[R]):
    """One record handed out. ``value`` is the shell's to keep (e.g. the decoded event), so a
    retried record is not decoded twice; ``attempts`` counts failed attempts so far."""

    __slots__ = (
        "_lane",
        "_part",
        "_state",
        "alive",
        "attempts",
        "key",
        "not_before",
        "offset",
        "partition_wait",
        "record",
        "seq",
        "value",
    )

    def __init__(  # noqa: PLR0917 - built once per record: positional is cheapest
        self, record: R, offset: int, key: object, seq: int, part: _Partition[R], lane: Any
    ) -> None:
        self.record = record
        self.offset = offset
        self.key = key
        self.seq = seq
        self.value: object = None
        self.attempts = 0
        #: False once its partition was revoked or lost: completing it changes nothing.
        self.alive = True
        self._state = _PENDING
        self._part = part
        #: Its key's lane; None in sequential mode (concurrency=1), which has no lanes.
        self._lane: _Lane[R] | None = lane
        self.not_before = 0.0
        #: Sequential mode: its retry waits for the registry, so it holds back its partition
        #: only (a handler retry holds back everything behind it).
        self.partition_wait = False

    @property
    def topic(self) -> str:
        return self._part.topic

    @property
    def partition(self) -> int:
        return self._part.partition

    def __repr__(self) -> str:
        return f"Work({self.topic}[{self.partition}]@{self.offset}, key={self.key!r})"


class _Lane(Generic[R]):
    """The records of one key in one partition, in offset order; only the head may run."""

    __slots__ = ("items", "key", "not_before", "part")

    def __init__(self, part: _Partition[R], key: object) -> None:
        self.part = part
        self.key = key
        self.items: deque[Work[R]] = deque()
        self.not_before = 0.0


class _Partition(Generic[R]):
    __slots__ = (
        "at_end",
        "committed",
        "lanes",
        "next_offset",
        "partition",
        "records",
        "revoking",
        "topic",
    )

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        #: Fetched records not yet trimmed off the handled prefix, in offset order.
        self.records: deque[Work[R]] = deque()
        self.lanes: dict[object, _Lane[R]] = {}
        #: The offset after the last record fetched; None before the first.
        self.next_offset: int | None = None
        #: The offset last offered for commit.
        self.committed: int | None = None
        self.at_end = False
        self.revoking = False

    def safe_offset(self) -> int | None:
        """The lowest offset not yet handled: everything below it was handled."""
        records = self.records
        while records and records[0]._state == _DONE:
            records.popleft()
        return records[0].offset if records else self.next_offset


class TrackerCore(Generic[R]):
    """Key-ordered hand-out, retries, dead-letter decisions and commit offsets; no I/O."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self._parts: dict[TopicPartition, _Partition[R]] = {}
        # Lanes whose head is ready, by the head's fetch sequence (fetch order first).
        self._ready: list[tuple[int, _Lane[R]]] = []
        # Lanes whose head waits for a retry: (not_before, seq, lane).
        self._delayed: list[tuple[float, int, _Lane[R]]] = []
        # Sequential mode (concurrency=1): one queue in fetch order, no lanes, no heaps; a
        # retry holds back everything behind it, as a sequential tracker does.
        self._sequential = self.policy.concurrency == 1
        self._fifo: deque[Work[R]] = deque()
        self._seq = 0
        self._in_flight = 0
        self._held = 0
        self._paused: set[TopicPartition] = set()
        self._last_commit: float | None = None
        self._full_since: float | None = None
        #: Records handled (handler returned, or handed back done by an iterating caller).
        self.handled_count = 0
        #: Records dead-lettered.
        self.dead_lettered_count = 0
        #: Records found applied before (redeliveries an inbox absorbed).
        self.duplicate_count = 0

    # -- state ---------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Records handed out and not yet completed or released."""
        return self._in_flight

    @property
    def held(self) -> int:
        """Records fetched and not yet done (buffered + in flight)."""
        return self._held

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions the core believes are ours (revoking ones included)."""
        return frozenset(self._parts)

    def in_flight_of(self, partitions: Iterable[TopicPartition]) -> int:
        """How many records of ``partitions`` are in flight."""
        count = 0
        for tp in partitions:
            part = self._parts.get(tp)
            if part is not None:
                count += sum(1 for w in part.records if w._state == _IN_FLIGHT)
        return count

    def all_at_end(self) -> bool:
        """Every assigned partition read to its end and nothing left to handle."""
        return bool(self._parts) and self._held == 0 and all(p.at_end for p in self._parts.values())

    # -- feeding -------------------------------------------------------------------------

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions became ours (a fresh start for each, even if we had it before)."""
        for tp in partitions:
            old = self._parts.pop(tp, None)
            if old is not None:
                self._drop(old)
            self._parts[tp] = _Partition(tp[0], tp[1])

    def fetched(self, records: Iterable[R]) -> None:
        """Records read from the consumer. Records of partitions that are not ours (or are
        being revoked), and records below what was already fetched, are ignored."""
        parts = self._parts
        ready = self._ready
        last_tp: TopicPartition | None = None
        part: _Partition[R] | None = None
        seq = self._seq
        held = 0
        fifo = self._fifo if self._sequential else None
        for record in records:
            tp = (record.topic() or "", record.partition() or 0)
            if tp != last_tp:
                last_tp = tp
                part = parts.get(tp)
            if part is None or part.revoking:
                continue
            offset = record.offset() or 0
            if part.next_offset is None:
                # Where the consumer started: the group's offset already says as much.
                part.committed = offset
            elif offset < part.next_offset:
                continue  # re-fetched after a pause or a seek: already held
            part.next_offset = offset + 1
            part.at_end = False
            key = record.key()
            seq += 1
            held += 1
            if fifo is not None:
                work = Work(record, offset, key, seq, part, None)
                part.records.append(work)
                fifo.append(work)
                continue
            lane = part.lanes.get(key)
            if lane is None:
                lane = part.lanes[key] = _Lane(part, key)
            work = Work(record, offset, key, seq, part, lane)
            part.records.append(work)
            lane.items.append(work)
            if len(lane.items) == 1:
                heapq.heappush(ready, (seq, lane))
        self._seq = seq
        self._held += held

    def at_end(self, topic: str, partition: int) -> None:
        """The consumer reached the end of a partition (cleared by the next record of it)."""
        part = self._parts.get((topic, partition))
        if part is not None:
            part.at_end = True

    def revoking(self, partitions: Iterable[TopicPartition]) -> int:
        """A revoke began: nothing more of ``partitions`` is handed out. Returns how many of
        their records are still in flight (a shell may wait for them to finish)."""
        tps = list(partitions)
        for tp in tps:
            part = self._parts.get(tp)
            if part is not None:
                part.revoking = True
        return self.in_flight_of(tps)

    def revoked(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The revoke ends: records of ``partitions`` still in flight are abandoned (their
        completion changes nothing). Returns the offsets to commit for them (only handled
        prefixes that moved since the last commit); they are forgotten afterwards."""
        tps = [tp for tp in partitions if tp in self._parts]
        offsets = self._offsets(tps)
        for tp in tps:
            self._drop(self._parts.pop(tp))
            self._paused.discard(tp)
        return offsets

    def lost(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions lost (their new owner may already have them): drop, commit nothing."""
        for tp in partitions:
            part = self._parts.pop(tp, None)
            if part is not None:
                self._drop(part)
            self._paused.discard(tp)

    # -- handing out -----------------------------------------------------------------------

    def next_work(self, now: float) -> Work[R] | None:
        """The next record to handle (now in flight), or None."""
        if self._in_flight >= self.policy.concurrency:
            return None
        if self._sequential:
            fifo = self._fifo
            if fifo:
                # The usual case, in one look: the head of the queue is ready.
                head = fifo[0]
                if (
                    head._state == _PENDING
                    and head.alive
                    and head.not_before <= now
                    and not head._part.revoking
                ):
                    head._state = _IN_FLIGHT
                    self._in_flight += 1
                    return head
            return self._next_in_order(now)
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, seq, lane = heapq.heappop(delayed)
            heapq.heappush(self._ready, (seq, lane))
        ready = self._ready
        while ready:
            seq, lane = heapq.heappop(ready)
            items = lane.items
            if not items:
                continue
            work = items[0]
            if work.seq != seq or not work.alive or work._state != _PENDING:
                continue  # a stale entry (dropped partition, or queued twice)
            if lane.part.revoking:
                continue
            if lane.not_before > now:
                heapq.heappush(delayed, (lane.not_before, seq, lane))
                continue
            work._state = _IN_FLIGHT
            self._in_flight += 1
            return work
        return None

    def _next_in_order(self, now: float) -> Work[R] | None:
        work = self._scan_in_order(now)[0]
        if work is not None:
            work._state = _IN_FLIGHT
            self._in_flight += 1
        return work

    def _scan_in_order(self, now: float) -> tuple[Work[R] | None, float | None]:
        """Sequential mode: the first record that may be handed out at ``now``, and the
        earliest retry time among the records holding others back.

        The head is normally ready, so this is one look; only while a partition waits for the
        registry does it look past that partition's records.
        """
        fifo = self._fifo
        while fifo:
            head = fifo[0]
            if head.alive and head._state != _DONE and not head._part.revoking:
                break
            fifo.popleft()
        deadline: float | None = None
        waiting: set[int] | None = None
        for work in fifo:
            if not work.alive or work._state == _DONE or work._part.revoking:
                continue
            if waiting is not None and id(work._part) in waiting:
                continue
            if work._state != _PENDING:
                return None, deadline
            if work.not_before > now:
                deadline = work.not_before if deadline is None else min(deadline, work.not_before)
                if not work.partition_wait:
                    return None, deadline
                waiting = waiting or set()
                waiting.add(id(work._part))
                continue
            return work, deadline
        return None, deadline

    def next_deadline(self) -> float | None:
        """When the earliest retry becomes due (a shell may sleep until then), or None."""
        if self._sequential:
            return self._scan_in_order(0.0)[1]
        return self._delayed[0][0] if self._delayed else None

    def has_ready(self, now: float) -> bool:
        """Whether :meth:`next_work` would hand something out now (cheap pre-check)."""
        if self._in_flight >= self.policy.concurrency:
            return False
        if self._sequential:
            return self._scan_in_order(now)[0] is not None
        return bool(self._ready) or bool(self._delayed and self._delayed[0][0] <= now)

    # -- completions -------------------------------------------------------------------------

    def handled(self, work: Work[R]) -> None:
        """The record was handled: done; the next record of its key becomes ready."""
        if self._finish(work):
            self.handled_count += 1

    def dead_lettered(self, work: Work[R]) -> None:
        """The record's dead letter was acknowledged: done, like a handled record."""
        if self._finish(work):
            self.dead_lettered_count += 1

    def duplicate(self, work: Work[R]) -> None:
        """The record had been applied before (an inbox found its id): done, not handled."""
        if self._finish(work):
            self.duplicate_count += 1

    def rejected(self, work: Work[R], *, stopping: bool = False) -> Verdict:
        """The record must never be applied (a conflicting duplicate): dead-letter it at once,
        no retries (they cannot help); with dead letters off it is released and raised. During
        a stop, or once its partition is gone, it is released (its next reader decides)."""
        if stopping or not work.alive:
            self.release(work)
            return Verdict.RELEASED
        return self._give_up(work)

    def unavailable(self, work: Work[R], now: float, *, stopping: bool = False) -> Verdict:
        """The handler could not run for a cause outside the record (its database is down):
        retried with backoff without limit, like a registry outage; never dead-lettered."""
        return self.decode_failed(work, now, retriable=True, stopping=stopping)

    def release(self, work: Work[R], *, not_before: float = 0.0) -> None:
        """Hand the record back unhandled: it is handed out again (not before ``not_before``)
        and nothing at or after it in its partition is committed until then."""
        if work._state != _IN_FLIGHT:
            return
        work._state = _PENDING
        self._in_flight -= 1
        if not work.alive:
            return
        work.not_before = not_before
        lane = work._lane
        if lane is None:
            return  # sequential: it is still at the head of the queue
        lane.not_before = not_before
        if not_before > 0.0:
            heapq.heappush(self._delayed, (not_before, work.seq, lane))
        else:
            heapq.heappush(self._ready, (work.seq, lane))

    def handler_failed(self, work: Work[R], now: float, *, stopping: bool = False) -> Verdict:
        """The handler raised. Retry with backoff while attempts remain, then dead-letter
        (or raise when dead letters are off). During a stop nothing is dead-lettered: the
        record is released, unacknowledged."""
        work.attempts += 1
        work.partition_wait = False
        policy = self.policy
        if stopping or not work.alive:
            self.release(work)
            return Verdict.RELEASED
        if work.attempts <= policy.handler_retries:
            self.release(work, not_before=now + self._backoff(work.attempts))
            return Verdict.RETRY
        return self._give_up(work)

    def decode_failed(
        self, work: Work[R], now: float, *, retriable: bool, stopping: bool = False
    ) -> Verdict:
        """The record could not be decoded. A retriable cause (the registry is out) is retried
        with backoff without limit; bad data is dead-lettered, or, with dead letters off,
        raised while the record stays unhandled (never skipped)."""
        work.attempts += 1
        if stopping or not work.alive:
            self.release(work)
            return Verdict.RELEASED
        if retriable:
            work.partition_wait = True
            self.release(work, not_before=now + self._backoff(work.attempts))
            return Verdict.RETRY
        return self._give_up(work)

    # -- committing and flow -------------------------------------------------------------------

    def commit_due(self, now: float) -> bool:
        """Whether ``commit_interval`` has passed since the last commit and an offset moved."""
        last = self._last_commit
        if last is None:
            self._last_commit = last = now  # the first interval starts at the first ask
        if now - last < self.policy.commit_interval:
            return False
        return any(p.safe_offset() != p.committed for p in self._parts.values())

    def to_commit(
        self, now: float, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """Offsets to commit now (each the lowest offset not handled of its partition), only
        those that moved; they count as committed (see :meth:`commit_failed`)."""
        self._last_commit = now
        return self._offsets(self._parts if partitions is None else partitions)

    def commit_failed(self, offsets: dict[TopicPartition, int]) -> None:
        """A commit of ``offsets`` failed: offer them again at the next commit."""
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            if part is not None and part.committed == offset:
                part.committed = None

    @property
    def full(self) -> bool:
        """``max_buffered`` records are held: a shell fetches no more until there is room."""
        return self._held >= self.policy.max_buffered

    def flow(self, now: float | None = None) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """Partitions to pause and to resume now: all are paused while ``max_buffered``
        records are held (and, when ``now`` is given, none was done for ``pause_after``
        seconds), and resumed once half of those are done."""
        limit = self.policy.max_buffered
        if self._held >= limit:
            if now is not None:
                if self._full_since is None:
                    self._full_since = now
                if now - self._full_since < self.policy.pause_after:
                    return [], []
            pause = [tp for tp in self._parts if tp not in self._paused]
            self._paused.update(pause)
            return pause, []
        self._full_since = None
        if self._paused and self._held <= limit // 2:
            resume = [tp for tp in self._parts if tp in self._paused]
            self._paused.clear()
            return [], resume
        return [], []

    @property
    def paused(self) -> frozenset[TopicPartition]:
        """Partitions the core asked to pause and not yet to resume."""
        return frozenset(self._paused)

    # -- internals ---------------------------------------------------------------------------

    def _backoff(self, attempts: int) -> float:
        policy = self.policy
        return float(min(policy.retry_backoff * 2 ** (attempts - 1), policy.max_backoff))

    def _give_up(self, work: Work[R]) -> Verdict:
        if self.policy.dead_letters:
            return Verdict.DEAD_LETTER  # still in flight until dead_lettered() / release()
        self.release(work)
        return Verdict.RAISE

    def _finish(self, work: Work[R]) -> bool:
        if work._state != _IN_FLIGHT:
            return False
        self._in_flight -= 1
        if not work.alive:
            work._state = _DONE
            return False
        work._state = _DONE
        self._held -= 1
        self._full_since = None  # progress: the buffer is not stuck
        # Let the handled prefix go now, not at the next commit: a second of records (and
        # their decoded events) kept alive costs memory and, worse, garbage-collector passes
        # over them (a third of the sequential tracker's time, measured).
        records = work._part.records
        while records and records[0]._state == _DONE:
            records.popleft()
        lane = work._lane
        if lane is None:
            fifo = self._fifo
            if fifo and fifo[0] is work:
                fifo.popleft()
            return True
        items = lane.items
        items.popleft()  # the head: only the head of a lane is ever in flight
        lane.not_before = 0.0
        if items:
            heapq.heappush(self._ready, (items[0].seq, lane))
        else:
            del lane.part.lanes[lane.key]
        return True

    def _drop(self, part: _Partition[R]) -> None:
        for work in part.records:
            if work._state != _DONE:
                self._held -= 1
            work.alive = False
        part.records.clear()
        part.lanes.clear()

    def _offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        for tp in partitions:
            part = self._parts.get(tp)
            if part is None:
                continue
            safe = part.safe_offset()
            if safe is not None and safe != part.committed:
                offsets[tp] = safe
                part.committed = safe
        return offsets
