"""The pure tracking core: hand-out order, retries, dead letters, commits, rebalances, flow."""

from __future__ import annotations

import weakref
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from paykafka._tracking._core import Policy, TrackerCore, Verdict, Work

T = "payments"


class Rec:
    """A fake consumer record: what the core reads from confluent's ``Message``."""

    __slots__ = ("_key", "_offset", "_partition", "_topic")

    def __init__(self, partition: int, offset: int, key: str | None, topic: str = T) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key = key.encode() if key is not None else None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key


def recs(partition: int, keys: str, start: int = 0) -> list[Rec]:
    """One record per character of ``keys`` (its key), from offset ``start`` on."""
    return [Rec(partition, start + i, k) for i, k in enumerate(keys)]


def core(**policy: object) -> TrackerCore[Rec]:
    c: TrackerCore[Rec] = TrackerCore(Policy(**policy))  # type: ignore[arg-type]
    c.assigned([(T, 0), (T, 1)])
    return c


def drain(c: TrackerCore[Rec], now: float = 0.0) -> list[Work[Rec]]:
    """Hand out everything ready now, in order."""
    out = []
    while (w := c.next_work(now)) is not None:
        out.append(w)
    return out


def where(works: list[Work[Rec]]) -> list[tuple[int, int]]:
    return [(w.partition, w.offset) for w in works]


def test_concurrency_one_hands_out_in_fetch_order() -> None:
    """With one in flight and no retries, records come out exactly as fetched."""
    c = core()
    c.fetched(recs(0, "aab") + recs(1, "ca"))
    order = []
    while (w := c.next_work(0.0)) is not None:
        assert c.next_work(0.0) is None  # never two in flight
        order.append((w.partition, w.offset))
        c.handled(w)
    assert order == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert c.handled_count == 5
    assert c.held == 0


class WeakRec(Rec):
    """A record that can be watched for being let go."""

    __slots__ = ("__weakref__",)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_handled_records_are_let_go_at_once(concurrency: int) -> None:
    """The core keeps no handled record (nor its decoded value) until the next commit: a
    handled prefix is dropped as it grows, so memory does not grow with the commit interval."""
    c = core(concurrency=concurrency)
    batch = [WeakRec(0, i, "abcd"[i % 4]) for i in range(8)]
    watched = [weakref.ref(r) for r in batch]
    c.fetched(batch)
    del batch
    while works := drain(c):
        for w in works:
            w.value = object()
            c.handled(w)
    del works, w
    assert [r() for r in watched] == [None] * 8
    assert c.to_commit(0.0) == {(T, 0): 8}


def test_same_key_waits_for_its_predecessor_other_keys_do_not() -> None:
    """Different keys run together, up to N; a key's next record waits for the previous one."""
    c = core(concurrency=3)
    c.fetched(recs(0, "aabc"))
    first = drain(c)
    assert where(first) == [(0, 0), (0, 2), (0, 3)]  # a@1 waits behind a@0
    c.handled(first[0])
    assert where(drain(c)) == [(0, 1)]


def test_at_most_concurrency_in_flight() -> None:
    """Never more than ``concurrency`` records handed out at once."""
    c = core(concurrency=2)
    c.fetched(recs(0, "abcdef"))
    assert len(drain(c)) == 2
    assert c.in_flight == 2


def test_commit_is_the_contiguous_handled_prefix() -> None:
    """Offsets commit only below the lowest record not yet handled, per partition."""
    c = core(concurrency=6)
    c.fetched(recs(0, "abcd") + recs(1, "xy"))
    w = {(x.partition, x.offset): x for x in drain(c)}
    c.handled(w[(0, 1)])
    c.handled(w[(0, 2)])
    c.handled(w[(1, 0)])
    assert c.to_commit(0.0) == {(T, 1): 1}  # partition 0 still waits for offset 0
    c.handled(w[(0, 0)])
    assert c.to_commit(0.0) == {(T, 0): 3}
    assert c.to_commit(0.0) == {}  # nothing moved since


def test_commit_cadence() -> None:
    """A commit is due once per ``commit_interval``, and only when an offset moved."""
    c = core(commit_interval=1.0)
    assert not c.commit_due(0.0)
    c.fetched(recs(0, "ab"))
    c.handled(drain(c)[0])
    assert not c.commit_due(0.5)
    assert c.commit_due(1.0)
    assert c.to_commit(1.0) == {(T, 0): 1}
    c.handled(drain(c)[0])
    assert not c.commit_due(1.5)
    assert c.commit_due(2.0)


def test_failed_commit_is_offered_again() -> None:
    """After ``commit_failed`` the same offsets come back at the next commit."""
    c = core()
    c.fetched(recs(0, "a"))
    c.handled(drain(c)[0])
    offsets = c.to_commit(0.0)
    c.commit_failed(offsets)
    assert c.to_commit(1.0) == offsets


def test_retry_holds_back_only_its_own_key() -> None:
    """A failing record waits out its backoff; its key's later records wait, others run."""
    c = core(concurrency=2, retry_backoff=1.0, handler_retries=2)
    c.fetched(recs(0, "aab"))
    a0 = c.next_work(0.0)
    assert a0 is not None
    assert c.handler_failed(a0, 0.0) is Verdict.RETRY
    b = c.next_work(0.1)
    assert b is not None
    assert (b.offset, b.key) == (2, b"b")
    c.handled(b)
    assert c.next_work(0.5) is None  # a@0 in backoff, a@1 behind it
    assert c.next_deadline() == 1.0
    again = c.next_work(1.0)
    assert again is a0
    assert again.attempts == 1
    c.handled(again)
    assert c.to_commit(1.0) == {(T, 0): 1}  # a@1 not handled yet: commit stays below it


def test_backoff_doubles_up_to_the_cap() -> None:
    """Each retry waits twice as long as the last, never more than ``max_backoff``."""
    c = core(retry_backoff=1.0, max_backoff=3.0, handler_retries=5)
    c.fetched(recs(0, "a"))
    now = 0.0
    waits = []
    for _ in range(4):
        w = c.next_work(now)
        assert w is not None
        assert c.handler_failed(w, now) is Verdict.RETRY
        deadline = c.next_deadline()
        assert deadline is not None
        waits.append(deadline - now)
        now = deadline
    assert waits == [1.0, 2.0, 3.0, 3.0]


def test_handler_exhausted_dead_letters_then_moves_on() -> None:
    """After the retries the record is dead-lettered; once written it counts as done."""
    c = core(handler_retries=1, retry_backoff=0.0)
    c.fetched(recs(0, "aa"))
    w = c.next_work(0.0)
    assert w is not None
    assert c.handler_failed(w, 0.0) is Verdict.RETRY
    w = c.next_work(0.0)
    assert w is not None
    assert c.handler_failed(w, 0.0) is Verdict.DEAD_LETTER
    assert c.next_work(0.0) is None  # still in flight until its dead letter is written
    c.dead_lettered(w)
    assert c.dead_lettered_count == 1
    assert c.handled_count == 0
    assert c.to_commit(0.0) == {(T, 0): 1}


def test_poison_without_dead_letters_is_never_skipped() -> None:
    """Issue 11.1: with dead letters off, an undecodable record is raised and stays unhandled:
    it is handed out again and no commit passes it."""
    c = core(dead_letters=False)
    c.fetched(recs(0, "ab"))
    poison = c.next_work(0.0)
    assert poison is not None
    assert c.decode_failed(poison, 0.0, retriable=False) is Verdict.RAISE
    assert c.to_commit(0.0) == {}  # nothing passes the poison record
    assert c.next_work(0.0) is poison  # the same record again, not the one after it


def test_registry_outage_retries_without_limit() -> None:
    """A retriable decode failure never dead-letters, however often it happens."""
    c = core(handler_retries=0, retry_backoff=0.1, max_backoff=0.1)
    c.fetched(recs(0, "a"))
    now = 0.0
    for _ in range(50):
        w = c.next_work(now)
        assert w is not None
        assert c.decode_failed(w, now, retriable=True) is Verdict.RETRY
        now += 0.1
    assert c.dead_lettered_count == 0


def test_stop_during_failure_releases_instead_of_dead_lettering() -> None:
    """Issue 11.2: a failure while stopping leaves the record unacknowledged, not in the DLQ."""
    c = core(handler_retries=3)
    c.fetched(recs(0, "a"))
    w = c.next_work(0.0)
    assert w is not None
    assert c.handler_failed(w, 0.0, stopping=True) is Verdict.RELEASED
    assert c.in_flight == 0
    assert c.dead_lettered_count == 0
    assert c.to_commit(0.0) == {}


@pytest.mark.parametrize("concurrency", [1, 2])
def test_release_hands_the_record_out_again(concurrency: int) -> None:
    """A released record (a loop left early) is the next one handed out, in either mode."""
    c = core(concurrency=concurrency)
    c.fetched(recs(0, "ab"))
    w = c.next_work(0.0)
    assert w is not None
    c.release(w)
    assert c.next_work(0.0) is w


def test_revoke_stops_hand_out_and_commits_only_what_was_handled() -> None:
    """A revoking partition hands out nothing more; abandoned in-flight records are not
    committed and their late completion changes nothing."""
    c = core(concurrency=3)
    c.fetched(recs(0, "abcd") + recs(1, "x"))
    a, b, _c = drain(c)
    c.handled(a)
    assert c.revoking([(T, 0)]) == 2
    assert where(drain(c)) == [(1, 0)]  # only the other partition's records
    assert c.revoked([(T, 0)]) == {(T, 0): 1}  # b@1 abandoned: not committed
    c.handled(b)
    assert c.handled_count == 1
    assert (T, 0) not in c.assignment
    c.fetched(recs(0, "z", start=9))  # a straggler of a partition no longer ours
    assert c.held == 1  # only x@(1,0), in flight


def test_lost_partitions_commit_nothing() -> None:
    """``lost`` drops a partition's records without offering any offset."""
    c = core()
    c.fetched(recs(0, "ab"))
    w = c.next_work(0.0)
    assert w is not None
    c.lost([(T, 0)])
    c.handled(w)
    assert c.handled_count == 0
    assert c.to_commit(0.0) == {}
    assert c.in_flight == 0


def test_reassigned_partition_starts_fresh() -> None:
    """A record of an earlier assignment cannot complete one of the new assignment."""
    c = core()
    c.fetched(recs(0, "a"))
    old = c.next_work(0.0)
    assert old is not None
    c.revoking([(T, 0)])
    c.revoked([(T, 0)])
    c.assigned([(T, 0)])
    c.fetched(recs(0, "a"))
    c.handled(old)
    new = c.next_work(0.0)
    assert new is not None
    assert new is not old


def test_at_end_is_cleared_by_new_records() -> None:
    """Issue 11.5: the end of a partition is forgotten as soon as a record of it arrives."""
    c = core()
    c.at_end(T, 0)
    c.at_end(T, 1)
    assert c.all_at_end()
    c.fetched(recs(0, "a"))
    assert not c.all_at_end()
    w = c.next_work(0.0)
    assert w is not None
    c.handled(w)
    assert not c.all_at_end()  # partition 0 was not reported at its end again
    c.at_end(T, 0)
    assert c.all_at_end()


def test_end_waits_for_records_in_hand() -> None:
    """Not at the end while a fetched record is still unhandled."""
    c = core()
    c.fetched(recs(0, "a"))
    c.at_end(T, 0)
    c.at_end(T, 1)
    assert not c.all_at_end()


def test_refetched_records_are_ignored() -> None:
    """Records below what was already fetched (a re-fetch after a pause) are not held twice."""
    c = core()
    c.fetched(recs(0, "ab"))
    c.fetched(recs(0, "abc"))
    assert c.held == 3


def test_flow_pauses_when_full_and_resumes_at_half() -> None:
    """Fetching pauses at ``max_buffered`` held records and resumes once half are done."""
    c = core(max_buffered=4, concurrency=4)
    c.fetched(recs(0, "abc"))
    assert c.flow() == ([], [])
    c.fetched(recs(1, "d"))
    pause, resume = c.flow()
    assert sorted(pause) == [(T, 0), (T, 1)]
    assert c.flow() == ([], [])
    works = drain(c)
    c.handled(works[0])
    assert c.flow() == ([], [])
    c.handled(works[1])
    pause, resume = c.flow()
    assert sorted(resume) == [(T, 0), (T, 1)]
    assert c.paused == frozenset()


def test_policy_rejects_nonsense() -> None:
    """A concurrency below one is refused."""
    with pytest.raises(ValueError, match="concurrency"):
        Policy(concurrency=0)


# -- interleavings ------------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", None])


class Interleavings(RuleBasedStateMachine):
    """Random fetches, completions, failures, releases, commits and rebalances, checked after
    every step against the core's promises."""

    def __init__(self) -> None:
        super().__init__()
        self.policy = Policy(
            concurrency=3, max_buffered=6, handler_retries=1, retry_backoff=1.0, max_backoff=1.0
        )
        self.core: TrackerCore[Rec] = TrackerCore(self.policy)
        self.now = 0.0
        self.next_offset = {0: 0, 1: 0}
        self.owned = {0: False, 1: False}
        self.in_flight: list[Work[Rec]] = []
        self.done: dict[int, set[int]] = defaultdict(set)
        # Per (partition, key): offsets in the order they were completed.
        self.completed: dict[tuple[int, object], list[int]] = defaultdict(list)
        self.fetched_keys: dict[tuple[int, int], object] = {}
        self.committed: dict[int, int] = {}

    @rule(partition=st.sampled_from([0, 1]))
    def assign(self, partition: int) -> None:
        if not self.owned[partition]:
            self.core.assigned([(T, partition)])
            self.owned[partition] = True
            # A new owner starts at the committed offset.
            self.next_offset[partition] = self.committed.get(partition, 0)

    @rule(partition=st.sampled_from([0, 1]), keys=st.lists(KEYS, min_size=1, max_size=4))
    def fetch(self, partition: int, keys: list[str | None]) -> None:
        start = self.next_offset[partition]
        batch = [Rec(partition, start + i, k) for i, k in enumerate(keys)]
        for r in batch:
            self.fetched_keys[(partition, r.offset())] = r.key()
        self.core.fetched(batch)
        if self.owned[partition]:
            self.next_offset[partition] = start + len(keys)

    @rule()
    def hand_out(self) -> None:
        w = self.core.next_work(self.now)
        if w is not None:
            assert w.alive
            assert all(o is not w for o in self.in_flight)
            # No other record of its key and partition is in flight.
            assert all(
                (o.partition, o.key) != (w.partition, w.key) for o in self.in_flight if o.alive
            )
            # Every earlier record of its key in this partition is done.
            for off in range(w.offset):
                if self.fetched_keys.get((w.partition, off)) == w.key and off >= self.committed.get(
                    w.partition, 0
                ):
                    assert off in self.done[w.partition], (w, off)
            self.in_flight.append(w)

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10))
    def complete(self, i: int) -> None:
        w = self.in_flight.pop(i % len(self.in_flight))
        alive = w.alive
        self.core.handled(w)
        if alive:
            self.done[w.partition].add(w.offset)
            self.completed[(w.partition, w.key)].append(w.offset)

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10), stopping=st.booleans())
    def fail(self, i: int, stopping: bool) -> None:
        w = self.in_flight.pop(i % len(self.in_flight))
        alive = w.alive
        verdict = self.core.handler_failed(w, self.now, stopping=stopping)
        if verdict is Verdict.DEAD_LETTER:
            assert alive
            self.core.dead_lettered(w)
            self.done[w.partition].add(w.offset)
            self.completed[(w.partition, w.key)].append(w.offset)
        elif stopping or not alive:
            assert verdict is Verdict.RELEASED

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10))
    def duplicate(self, i: int) -> None:
        """An inbox found the record applied before: done, like a handled one."""
        w = self.in_flight.pop(i % len(self.in_flight))
        alive = w.alive
        self.core.duplicate(w)
        if alive:
            self.done[w.partition].add(w.offset)
            self.completed[(w.partition, w.key)].append(w.offset)

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10))
    def conflict(self, i: int) -> None:
        """A conflicting duplicate: dead-lettered at once (dead letters are on here), or
        released when its partition is gone."""
        w = self.in_flight.pop(i % len(self.in_flight))
        verdict = self.core.rejected(w)
        if not w.alive:
            assert verdict is Verdict.RELEASED
        else:
            assert verdict is Verdict.DEAD_LETTER
            self.core.dead_lettered(w)
            self.done[w.partition].add(w.offset)
            self.completed[(w.partition, w.key)].append(w.offset)

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10), stopping=st.booleans())
    def unavailable(self, i: int, stopping: bool) -> None:
        """The database is away: retried (never dead-lettered), or released while stopping."""
        w = self.in_flight.pop(i % len(self.in_flight))
        verdict = self.core.unavailable(w, self.now, stopping=stopping)
        assert verdict in {Verdict.RETRY, Verdict.RELEASED}

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 10))
    def release(self, i: int) -> None:
        self.core.release(self.in_flight.pop(i % len(self.in_flight)))

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule()
    def commit(self) -> None:
        for (_, p), offset in self.core.to_commit(self.now).items():
            self._check_commit(p, offset)

    @rule(partition=st.sampled_from([0, 1]))
    def revoke(self, partition: int) -> None:
        if not self.owned[partition]:
            return
        self.core.revoking([(T, partition)])
        for (_, p), offset in self.core.revoked([(T, partition)]).items():
            self._check_commit(p, offset)
        self.owned[partition] = False

    @rule(partition=st.sampled_from([0, 1]))
    def lose(self, partition: int) -> None:
        self.core.lost([(T, partition)])
        self.owned[partition] = False

    @rule()
    def flow(self) -> None:
        pause, resume = self.core.flow()
        assert not (set(pause) & set(resume))

    def _check_commit(self, partition: int, offset: int) -> None:
        start = self.committed.get(partition, 0)
        for off in range(start, offset):
            assert off in self.done[partition], f"committed {offset} but {off} not handled"
        self.committed[partition] = offset

    @invariant()
    def bounded_in_flight(self) -> None:
        assert self.core.in_flight <= self.policy.concurrency
        assert self.core.in_flight == len(self.in_flight)

    @invariant()
    def key_order(self) -> None:
        for offsets in self.completed.values():
            assert offsets == sorted(offsets)


class SequentialInterleavings(Interleavings):
    """The same promises with concurrency=1 (the core's sequential mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.policy = Policy(
            concurrency=1, max_buffered=6, handler_retries=1, retry_backoff=1.0, max_backoff=1.0
        )
        self.core = TrackerCore(self.policy)


TestInterleavings = Interleavings.TestCase
TestSequentialInterleavings = SequentialInterleavings.TestCase
TestSequentialInterleavings.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestInterleavings.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- edges found by mutation testing ------------------------------------------------------------


def test_decode_backoff_grows_and_a_stop_releases() -> None:
    """Retriable decode failures back off longer each time; during a stop they are released."""
    c = core(retry_backoff=1.0, max_backoff=10.0)
    c.fetched(recs(0, "a"))
    w = c.next_work(0.0)
    assert w is not None
    assert c.decode_failed(w, 0.0, retriable=True) is Verdict.RETRY
    assert c.next_work(0.5) is None  # still backing off
    assert c.next_deadline() == 1.0
    w = c.next_work(1.0)
    assert w is not None
    assert c.decode_failed(w, 1.0, retriable=True) is Verdict.RETRY
    assert c.next_deadline() == 3.0  # twice as long
    w = c.next_work(3.0)
    assert w is not None
    assert c.decode_failed(w, 3.0, retriable=False, stopping=True) is Verdict.RELEASED
    assert c.dead_lettered_count == 0
    assert c.next_work(3.0) is w  # released at once, not delayed


def test_bad_data_is_dead_lettered_on_the_first_failure() -> None:
    """A record that can never decode is dead-lettered without retries."""
    c = core(handler_retries=5)
    c.fetched(recs(0, "aa"))
    w = c.next_work(0.0)
    assert w is not None
    assert c.decode_failed(w, 0.0, retriable=False) is Verdict.DEAD_LETTER
    c.dead_lettered(w)
    w2 = c.next_work(0.0)
    assert w2 is not None
    assert c.decode_failed(w2, 0.0, retriable=False) is Verdict.DEAD_LETTER
    c.dead_lettered(w2)
    assert c.dead_lettered_count == 2
    assert c.to_commit(0.0) == {(T, 0): 2}


def test_failures_of_revoked_records_are_released_not_dead_lettered() -> None:
    """A record whose partition went away meanwhile is neither retried nor dead-lettered."""
    c = core(concurrency=2)
    c.fetched(recs(0, "a") + recs(1, "b"))
    w0, w1 = drain(c)
    c.revoking([(T, 0), (T, 1)])
    c.revoked([(T, 0), (T, 1)])
    assert c.handler_failed(w0, 0.0) is Verdict.RELEASED
    assert c.decode_failed(w1, 0.0, retriable=False) is Verdict.RELEASED
    assert c.in_flight == 0


def test_stale_entries_do_not_hide_ready_records() -> None:
    """Records of a dropped partition queued first do not stop others being handed out."""
    c = core(concurrency=5)
    c.fetched(recs(0, "abc") + recs(1, "xyz"))
    c.lost([(T, 0)])
    assert where(drain(c)) == [(1, 0), (1, 1), (1, 2)]


def test_records_of_other_partitions_in_a_batch_are_kept() -> None:
    """A record of a partition not ours, in the middle of a batch, skips only itself."""
    c = core(concurrency=5)
    c.fetched([Rec(0, 0, "a"), Rec(7, 0, "b"), Rec(1, 0, "c"), Rec(0, 1, "d", topic="other")])
    assert where(drain(c)) == [(0, 0), (1, 0)]
    assert c.held == 2


def test_counts_across_partitions() -> None:
    """held, in_flight_of and the ends count every partition, not the last one only."""
    c = core(concurrency=4)
    c.fetched(recs(0, "ab") + recs(1, "cd"))
    works = drain(c)
    assert c.in_flight_of([(T, 0), (T, 1)]) == 4
    c.handled(works[0])
    c.handled(works[2])
    assert c.held == 2
    c.lost([(T, 0)])
    assert c.held == 1
    c.at_end(T, 1)
    assert not c.all_at_end()
    c.handled(works[3])
    assert c.all_at_end()


def test_commit_only_the_partitions_asked() -> None:
    """to_commit(partitions=...) offers only those; unknown ones are ignored."""
    c = core(concurrency=4)
    c.fetched(recs(0, "a") + recs(1, "b"))
    for w in drain(c):
        c.handled(w)
    assert c.to_commit(0.0, [(T, 9), (T, 1)]) == {(T, 1): 1}
    assert c.to_commit(0.0) == {(T, 0): 1}
    c.commit_failed({(T, 9): 5, (T, 0): 0})  # unknown partition, and an offset not offered
    assert c.to_commit(0.0) == {}


def test_nothing_to_commit_means_no_commit_due() -> None:
    """After the interval, a commit is due only if some offset moved."""
    c = core(commit_interval=1.0)
    c.fetched(recs(0, "a"))
    assert not c.commit_due(5.0)
    c.handled(drain(c)[0])
    assert c.commit_due(10.0)
    c.to_commit(10.0)
    assert not c.commit_due(20.0)


def test_flow_waits_pause_after_without_progress() -> None:
    """With ``now``, a full buffer pauses only after ``pause_after`` seconds with no record
    done; a record done restarts the wait; revoked partitions leave the paused set."""
    c = core(max_buffered=2, concurrency=1, pause_after=1.0)
    c.fetched(recs(0, "ab") + recs(1, "c"))
    assert c.flow(0.0) == ([], [])
    assert c.flow(0.9) == ([], [])
    w = c.next_work(0.9)
    assert w is not None
    c.handled(w)  # progress, but still full (2 held)
    assert c.flow(1.5) == ([], [])
    pause, _ = c.flow(2.5)
    assert sorted(pause) == [(T, 0), (T, 1)]
    c.revoking([(T, 1)])
    c.revoked([(T, 1)])
    assert c.paused == frozenset({(T, 0)})
    c.lost([(T, 0)])
    assert c.paused == frozenset()


def test_a_delayed_key_does_not_block_a_ready_one_behind_it() -> None:
    """A lane whose retry is not due is set aside; the next ready lane is handed out."""
    c = core(concurrency=2, retry_backoff=5.0)
    c.fetched(recs(0, "ab"))
    a = c.next_work(0.0)
    assert a is not None
    c.release(a, not_before=5.0)
    b = c.next_work(0.0)
    assert b is not None
    assert b.key == b"b"
    assert c.next_work(1.0) is None
    assert c.next_work(5.0) is a


def test_has_ready_says_whether_next_work_would_hand_out() -> None:
    """has_ready is the cheap pre-check of next_work: ready records, room, due retries."""
    c = core(concurrency=2, retry_backoff=2.0)
    assert not c.has_ready(0.0)
    c.fetched(recs(0, "ab"))
    assert c.has_ready(0.0)
    a, b = drain(c)
    assert not c.has_ready(0.0)  # concurrency reached
    assert c.handler_failed(a, 0.0) is Verdict.RETRY
    c.handled(b)
    assert not c.has_ready(1.0)  # only a retry, not yet due
    assert c.has_ready(2.0)


def test_sequential_mode_keeps_fetch_order_even_through_retries() -> None:
    """concurrency=1: strictly fetch order; a retry holds back everything behind it."""
    c = core(concurrency=1, retry_backoff=2.0)
    c.fetched(recs(0, "ab") + recs(1, "c"))
    a = c.next_work(0.0)
    assert a is not None
    assert c.handler_failed(a, 0.0) is Verdict.RETRY
    assert not c.has_ready(1.0)
    assert c.next_work(1.0) is None  # b and c wait behind a
    assert c.next_deadline() == 2.0
    assert c.has_ready(2.0)
    assert c.next_work(2.0) is a
    c.handled(a)
    rest = []
    while (w := c.next_work(2.0)) is not None:
        rest.append((w.partition, w.offset))
        c.handled(w)
    assert rest == [(0, 1), (1, 0)]
    assert c.next_deadline() is None
    c.fetched(recs(0, "d", start=2))
    c.lost([(T, 0)])
    assert c.next_work(3.0) is None  # the lost partition's record is skipped
    assert c.to_commit(3.0) == {(T, 1): 1}


def test_sequential_mode_readiness_and_deadlines() -> None:
    """Sequential mode: nothing ready when empty or busy, no deadline without a retry, and
    a revoking partition's record at the head does not block the next one."""
    c = core(concurrency=1)
    assert not c.has_ready(0.0)
    c.fetched(recs(0, "a") + recs(1, "b"))
    assert c.next_deadline() is None
    assert c.has_ready(0.0)
    c.revoking([(T, 0)])
    assert c.has_ready(0.0)
    w = c.next_work(0.0)
    assert w is not None
    assert (w.partition, w.offset) == (1, 0)
    assert not c.has_ready(0.0)  # one in flight
    c.handled(w)
    assert not c.has_ready(0.0)
    assert c.in_flight == 0


def test_sequential_mode_a_registry_wait_holds_back_only_its_partition() -> None:
    """concurrency=1: a record waiting for the registry (retriable decode failure) holds back
    its own partition only; other partitions keep flowing, as the sequential tracker did."""
    c = core(concurrency=1, retry_backoff=2.0)
    c.fetched(recs(0, "ab") + recs(1, "cd"))
    a = c.next_work(0.0)
    assert a is not None
    assert (a.partition, a.offset) == (0, 0)
    assert c.decode_failed(a, 0.0, retriable=True) is Verdict.RETRY
    assert c.has_ready(1.0)
    flowed = []
    while (w := c.next_work(1.0)) is not None:
        flowed.append((w.partition, w.offset))
        c.handled(w)
    assert flowed == [(1, 0), (1, 1)]  # partition 0's b waits behind a
    assert c.next_deadline() == 2.0
    assert c.to_commit(1.0) == {(T, 1): 2}
    assert c.next_work(2.0) is a
    c.handled(a)
    b = c.next_work(2.0)
    assert b is not None
    assert (b.partition, b.offset) == (0, 1)
