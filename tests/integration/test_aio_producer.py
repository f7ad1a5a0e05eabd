"""AsyncPaymentProducer on the real broker and registry: acks, back-pressure, undelivered."""

from __future__ import annotations

import asyncio
import time

import attrs
import pytest
from _events import make_events

from paykafka import Delivery, DeliveryError, PaymentEvent, PaymentTracker, Settings
from paykafka.aio import AsyncPaymentProducer


class Ticker:
    """Counts how often the loop ran a 1 ms timer, and the longest gap between two runs."""

    def __init__(self) -> None:
        self.ticks = 0
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.ticks += 1
            self.worst = max(self.worst, now - last)
            last = now

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


def offline(settings: Settings) -> Settings:
    """The same registry, but a bootstrap address where no broker listens."""
    return attrs.evolve(settings, bootstrap_servers="localhost:1", create_topic=False)


def test_gathered_sends_are_each_acknowledged_and_readable(topic_settings: Settings) -> None:
    """Hundreds of sends in flight at once each return their Delivery; all can be read back."""
    events = make_events(300, prefix="aio")

    async def main() -> list[Delivery]:
        async with AsyncPaymentProducer(topic_settings) as producer:
            with Ticker() as ticker:
                deliveries = await asyncio.gather(*(producer.send(e) for e in events))
            assert ticker.ticks > 0  # the loop kept running while the sends were in flight
            assert producer.in_flight == 0
            return deliveries

    deliveries = asyncio.run(main())
    assert [d.event for d in deliveries] == events
    assert {d.topic for d in deliveries} == {topic_settings.topic}
    positions = {(d.partition, d.offset) for d in deliveries}
    assert len(positions) == len(events)
    got: list[PaymentEvent] = []
    with PaymentTracker(topic_settings) as tracker:
        tracker.run(got.append, max_events=len(events), idle_timeout=30, handle_signals=False)
    assert sorted(e.payment_id for e in got) == sorted(e.payment_id for e in events)


def test_enqueue_order_is_kept_per_user(topic_settings: Settings) -> None:
    """Events enqueued one after another for one user get increasing offsets on one partition."""
    events = make_events(200, prefix="order", users=1)

    async def main() -> list[Delivery]:
        async with AsyncPaymentProducer(topic_settings) as producer:
            futures = [await producer.enqueue(e) for e in events]
            await producer.flush()
            return [f.result() for f in futures]

    deliveries = asyncio.run(main())
    assert len({d.partition for d in deliveries}) == 1
    offsets = [d.offset for d in deliveries]
    assert offsets == sorted(offsets)


def test_failed_send_raises_and_an_abandoned_one_is_reported_by_close(
    live_settings: Settings,
) -> None:
    """No broker: an awaited send raises DeliveryError; a cancelled one is raised by close()."""
    settings = offline(live_settings)
    first, second = make_events(2, prefix="lost")

    async def main() -> DeliveryError:
        producer = AsyncPaymentProducer(settings, kafka_options={"message.timeout.ms": 1500})
        await producer.start()
        with pytest.raises(DeliveryError) as awaited:
            await producer.send(first)
        assert awaited.value.undelivered[0][0] == first
        assert awaited.value.code == "_MSG_TIMED_OUT"
        assert awaited.value.retriable  # the broker may be back later: sending again can work
        abandoned = asyncio.ensure_future(producer.send(second))
        await asyncio.sleep(0.2)
        abandoned.cancel()
        with pytest.raises(DeliveryError) as closing:
            await producer.close(timeout=10)
        return closing.value

    error = asyncio.run(main())
    assert [event for event, _ in error.undelivered] == [second]


def test_close_reports_what_is_still_queued_at_the_deadline(live_settings: Settings) -> None:
    """Events the broker never took are listed by close() once its deadline passes."""
    settings = offline(live_settings)
    events = make_events(5, prefix="queued")

    async def main() -> DeliveryError:
        producer = await AsyncPaymentProducer(settings).start()
        for e in events:
            await producer.enqueue(e)
        with pytest.raises(DeliveryError) as closing:
            await producer.close(timeout=0.5)
        return closing.value

    error = asyncio.run(main())
    assert [event for event, _ in error.undelivered] == events
    assert error.retriable


def test_full_queue_suspends_the_sender_not_the_loop(live_settings: Settings) -> None:
    """With the local queue full a send waits (the loop keeps ticking) and then says why."""
    settings = offline(live_settings)
    events = make_events(3, prefix="full")

    async def main() -> tuple[DeliveryError, Ticker, float]:
        producer = AsyncPaymentProducer(
            settings,
            queue_timeout=0.5,
            kafka_options={"queue.buffering.max.messages": 2},
        )
        await producer.start()
        await producer.enqueue(events[0])
        await producer.enqueue(events[1])
        with Ticker() as ticker:
            started = time.perf_counter()
            with pytest.raises(DeliveryError) as full:
                await producer.enqueue(events[2])
            waited = time.perf_counter() - started
        with pytest.raises(DeliveryError):
            await producer.close(timeout=0.2)
        return full.value, ticker, waited

    error, ticker, waited = asyncio.run(main())
    assert error.code == "_QUEUE_FULL"
    assert error.retriable
    assert error.undelivered[0][0] == events[2]
    assert waited >= 0.5
    assert ticker.ticks >= 50  # ~500 timer runs were due; far fewer would mean a blocked loop
