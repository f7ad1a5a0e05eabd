"""AsyncPaymentTracker on the real stack: key order under concurrency, retries, back-pressure."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from _events import make_events

from paykafka import PaymentEvent, PaymentProducer, Settings
from paykafka.aio import AsyncPaymentTracker

WORKER = Path(__file__).with_name("_aio_worker.py")


def produce(settings: Settings, events: list[PaymentEvent]) -> None:
    with PaymentProducer(settings) as producer:
        for event in events:
            producer.send(event)


def test_async_for_reads_each_event_and_a_break_leaves_the_event_unacknowledged(
    topic_settings: Settings,
) -> None:
    """async for hands every event out; the one a break left is read again by the next run."""
    events = make_events(40, prefix="iter", users=5)
    produce(topic_settings, events)

    async def main() -> tuple[list[PaymentEvent], list[PaymentEvent]]:
        first: list[PaymentEvent] = []
        async with AsyncPaymentTracker(topic_settings) as tracker:
            async for event in tracker:
                first.append(event)
                if len(first) == 10:
                    break
            await asyncio.sleep(0.2)  # the loop finalizes the left generator (aclose)
            await tracker.commit()
        rest: list[PaymentEvent] = []
        async with AsyncPaymentTracker(topic_settings) as tracker:
            async for record in tracker.records(stop_at_end=True, idle_timeout=30):
                rest.append(record.event)
        return first, rest

    first, rest = asyncio.run(main())
    ids = {e.payment_id for e in events}
    assert {e.payment_id for e in first[:9]} | {e.payment_id for e in rest} == ids
    assert first[9].payment_id in {e.payment_id for e in rest}  # the break's event: not acked
    assert len(rest) == len(events) - 9


def test_concurrent_handlers_keep_each_users_order(topic_settings: Settings) -> None:
    """concurrency=32 with random handler delays: many in flight, one user's events in order."""
    events = make_events(1500, prefix="order", users=120)
    produce(topic_settings, events)
    sent_order: dict[str, list[str]] = defaultdict(list)
    for e in events:
        sent_order[e.user].append(str(e.payment_id))
    rng = random.Random(15)
    handled: dict[str, list[str]] = defaultdict(list)
    running: set[str] = set()
    overlap: list[str] = []
    peak = 0

    async def handler(event: PaymentEvent) -> None:
        nonlocal peak
        if event.user in running:
            overlap.append(event.user)
        running.add(event.user)
        peak = max(peak, len(running))
        await asyncio.sleep(rng.random() * 0.004)
        running.discard(event.user)
        handled[event.user].append(str(event.payment_id))

    async def main() -> int:
        async with AsyncPaymentTracker(topic_settings, concurrency=32) as tracker:
            return await tracker.run(handler, stop_at_end=True, idle_timeout=30)

    count = asyncio.run(main())
    assert count == len(events)
    assert overlap == []
    assert dict(handled) == dict(sent_order)
    assert 8 < peak <= 32


def test_a_retry_holds_back_only_its_own_user(topic_settings: Settings) -> None:
    """While one user's event waits for its retry, other users' events keep flowing."""
    slow = make_events(3, prefix="slow", users=1)
    fast = make_events(60, prefix="fast", users=6)
    produce(topic_settings, slow + fast)
    failures = {slow[0].payment_id: 2}
    log: list[tuple[float, PaymentEvent]] = []

    async def handler(event: PaymentEvent) -> None:
        left = failures.get(event.payment_id, 0)
        if left:
            failures[event.payment_id] = left - 1
            raise RuntimeError("provider timeout")
        log.append((time.monotonic(), event))

    async def main() -> None:
        async with AsyncPaymentTracker(
            topic_settings, concurrency=8, retry_backoff=0.4, handler_retries=3
        ) as tracker:
            await tracker.run(handler, stop_at_end=True, idle_timeout=30)

    asyncio.run(main())
    got = [e for _, e in log]
    assert [e for e in got if e.user == slow[0].user] == slow  # in order, after its retries
    assert {e.payment_id for e in got} == {e.payment_id for e in slow + fast}
    first_slow = next(t for t, e in log if e.payment_id == slow[0].payment_id)
    fast_before = [e for t, e in log if e.user != slow[0].user and t < first_slow]
    assert len(fast_before) == len(fast)  # the others did not wait for the ~1.2 s of retries


def test_a_handler_that_never_returns_pauses_fetching(topic_settings: Settings) -> None:
    """Back-pressure: with every slot stuck, records held stay bounded instead of growing."""
    events = make_events(6000, prefix="stuck", users=300)
    produce(topic_settings, events)
    forever = asyncio.Event()

    async def handler(_event: PaymentEvent) -> None:
        await forever.wait()

    async def main() -> list[int]:
        held: list[int] = []
        async with AsyncPaymentTracker(topic_settings, concurrency=4, max_buffered=100) as tracker:
            run = asyncio.ensure_future(tracker.run(handler, handle_signals=False))
            for _ in range(6):
                await asyncio.sleep(0.5)
                held.append(tracker._core.held)
            assert tracker.in_flight == 4
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            assert tracker.handled == 0
        return held

    held = asyncio.run(main())
    assert max(held) <= 100 + 500  # max_buffered, overshot by at most one fetched batch
    assert held[-1] == held[2]  # flat: paused, not creeping up


def crash_and_restart(settings: Settings, tmp_path: Path, sig: signal.Signals) -> tuple[int, int]:
    """4,000 events; a concurrent async tracker process gets ``sig`` after 1,000, a second one
    handles the rest. Returns (ids written before the signal, duplicates in all)."""
    events = make_events(4000, prefix=f"crash-{sig.name}", users=200)
    produce(settings, events)
    out = tmp_path / "handled.txt"
    env = {
        **os.environ,
        "PAYKAFKA_TOPIC": settings.topic,
        "PAYKAFKA_GROUP_ID": settings.group_id,
        "PAYKAFKA_DLQ_TOPIC": settings.dlq_topic,
        # The dead member's partitions move after its session times out: keep that short.
        "PAYKAFKA_KAFKA_OPTIONS": '{"session.timeout.ms": "6000"}',
    }
    command = [sys.executable, str(WORKER), str(out)]
    victim = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and out.read_text().count("\n") >= 1000:
                break
            time.sleep(0.05)
        victim.send_signal(sig)
        code = victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    first = out.read_text().count("\n")
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), f"exit {code}"
    assert 1000 <= first < len(events), f"{first} handled before the signal"  # mid-stream
    subprocess.run([*command, "--until-end"], env=env, timeout=120, check=True)
    handled = out.read_text().split()
    assert set(handled) == {str(e.payment_id) for e in events}  # 0 lost
    return first, len(handled) - len(events)


def test_sigkill_mid_stream_then_restart_loses_nothing(
    topic_settings: Settings, tmp_path: Path
) -> None:
    """A concurrent async tracker SIGKILLed mid-stream: its successor handles every remainder."""
    first, duplicates = crash_and_restart(topic_settings, tmp_path, signal.SIGKILL)
    # Re-read after the kill: at most what was in flight or handled since the last commit.
    assert duplicates < first


def test_sigterm_stops_gracefully_and_commits_everything_handled(
    topic_settings: Settings, tmp_path: Path
) -> None:
    """SIGTERM mid-stream: handlers in flight finish, all handled is committed, exit 0."""
    first, duplicates = crash_and_restart(topic_settings, tmp_path, signal.SIGTERM)
    assert duplicates == 0, f"{duplicates} handled twice; {first} before the signal"


def test_a_rebalance_with_handlers_in_flight_loses_nothing_and_never_overlaps_a_user(
    topic_settings: Settings,
) -> None:
    """A second tracker joins mid-stream: 0 lost, and no user is ever handled twice at once."""
    events = make_events(2000, prefix="rebal", users=150)
    produce(topic_settings, events)
    rng = random.Random(11)
    handled: set[str] = set()
    running: set[str] = set()
    overlap: list[str] = []
    everything = asyncio.Event()

    async def handler(event: PaymentEvent) -> None:
        if event.user in running:
            overlap.append(event.user)
        running.add(event.user)
        try:
            await asyncio.sleep(rng.random() * 0.02)
        finally:
            running.discard(event.user)
        handled.add(str(event.payment_id))
        if len(handled) == len(events):
            everything.set()

    async def member(joined: asyncio.Event | None) -> int:
        if joined is not None:
            await joined.wait()
        async with AsyncPaymentTracker(topic_settings, concurrency=2) as tracker:
            run = asyncio.ensure_future(tracker.run(handler, handle_signals=False))
            done = asyncio.ensure_future(everything.wait())
            await asyncio.wait([run, done], timeout=90, return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            tracker.stop()
            return await run

    async def main() -> list[int]:
        second = asyncio.Event()

        async def start_second_mid_stream() -> None:
            while len(handled) < 300:
                await asyncio.sleep(0.01)
            second.set()

        starter = asyncio.ensure_future(start_second_mid_stream())
        counts = await asyncio.gather(member(None), member(second))
        starter.cancel()
        return list(counts)

    counts = asyncio.run(main())
    assert handled == {str(e.payment_id) for e in events}  # 0 lost
    assert overlap == []
    assert all(c > 0 for c in counts)  # both owned partitions at some point
