"""Three brokers, replication factor 3, min.insync.replicas 2: a dead leader loses nothing."""

from __future__ import annotations

import threading
import time

import pytest
from _events import make_events

from paykafka import DeliveryError, DeliveryFuture, PaymentProducer
from paykafka._admin import KafkaAdmin, TopicDescription
from paykafka._stack import Stack

from ._support import KilledNode, Report, TrackerThread, fresh_settings

EVENTS = 10_000
KILL_AFTER = 3_000


def _wait(admin: KafkaAdmin, topic: str, done: object, timeout: float) -> TopicDescription:
    """Describe ``topic`` until ``done(description)`` holds; fail after ``timeout``."""
    assert callable(done)
    deadline = time.monotonic() + timeout
    while True:
        try:
            description = admin.describe_topic(topic, configs=False)
        except Exception:  # noqa: BLE001 - metadata may be briefly unavailable mid-election
            description = None
        if description is not None and done(description):
            return description
        if time.monotonic() >= deadline:
            raise AssertionError(f"{topic} did not reach the expected state in {timeout}s")
        time.sleep(0.5)


@pytest.mark.timeout(480)
def test_killing_the_partition_leader_loses_nothing_and_the_isr_heals(
    cluster_stack: Stack, report: Report
) -> None:
    """SIGKILL of partition 0's leader mid-stream: 0 lost, ISR shrinks to 2 and heals to 3."""
    settings = fresh_settings(
        cluster_stack, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"}
    )
    admin = KafkaAdmin(settings, timeout=10)
    # Every broker must know the new topic, with all three copies in sync, before the kill.
    _wait(
        admin,
        settings.topic,
        lambda d: len(d.partitions) == 3 and all(len(p.isr) == 3 for p in d.partitions),
        timeout=60,
    )
    before = admin.describe_topic(settings.topic)
    assert before.replication_factor == 3
    assert before.min_insync_replicas == 2
    leader = before.partitions[0].leader
    assert leader is not None
    sent = make_events(EVENTS)
    tracker = TrackerThread(settings).start()
    failures: list[DeliveryError] = []
    crash = threading.Event()
    healed = threading.Event()
    leaderless = threading.Event()
    timeline: dict[str, object] = {}
    chaos_errors: list[BaseException] = []

    def chaos() -> None:
        try:
            crash.wait(120)
            killed_at = time.monotonic()
            node = KilledNode(cluster_stack, leader).kill()
            leaderless.set()
            shrunk = _wait(
                admin,
                settings.topic,
                lambda d: leader not in d.partitions[0].isr and d.partitions[0].leader != leader,
                timeout=60,
            )
            timeline["isr_after_kill"] = list(shrunk.partitions[0].isr)
            timeline["new_leader"] = shrunk.partitions[0].leader
            timeline["seconds_to_shrink"] = round(time.monotonic() - killed_at, 1)
            leaderless.clear()
            node.restart()
            restarted_at = time.monotonic()
            whole = _wait(
                admin,
                settings.topic,
                lambda d: all(len(p.isr) == 3 for p in d.partitions),
                timeout=120,
            )
            timeline["isr_after_restart"] = list(whole.partitions[0].isr)
            timeline["seconds_to_heal"] = round(time.monotonic() - restarted_at, 1)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test below
            chaos_errors.append(exc)
        finally:
            healed.set()

    def on_delivery(future: DeliveryFuture) -> None:
        error = future.exception(0)
        if error is not None:
            failures.append(error)

    threading.Thread(target=chaos, name="chaos", daemon=True).start()
    sent_before_new_leader = 0
    with PaymentProducer(settings, flush_timeout=240) as producer:
        for i, event in enumerate(sent):
            producer.send(event, on_delivery=on_delivery)
            sent_before_new_leader += leaderless.is_set()
            if i == KILL_AFTER:
                crash.set()
            if i % 100 == 99:
                time.sleep(0.1)  # ~1,000 events/s: the stream spans the kill and the election
        healed.wait(240)
    assert not chaos_errors, chaos_errors
    complete = tracker.wait_for({e.payment_id for e in sent}, timeout=180)
    tracker.stop()
    marks = admin.watermarks(settings.topic)
    in_log = sum(high - low for low, high in marks.values())
    tracked = len({e.payment_id for e in sent} & tracker.seen.keys())
    figures = {
        "sent": EVENTS,
        "sent_between_kill_and_new_leader": sent_before_new_leader,
        "delivery_failures": len(failures),
        "records_in_topic": in_log,
        "tracked": tracked,
        "lost": EVENTS - tracked,
        "duplicates": tracker.total() - tracker.distinct(),
        "dead_lettered": tracker.tracker.dead_lettered,
        "killed_leader": leader,
        **timeline,
    }
    report(**figures)
    assert not tracker.errors, tracker.errors
    assert complete, figures
    assert figures["lost"] == 0
    assert sent_before_new_leader > 0, "the leader was not killed mid-stream"
    assert not failures
    assert len(timeline["isr_after_kill"]) == 2  # type: ignore[arg-type]
    assert len(timeline["isr_after_restart"]) == 3  # type: ignore[arg-type]
    assert in_log == EVENTS, figures
