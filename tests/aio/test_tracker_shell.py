"""The async tracker's shell with a fake consumer: what it feeds the core, in which order."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError

from paykafka import Settings
from paykafka.aio import AsyncPaymentTracker


class Msg:
    """Just enough of confluent-kafka's Message for the shell and the core."""

    def __init__(self, offset: int, *, eof: bool = False) -> None:
        self._offset = offset
        self._error = KafkaError(KafkaError._PARTITION_EOF) if eof else None

    def topic(self) -> str:
        return "payments"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"marek"

    def error(self) -> Any:
        return self._error


class Consumer:
    """Hands out the batches it was given, one per consume() call."""

    def __init__(self, *batches: list[Msg]) -> None:
        self.batches = list(batches)
        self.paused: list[Any] = []

    def consume(self, _n: int, _timeout: float) -> list[Msg]:
        return self.batches.pop(0) if self.batches else []

    def pause(self, partitions: list[Any]) -> None:
        self.paused += partitions

    def commit(self, **_kw: Any) -> None:
        pass


def tracker_over(consumer: Consumer, **kw: Any) -> AsyncPaymentTracker:
    tracker = AsyncPaymentTracker(Settings(), **kw)
    tracker._consumer = consumer  # type: ignore[assignment]
    tracker._core.assigned([("payments", 0)])
    return tracker


def test_end_of_partition_after_records_of_the_same_batch_counts() -> None:
    """Records then their partition's end in one batch: once handled, the end is reached."""
    tracker = tracker_over(Consumer([Msg(0), Msg(1), Msg(2, eof=True)]))
    assert tracker._pump() == 3
    core = tracker._core
    for _ in range(2):
        work = core.next_work(0.0)
        assert work is not None
        core.handled(work)
    assert core.all_at_end()


def test_a_full_buffer_takes_no_more_records() -> None:
    """Once max_buffered records are held the shell stops reading until there is room."""
    consumer = Consumer([Msg(i) for i in range(10)], [Msg(10)])
    tracker = tracker_over(consumer, max_buffered=5)
    tracker._pump()
    tracker._pump()
    assert tracker._core.held == 10
    assert [[m.offset() for m in batch] for batch in consumer.batches] == [[10]]  # not read
