"""PaymentTracker's shell against a fake consumer: the issue-11 paths, one test each."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING

import paykafka._tracking._sync as sync_module
from paykafka import ConfigError, DecodeError, PaymentEvent, PaymentTracker, Settings

from ._fakes import FakeConsumer, FakeDeadLetters, FakeDecoder

SETTINGS = Settings(commit_interval=0.05)


class FakeRegistry:
    def schema_by_id(self, schema_id: int) -> str:
        raise AssertionError("the fake decoder never asks")

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tracker here talks to fakes."""
    FakeConsumer.instances.clear()
    FakeConsumer.partitions = 2
    FakeDeadLetters.written = []
    monkeypatch.setattr(sync_module, "Consumer", FakeConsumer)
    monkeypatch.setattr(sync_module, "DeadLetterWriter", FakeDeadLetters)


def started(**options: Any) -> tuple[PaymentTracker, FakeConsumer, FakeDecoder]:
    tracker = PaymentTracker(
        options.pop("settings", SETTINGS),
        registry=FakeRegistry(),  # type: ignore[arg-type]
        **options,
    )
    tracker.start()
    decoder = FakeDecoder()
    tracker._decode = decoder  # type: ignore[assignment]
    return tracker, FakeConsumer.instances[-1], decoder


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_poison_without_dead_letters_is_raised_and_never_skipped() -> None:
    """Issue 11.1: dead letters off, an undecodable record raises every time it is reached,
    and no commit passes it."""
    tracker, consumer, _ = started(dead_letters=False)
    consumer.add(0, "a", b"u0")
    consumer.add(0, "b", b"poison")
    consumer.add(0, "c", b"u2")
    first = tracker.poll(1.0)
    assert first is not None
    assert first.offset == 0
    with pytest.raises(DecodeError):
        tracker.poll(1.0)
    with pytest.raises(DecodeError):
        tracker.poll(1.0)  # still on the poison record, not past it
    tracker.close()
    assert consumer.committed.get(0, 0) <= 1


def test_stop_during_a_failing_handler_leaves_the_event_unacknowledged() -> None:
    """Issue 11.2: stop() while a handler fails transiently: nothing dead-lettered, nothing
    committed past the event, and run()'s count equals tracker.handled."""
    tracker, consumer, _ = started(handler_retries=3, retry_backoff=0.01)
    consumer.add(0, "a", b"u0")
    consumer.add(0, "a", b"u1")

    def handler(event: PaymentEvent) -> None:
        tracker.stop()  # SIGTERM arrives while the ledger is down
        raise RuntimeError("ledger down")

    count = tracker.run(handler, idle_timeout=2, handle_signals=False)
    tracker.close()
    assert FakeDeadLetters.written == []
    assert consumer.committed.get(0, 0) == 0
    assert count == tracker.handled == 0


def slow_run(tracker: PaymentTracker, consumer: FakeConsumer, check: Any) -> None:
    """Run a handler that blocks on its first event until ``check(consumer)`` holds."""
    release = threading.Event()
    entered = threading.Event()

    def slow(event: PaymentEvent) -> None:
        entered.set()
        release.wait(5)

    runner = threading.Thread(
        target=tracker.run, kwargs={"handler": slow, "max_events": 1, "handle_signals": False}
    )
    runner.start()
    try:
        assert entered.wait(5)
        calls = consumer.calls
        wait_until(lambda: consumer.calls > calls + 5 and check(consumer), timeout=2)
    finally:
        release.set()
        runner.join(5)
        tracker.close()
    assert consumer.committed[0] == 1


def test_a_slow_handler_keeps_the_consumer_served() -> None:
    """Issue 11.3: while a handler runs, run() keeps calling the consumer (heartbeats,
    max.poll.interval.ms, rebalances), so a slow handler does not cost the membership."""
    tracker, consumer, _ = started(kafka_options={"max.poll.interval.ms": 1000})
    for i in range(10):
        consumer.add(0, f"k{i}", f"u{i}".encode())
    slow_run(tracker, consumer, lambda c: True)


def test_a_slow_handler_pauses_fetching_once_the_buffer_is_full() -> None:
    """Bounded memory: with the buffer full the partitions are paused, and still served."""
    tracker, consumer, _ = started(max_buffered=4, concurrency=2)
    for i in range(10):
        consumer.add(0, f"k{i}", f"u{i}".encode())
    slow_run(tracker, consumer, lambda c: c.paused)


def test_from_beginning_never_overrides_a_committed_offset() -> None:
    """Issue 11.4: from_beginning only applies where the group has no offset (earliest)."""
    tracker, consumer, _ = started(from_beginning=True)
    consumer.poll(0)  # the assignment
    assert OFFSET_BEGINNING not in consumer.assigned_offsets
    assert consumer.conf["auto.offset.reset"] == "earliest"
    tracker.close()


def test_the_end_of_a_partition_is_forgotten_when_records_arrive() -> None:
    """Issue 11.5: stop_at_end does not stop on an end seen before later records arrived."""
    tracker, consumer, _ = started()
    assert tracker.poll(0.2) is None  # both partitions seen empty, at their end
    consumer.add(0, "a", b"u0", after=2)
    consumer.add(0, "a", b"u1", after=200)  # later than one poll(0.5) waits
    got = [r.offset for r in tracker.records(stop_at_end=True, idle_timeout=5)]
    tracker.close()
    assert got == [0, 1]


def test_lost_partitions_commit_nothing() -> None:
    """Issue 11.5: partitions lost (not revoked) are dropped without a commit."""
    tracker, consumer, _ = started(settings=Settings())
    consumer.add(0, "a", b"u0")
    consumer.add(0, "a", b"u1")
    record = tracker.poll(1.0)
    assert record is not None
    tracker.ack()
    consumer.lose([0])
    tracker.poll(0.05)  # u1, fetched before the loss
    tracker.poll(0.05)  # the loss
    tracker.close()
    assert all(0 not in c for c in consumer.commits)


def test_cooperative_sticky_assigns_incrementally() -> None:
    """Issue 11.5: with the cooperative-sticky assignor partitions come and go one by one."""
    settings = Settings(kafka_options={"partition.assignment.strategy": "cooperative-sticky"})
    tracker, consumer, _ = started(settings=settings)
    consumer.add(0, "a", b"u0")
    consumer.add(1, "b", b"u1")
    assert tracker.poll(1.0) is not None
    consumer.revoke([1])
    tracker.poll(0.05)
    tracker.poll(0.05)
    assert consumer.assigned == {0}
    tracker.close()


def test_handled_offsets_are_committed_while_running() -> None:
    """Commits happen every commit_interval while running, not only at the end."""
    tracker, consumer, _ = started()
    consumer.add(0, "a", b"u0")
    consumer.add(0, "a", b"u1")
    got: list[PaymentEvent] = []
    seen_committed: list[int | None] = []

    def handler(event: PaymentEvent) -> None:
        got.append(event)
        if len(got) == 2:
            deadline = time.monotonic() + 2
            while consumer.committed.get(0) is None and time.monotonic() < deadline:
                time.sleep(0.01)
            seen_committed.append(consumer.committed.get(0))

    tracker.run(handler, max_events=2, handle_signals=False)
    tracker.close()
    assert seen_committed == [1]  # the first event, committed while the second ran
    assert consumer.committed[0] == 2


def test_revoke_waits_for_in_flight_and_commits_only_what_was_handled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On revoke nothing more of the partition is handed out; a handler that finishes in
    time is committed, one that does not is abandoned and not committed."""
    monkeypatch.setattr(sync_module, "_REVOKE_WAIT", 0.3, raising=False)
    tracker, consumer, _ = started(concurrency=2)
    consumer.add(0, "a", b"fast")
    consumer.add(0, "a", b"after")
    consumer.add(1, "b", b"stuck")
    consumer.add(1, "b", b"never")
    seen: list[str] = []
    unblock = threading.Event()

    def handler(event: PaymentEvent) -> None:
        seen.append(event.user)
        if event.user == "fast":
            consumer.revoke([0, 1])
            time.sleep(0.05)
        if event.user == "stuck":
            unblock.wait(5)

    runner = threading.Thread(
        target=tracker.run, kwargs={"handler": handler, "idle_timeout": 1, "handle_signals": False}
    )
    runner.start()
    wait_until(lambda: 0 in consumer.committed)
    unblock.set()
    runner.join(5)
    assert consumer.committed[0] == 1  # "fast" finished within the revoke
    assert 1 not in consumer.committed  # "stuck" was abandoned: never committed
    assert "after" not in seen
    assert "never" not in seen
    tracker.close()


def test_concurrency_keeps_each_key_in_order_and_runs_keys_together() -> None:
    """concurrency=4: per-key offset order, more than one key at a time, never more than 4."""
    tracker, consumer, _ = started(concurrency=4)
    for i in range(200):
        consumer.add(i % 7 % 2, f"k{i % 7}", f"k{i % 7}-{i}".encode())
    order: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()
    running = [0, 0]

    def handler(event: PaymentEvent) -> None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.001)
        key, n = event.user.split("-")
        with lock:
            order[key].append(int(n))
            running[0] -= 1

    count = tracker.run(handler, max_events=200, handle_signals=False)
    tracker.close()
    assert count == 200
    assert all(v == sorted(v) for v in order.values())
    assert 1 < running[1] <= 4
    assert sum(consumer.committed.values()) == 200


def test_a_retry_holds_back_only_its_own_key() -> None:
    """While one key's record waits to be retried, other keys go on being handled."""
    tracker, consumer, _ = started(retry_backoff=0.3, handler_retries=1, concurrency=2)
    consumer.add(0, "a", b"a-0")
    consumer.add(0, "a", b"a-1")
    consumer.add(0, "b", b"b-2")
    seen: list[str] = []
    failed: set[str] = set()

    def handler(event: PaymentEvent) -> None:
        if event.user == "a-0" and not failed:
            failed.add(event.user)
            raise RuntimeError("once")
        seen.append(event.user)

    tracker.run(handler, max_events=3, handle_signals=False)
    tracker.close()
    assert seen == ["b-2", "a-0", "a-1"]


def test_registry_outage_retries_then_tracks() -> None:
    """A retriable decode failure is retried, neither dead-lettered nor skipped."""
    tracker, consumer, decoder = started(retry_backoff=0.01)
    consumer.add(0, "a", b"u0")
    decoder.outage = True
    threading.Timer(0.2, lambda: setattr(decoder, "outage", False)).start()
    got: list[PaymentEvent] = []
    tracker.run(got.append, max_events=1, handle_signals=False)
    tracker.close()
    assert len(got) == 1
    assert FakeDeadLetters.written == []


def test_poison_is_dead_lettered_and_tracking_goes_on() -> None:
    """With dead letters on, a poison record goes to the DLQ and is committed past."""
    tracker, consumer, _ = started()
    consumer.add(0, "a", b"poison")
    consumer.add(0, "a", b"u1")
    got: list[PaymentEvent] = []
    count = tracker.run(got.append, max_events=1, handle_signals=False)  # poison is no event
    tracker.close()
    assert count == len(got) == 1
    assert FakeDeadLetters.written == [(0, 0, "not_confluent_framing")]
    assert consumer.committed[0] == 2
    assert tracker.dead_lettered == 1


def test_impossible_options_are_a_config_error() -> None:
    """concurrency=0 is refused with ConfigError, naming the option."""
    with pytest.raises(ConfigError, match="concurrency"):
        PaymentTracker(SETTINGS, registry=FakeRegistry(), concurrency=0)  # type: ignore[arg-type]


def test_a_slow_loop_body_keeps_the_consumer_served_too() -> None:
    """Iterating: while the caller holds an event longer than the keeper's threshold, the
    consumer is still called, paused; asking for the next event resumes fetching."""
    tracker, consumer, _ = started(kafka_options={"max.poll.interval.ms": 1000})
    consumer.add(0, "a", b"u0")
    consumer.add(1, "b", b"u1")
    first = tracker.poll(1.0)
    assert first is not None
    calls = consumer.calls
    wait_until(lambda: consumer.calls > calls + 5 and consumer.paused == {0, 1}, timeout=3)
    second = tracker.poll(1.0)
    assert second is not None
    tracker.poll(0.1)
    assert consumer.paused == set()
    tracker.close()
    assert consumer.committed == {0: 1, 1: 1}
