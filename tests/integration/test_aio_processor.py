"""AsyncPaymentProcessor on the real broker and registry: exactly once, awaited."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from decimal import Decimal

import attrs
import pytest
from _events import make_events
from _outputs import assert_committed_once, read_ids

from paykafka import (
    FencedError,
    KafkaAdmin,
    Output,
    PaymentEvent,
    PaymentProducer,
    Settings,
)
from paykafka.aio import AsyncPaymentProcessor

THRESHOLD = Decimal(1000)


@pytest.fixture
def routed(topic_settings: Settings) -> tuple[Settings, str, str]:
    """Input settings (own group and transactional id) and two output topics of its own."""
    settings = attrs.evolve(topic_settings, transactional_id=f"{topic_settings.topic}-tx")
    return settings, f"{settings.topic}.review", f"{settings.topic}.cleared"


def _send(settings: Settings, events: list[PaymentEvent]) -> None:
    with PaymentProducer(settings) as producer:
        for event in events:
            producer.send(event)


def _router(review: str, cleared: str) -> Callable[[PaymentEvent], Awaitable[Output]]:
    async def route(event: PaymentEvent) -> Output:
        await asyncio.sleep(0)  # a handler that really awaits
        return Output(review if event.amount > THRESHOLD else cleared, event)

    return route


def test_async_router_writes_each_input_once_and_commits_its_offsets(
    routed: tuple[Settings, str, str],
) -> None:
    """2,000 inputs through `await run(async_handler)`: each output once, the group at the end."""
    settings, review, cleared = routed
    sent = make_events(2000)
    _send(settings, sent)

    async def main() -> tuple[int, tuple[int, int]]:
        async with AsyncPaymentProcessor(settings, output_topics=[review, cleared]) as processor:
            handled = await processor.run(
                _router(review, cleared), stop_at_end=True, handle_signals=False
            )
            return handled, processor.transactions

    handled, (committed, aborted) = asyncio.run(main())
    assert handled == 2000
    assert committed >= 2  # batches of at most 1000
    assert aborted == 0
    big = {e.payment_id for e in sent if e.amount > THRESHOLD}
    assert read_ids(settings, [review], isolation="read_committed").keys() == big
    assert_committed_once(settings, [review, cleared], {e.payment_id for e in sent})
    assert KafkaAdmin(settings).lag(settings.group_id, settings.topic).total == 0


def test_async_handler_error_aborts_the_batch_and_it_is_handled_again(
    routed: tuple[Settings, str, str],
) -> None:
    """A failure mid-batch aborts what the batch wrote; committed readers see no duplicate."""
    settings, review, cleared = routed
    settings = attrs.evolve(settings, transaction_batch_size=100)
    sent = make_events(300)
    _send(settings, sent)
    route = _router(review, cleared)
    failed: list[PaymentEvent] = []

    async def flaky(event: PaymentEvent) -> Output:
        if event.payment_id == sent[150].payment_id and not failed:
            failed.append(event)
            raise RuntimeError("downstream hiccup")
        return await route(event)

    async def main() -> tuple[int, int]:
        async with AsyncPaymentProcessor(
            settings, output_topics=[review, cleared], retry_backoff=0.1
        ) as processor:
            await processor.run(flaky, stop_at_end=True, handle_signals=False)
            return processor.transactions[1], processor.dead_lettered

    aborted, dead = asyncio.run(main())
    assert failed
    assert (aborted, dead) == (1, 0)
    committed = assert_committed_once(settings, [review, cleared], {e.payment_id for e in sent})
    uncommitted = read_ids(settings, [review, cleared], isolation="read_uncommitted")
    assert sum(uncommitted.values()) > sum(committed.values())  # the aborted writes exist


def test_a_newer_async_processor_with_the_same_id_fences_the_older(
    routed: tuple[Settings, str, str],
) -> None:
    """The older processor stops with FencedError; the newer one routes everything once."""
    settings, review, cleared = routed
    first_batch, second_batch = make_events(50, prefix="a"), make_events(50, prefix="b")
    _send(settings, first_batch)
    route = _router(review, cleared)

    async def until(condition: Callable[[], bool], what: str) -> None:
        for _ in range(600):
            if condition():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"waited 60 s for {what}")

    async def serve(processor: AsyncPaymentProcessor) -> None:
        async with processor:  # a fenced processor leaves the group, as a crashed one would
            await processor.run(route, handle_signals=False)

    async def main() -> tuple[BaseException | None, int, int]:
        old = AsyncPaymentProcessor(settings, output_topics=[review, cleared])
        new = AsyncPaymentProcessor(settings, output_topics=[review, cleared])
        old_run = asyncio.create_task(serve(old))
        await until(lambda: old.handled >= len(first_batch), "the first 50 inputs")
        new_run = asyncio.create_task(serve(new))  # claiming the id fences the old one
        await until(lambda: new._producer is not None, "the newer one to claim the id")
        await asyncio.to_thread(_send, settings, second_batch)
        done, _ = await asyncio.wait([old_run], timeout=60)
        assert done, "the old processor was not fenced within 60 s"
        await until(lambda: new.handled >= len(second_batch), "the next 50 inputs")
        new.stop()
        await asyncio.wait_for(new_run, 60)
        return old_run.exception(), old.handled, new.handled

    fenced, old_handled, new_handled = asyncio.run(main())
    assert isinstance(fenced, FencedError), repr(fenced)
    assert (old_handled, new_handled) == (len(first_batch), len(second_batch))
    assert_committed_once(
        settings, [review, cleared], {e.payment_id for e in first_batch + second_batch}
    )


def test_cancelling_run_aborts_the_open_transaction_and_the_next_run_handles_it_once(
    routed: tuple[Settings, str, str],
) -> None:
    """run() cancelled while a handler awaits: the batch's transaction is aborted, nothing of
    it is visible, and a new processor of the group handles every input exactly once."""
    settings, review, cleared = routed
    sent = make_events(500)
    _send(settings, sent)
    route = _router(review, cleared)

    async def first_run() -> tuple[int, tuple[int, int]]:
        entered = asyncio.Event()
        forever = asyncio.Event()

        async def stuck(event: PaymentEvent) -> Output:
            if event.payment_id == sent[400].payment_id:
                entered.set()
                await forever.wait()  # cancelled here, mid-transaction
            return await route(event)

        async with AsyncPaymentProcessor(settings, output_topics=[review, cleared]) as processor:
            task = asyncio.create_task(processor.run(stuck, handle_signals=False))
            await asyncio.wait_for(entered.wait(), 60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return processor.handled, processor.transactions

    handled, (_committed, aborted) = asyncio.run(first_run())
    assert aborted == 1
    assert handled < len(sent)  # the batch holding sent[400] was not committed
    visible = read_ids(settings, [review, cleared], isolation="read_committed")
    assert sent[400].payment_id not in visible
    assert len(visible) == handled

    async def second_run() -> int:
        async with AsyncPaymentProcessor(settings, output_topics=[review, cleared]) as processor:
            return await processor.run(route, stop_at_end=True, handle_signals=False)

    assert asyncio.run(second_run()) == len(sent) - handled
    assert_committed_once(settings, [review, cleared], {e.payment_id for e in sent})


def test_sigterm_stops_the_async_processor_after_the_current_transaction(
    routed: tuple[Settings, str, str],
) -> None:
    """SIGTERM (the loop's handler) ends run() normally, its batch committed, not aborted."""
    settings, review, cleared = routed
    settings = attrs.evolve(settings, transaction_batch_size=100)
    sent = make_events(400)
    _send(settings, sent)
    route = _router(review, cleared)
    previous = signal.getsignal(signal.SIGTERM)
    calls: list[PaymentEvent] = []

    async def terminating(event: PaymentEvent) -> Output:
        calls.append(event)
        if len(calls) == 1:
            # Never SIGTERM the test run itself: only once run() put the loop's handler there.
            assert signal.getsignal(signal.SIGTERM) is not previous, "no SIGTERM handler"
            os.kill(os.getpid(), signal.SIGTERM)
        return await route(event)

    async def main() -> tuple[int, tuple[int, int]]:
        async with AsyncPaymentProcessor(settings, output_topics=[review, cleared]) as processor:
            handled = await processor.run(terminating, idle_timeout=30)
            return handled, processor.transactions

    handled, (committed, aborted) = asyncio.run(main())
    assert signal.getsignal(signal.SIGTERM) == previous  # put back
    assert aborted == 0
    assert 1 <= handled <= 100  # the first batch, committed
    assert committed == 1
    seen = read_ids(settings, [review, cleared], isolation="read_committed")
    assert len(seen) == handled
    assert set(seen.values()) == {1}
