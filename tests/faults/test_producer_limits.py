"""The producer at its limits: a full local queue pushes back, a deadline reports, never drops."""

from __future__ import annotations

import time

import attrs
import pytest
from _events import make_events

from paykafka import DeliveryError, PaymentProducer
from paykafka._stack import Stack

from ._support import Report, TrackerThread, fresh_settings, stack_settings


@pytest.mark.timeout(180)
def test_a_full_queue_makes_send_wait_instead_of_failing(
    single_stack: Stack, report: Report
) -> None:
    """With room for 20 events in the local queue, 3,000 sends all wait their turn and land."""
    settings = fresh_settings(single_stack)
    sent = make_events(3_000)
    tracker = TrackerThread(settings).start()
    began = time.monotonic()
    with PaymentProducer(
        settings, kafka_options={"queue.buffering.max.messages": 20, "linger.ms": 1}
    ) as producer:
        futures = [producer.send(event) for event in sent]
    seconds = time.monotonic() - began
    delivered = sum(1 for f in futures if f.exception(0) is None)
    complete = tracker.wait_for({e.payment_id for e in sent}, timeout=60)
    tracker.stop()
    tracked = len({e.payment_id for e in sent} & tracker.seen.keys())
    report(
        sent=len(sent),
        delivered=delivered,
        tracked=tracked,
        lost=len(sent) - tracked,
        duplicates=tracker.total() - tracker.distinct(),
        dead_lettered=tracker.tracker.dead_lettered,
        seconds=round(seconds, 1),
    )
    assert delivered == len(sent)
    assert complete


@pytest.mark.timeout(60)
def test_no_broker_means_every_event_is_reported_back(single_stack: Stack, report: Report) -> None:
    """Broker unreachable: the send that finds the queue full and close() together return all."""
    nowhere = attrs.evolve(stack_settings(single_stack), bootstrap_servers="127.0.0.1:1")
    sent = make_events(6)
    producer = PaymentProducer(
        nowhere,
        queue_timeout=1.0,
        kafka_options={"queue.buffering.max.messages": 5},
    ).start()
    for event in sent[:5]:
        producer.send(event)
    with pytest.raises(DeliveryError) as full:
        producer.send(sent[5])  # waits queue_timeout for room, then says so
    assert full.value.code == "_QUEUE_FULL"
    assert full.value.retriable
    with pytest.raises(DeliveryError) as deadline:
        producer.close(timeout=1.0)
    reported = [e for e, _ in full.value.undelivered] + [e for e, _ in deadline.value.undelivered]
    report(
        sent=len(sent),
        refused_by_full_queue=len(full.value.undelivered),
        reported_at_close_deadline=len(deadline.value.undelivered),
        lost=len(sent) - len({e.payment_id for e in reported}),
    )
    assert sorted(str(e.payment_id) for e in reported) == sorted(str(e.payment_id) for e in sent)
    assert all("still queued" in why for _, why in deadline.value.undelivered)
