"""The async processor's face with fake clients: where each call runs, and what a cancellation
leaves behind (the real stack proves exactly-once in tests/integration/test_aio_processor.py)."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

import pytest

from paykafka import Output, PaymentEvent, Settings
from paykafka.aio import AsyncPaymentProcessor

OUT = "payments.cleared"


class Msg:
    """Just enough of confluent-kafka's Message for the face and the core."""

    def __init__(self, offset: int) -> None:
        self._offset = offset

    def topic(self) -> str:
        return "payments"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"ola"

    def value(self) -> bytes:
        return b"\x00\x00\x00\x00\x01" + str(self._offset).encode()

    def headers(self) -> None:
        return None

    def error(self) -> None:
        return None


class Consumer:
    """Hands out its records once, then nothing; remembers seeks."""

    def __init__(self, records: list[Msg]) -> None:
        self.records = records
        self.seeks: list[tuple[str, int, int]] = []

    def consume(self, n: int, _timeout: float) -> list[Msg]:
        out, self.records = self.records[:n], self.records[n:]
        return out

    def consumer_group_metadata(self) -> object:
        return object()

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def close(self) -> None:
        pass


class Producer:
    """Records which thread made each transactional call; ``commit_gate`` holds the commit."""

    def __init__(self) -> None:
        self.threads: dict[str, int] = {}
        self.produced: list[tuple[str, bytes | None]] = []
        self.commit_gate: threading.Event | None = None
        self.committed = 0
        self.aborted = 0

    def _at(self, call: str) -> None:
        self.threads[call] = threading.get_ident()

    def begin_transaction(self) -> None:
        self._at("begin")

    def produce(self, topic: str, value: bytes | None, key: bytes | None, headers: Any) -> None:
        self._at("produce")
        self.produced.append((topic, value))

    def send_offsets_to_transaction(self, offsets: Any, _meta: object, _timeout: float) -> None:
        self._at("send_offsets")

    def commit_transaction(self, _timeout: float) -> None:
        self._at("commit")
        if self.commit_gate is not None:
            assert self.commit_gate.wait(30), "the test never opened the commit gate"
        self.committed += 1

    def abort_transaction(self, _timeout: float) -> None:
        self._at("abort")
        self.aborted += 1

    def flush(self, _timeout: float) -> int:
        return 0


class Decoder:
    def decode(self, value: bytes) -> tuple[int, PaymentEvent]:
        return 1, PaymentEvent(user="ola", amount=Decimal("1.00"), currency="PLN", method="blik")


def _processor(records: int) -> tuple[AsyncPaymentProcessor, Consumer, Producer]:
    """A processor wired to fakes, as start() would wire it to real clients."""
    settings = Settings(transaction_batch_ms=5)
    processor = AsyncPaymentProcessor(settings, registry=object())  # type: ignore[arg-type]
    consumer, producer = Consumer([Msg(i) for i in range(records)]), Producer()
    processor._consumer, processor._producer = consumer, producer  # type: ignore[assignment]
    processor._decode = Decoder()  # type: ignore[assignment]
    processor._serializers[OUT] = lambda event: b"encoded"  # type: ignore[assignment]
    return processor, consumer, producer


async def _route(event: PaymentEvent) -> Output:
    return Output(OUT, event)


def test_transactional_calls_run_off_the_loop_and_produce_on_it() -> None:
    """begin, send_offsets and commit block on the broker: worker thread; produce never waits:
    the loop's thread."""
    processor, _, producer = _processor(3)

    async def main() -> int:
        processor._loop = asyncio.get_running_loop()
        handled = await processor.run(_route, max_events=3, handle_signals=False)
        assert producer.threads["produce"] == threading.get_ident()
        return handled

    assert asyncio.run(main()) == 3
    assert producer.produced == [(OUT, b"encoded")] * 3
    loop_thread = producer.threads["produce"]
    for call in ("begin", "send_offsets", "commit"):
        assert producer.threads[call] != loop_thread, call
    assert processor.transactions == (1, 0)


def test_a_cancellation_during_the_commit_waits_for_it_and_keeps_its_outcome() -> None:
    """Cancelled while the commit runs in its thread: the commit ends, is counted as
    committed (nothing aborted, no seek back), then run() raises CancelledError."""
    processor, consumer, producer = _processor(3)
    producer.commit_gate = threading.Event()

    async def main() -> None:
        processor._loop = asyncio.get_running_loop()
        task = asyncio.create_task(processor.run(_route, handle_signals=False))
        while "commit" not in producer.threads:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()  # still waiting for the commit's outcome
        assert producer.commit_gate is not None
        producer.commit_gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert (producer.committed, producer.aborted) == (1, 0)
    assert processor.transactions == (1, 0)
    assert processor.handled == 3
    assert consumer.seeks == []


def test_a_cancellation_in_the_handler_aborts_and_seeks_back_to_the_batch() -> None:
    """Cancelled while the handler awaits: the transaction is aborted (in a thread), the
    consumer sought back to the batch's first offset, nothing counted as handled."""
    processor, consumer, producer = _processor(3)
    entered = asyncio.Event()
    loop_thread = threading.get_ident()

    async def stuck(event: PaymentEvent) -> Output:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("never woken")

    async def main() -> None:
        processor._loop = asyncio.get_running_loop()
        task = asyncio.create_task(processor.run(stuck, handle_signals=False))
        await asyncio.wait_for(entered.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert (producer.committed, producer.aborted) == (0, 1)
    assert producer.threads["abort"] != loop_thread  # asyncio.run runs the loop in this thread
    assert processor.transactions == (0, 1)
    assert processor.handled == 0
    assert consumer.seeks == [("payments", 0, 0)]
