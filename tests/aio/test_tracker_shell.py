"""The async tracker's shell with a fake consumer: what it feeds the core, in which order."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import attrs
import pytest
from confluent_kafka import KafkaError
from hypothesis import given, settings
from hypothesis import strategies as st

from paykafka import AuthorizationError, PaymentEvent, Settings
from paykafka.aio import AsyncPaymentTracker

# A frame header whose schema id the tracker is told it knows (so it decodes on the loop).
HEADER = b"\x00\x00\x00\x00\x01"


class Msg:
    """Just enough of confluent-kafka's Message for the shell and the core."""

    def __init__(self, offset: int, *, eof: bool = False, key: str = "marek") -> None:
        self._offset = offset
        self._key = key
        self._error: Any = KafkaError(KafkaError._PARTITION_EOF) if eof else None

    def topic(self) -> str:
        return "payments"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key.encode()

    def value(self) -> bytes:
        return HEADER + str(self._offset).encode()

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)

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

    def resume(self, partitions: list[Any]) -> None:
        self.paused = [tp for tp in self.paused if tp not in partitions]

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


class Decoder:
    """Decodes the fake frames: the event's user is the record's key, its note the offset."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def decode(self, value: bytes) -> tuple[int, PaymentEvent]:
        offset = int(value[len(HEADER) :])
        event = PaymentEvent(
            user=self.keys[offset], amount=Decimal("1.00"), currency="PLN", method="blik"
        )
        return 1, attrs.evolve(event, note=str(offset))


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.sampled_from("abcde"), min_size=1, max_size=40),
    delays=st.lists(st.integers(0, 3), min_size=1, max_size=10),
    concurrency=st.integers(1, 8),
)
def test_random_delays_keep_each_keys_order_and_the_limit(
    keys: list[str], delays: list[int], concurrency: int
) -> None:
    """Whatever the handlers' delays: per key in offset order, never two of a key at once,
    never more than ``concurrency`` in flight, and every record handled once."""
    records = [Msg(i, key=k) for i, k in enumerate(keys)]
    consumer = Consumer(records[: len(records) // 2], records[len(records) // 2 :])
    consumer.batches.append([Msg(len(records), eof=True)])
    tracker = tracker_over(consumer, concurrency=concurrency)
    tracker._decode = Decoder(keys)  # type: ignore[assignment]
    tracker._known_ids.add(HEADER[1:5])
    seen: dict[str, list[int]] = {}
    running: set[str] = set()
    peak = 0
    overlap = False

    async def handler(event: PaymentEvent) -> None:
        nonlocal peak, overlap
        overlap = overlap or event.user in running
        running.add(event.user)
        peak = max(peak, len(running))
        offset = int(event.note or "0")
        await asyncio.sleep(delays[offset % len(delays)] / 1000)
        running.discard(event.user)
        seen.setdefault(event.user, []).append(offset)

    handled = asyncio.run(tracker.run(handler, stop_at_end=True, handle_signals=False))
    assert handled == len(records)
    assert not overlap
    assert peak <= concurrency
    for key, offsets in seen.items():
        assert offsets == [i for i, k in enumerate(keys) if k == key]


class Refused:
    """A broker's refusal as confluent-kafka reports it on a record."""

    def code(self) -> int:
        return 29

    def name(self) -> str:
        return "TOPIC_AUTHORIZATION_FAILED"

    def str(self) -> str:
        return "Broker: Topic authorization failed"

    def fatal(self) -> bool:
        return False


def test_a_refused_read_is_raised_by_run_not_waited_out() -> None:
    """An ACL refusal on the topic ends run() with AuthorizationError naming topic and READ."""
    refused = Msg(0)
    refused._error = Refused()
    tracker = tracker_over(Consumer([refused]))

    async def handler(_event: PaymentEvent) -> None:
        raise AssertionError("nothing may be handled")

    with pytest.raises(AuthorizationError) as info:
        asyncio.run(tracker.run(handler, handle_signals=False, idle_timeout=30))
    assert info.value.operation == "READ"
    assert info.value.resource == "payments"
