"""The dead-letter bookkeeping that needs no broker: done-offset ranges, origins, limits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from paykafka import DeadLetter, DeadLetterQueue, Settings
from paykafka._dlq import (
    _MAX_METADATA,
    REPLAYABLE_REASONS,
    _decode_done,
    _encode_done,
    _latest_per_origin,
    _Partition,
)


def letter(offset: int, *, reason: str = "handler_failed", origin: int | None = None) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        message="",
        source_topic="payments",
        source_partition=0,
        source_offset=100 + offset,
        schema_id=None,
        key=None,
        value=b"x",
        dlq_partition=0,
        dlq_offset=offset,
        origin=None if origin is None else ("payments", 0, origin),
    )


@given(st.sets(st.integers(0, 10**12), max_size=200))
def test_done_offsets_survive_the_commit_metadata(offsets: set[int]) -> None:
    """Any set of done offsets reads back from its metadata text unchanged."""
    assert _decode_done(_encode_done(sorted(offsets))) == offsets


def test_consecutive_offsets_are_one_range() -> None:
    """A run of done offsets costs one range, so metadata stays small."""
    assert _encode_done(range(5, 1000)) == '{"done":[[5,999]]}'
    assert _decode_done("not json") == frozenset()


def test_only_the_newest_letter_of_a_record_is_pending() -> None:
    """A letter written again after a replay supersedes the older one of the same origin."""
    first = letter(0)  # written for payments[0]@100
    again = letter(1, origin=100)  # the same record, replayed and dead-lettered again
    other = letter(2)
    pending, superseded = _latest_per_origin([first, again, other])
    assert pending == [again, other]
    assert superseded == [first]


def test_reasons_that_cannot_succeed_are_not_replayable() -> None:
    """Only reasons a fix outside the record can cure are replayable."""
    assert {"handler_failed", "unknown_schema_id", "registry_unavailable"} == REPLAYABLE_REASONS
    assert not letter(0, reason="corrupt_avro").replayable


def test_scattered_letters_are_replayed_only_as_far_as_the_metadata_holds() -> None:
    """Among thousands of letters that stay pending, replay takes what fits, defers the rest."""
    queue = DeadLetterQueue(Settings())
    pending = [letter(o, reason="handler_failed" if o % 2 else "corrupt_avro") for o in range(6000)]
    chosen = [d for d in pending if d.replayable]
    parts = {0: _Partition(start=0, end=6000, done=frozenset())}
    fits = queue._fitting(parts, pending, chosen, [])
    assert 0 < fits < len(chosen)
    commits = queue._commits(parts, pending, chosen[:fits], [])
    assert all(len(tp.metadata or "") <= _MAX_METADATA for tp in commits)
    assert commits[0].offset == 0  # the first corrupt letter is still pending
    assert queue._fitting(parts, pending, chosen[:10], []) == 10
