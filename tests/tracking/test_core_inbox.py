"""The core's inbox verdicts: duplicates are done, conflicts dead-lettered, outages retried."""

from __future__ import annotations

from paykafka._tracking._core import Verdict

from .test_core import T, core, drain, recs


def test_duplicate_is_done_and_counted_apart() -> None:
    """A duplicate frees its key's next record and moves the commit offset, like a handled one."""
    c = core()
    c.fetched(recs(0, "aa"))
    (first,) = drain(c)
    c.duplicate(first)
    assert c.duplicate_count == 1
    assert c.handled_count == 0
    (second,) = drain(c)
    assert second.offset == 1
    c.handled(second)
    assert c.to_commit(10.0) == {(T, 0): 2}


def test_conflict_is_dead_lettered_at_once() -> None:
    """A conflicting duplicate skips the retries: retrying cannot change the stored hash."""
    c = core(handler_retries=3)
    c.fetched(recs(0, "a"))
    (work,) = drain(c)
    assert c.rejected(work) is Verdict.DEAD_LETTER
    c.dead_lettered(work)
    assert c.dead_lettered_count == 1


def test_conflict_without_dead_letters_raises_and_keeps_the_record() -> None:
    """With dead letters off the record is released (never skipped) and the error raised."""
    c = core(dead_letters=False)
    c.fetched(recs(0, "a"))
    (work,) = drain(c)
    assert c.rejected(work) is Verdict.RAISE
    assert c.to_commit(10.0) == {}


def test_unavailable_database_retries_without_limit() -> None:
    """Far more outages than handler_retries: still RETRY, never a dead letter."""
    c = core(handler_retries=1, retry_backoff=0.1, max_backoff=0.1)
    c.fetched(recs(0, "a"))
    now = 0.0
    for _ in range(10):
        (work,) = drain(c, now)
        assert c.unavailable(work, now) is Verdict.RETRY
        now += 1.0
    (work,) = drain(c, now)
    assert c.unavailable(work, now, stopping=True) is Verdict.RELEASED
