"""The optimised send and poll paths keep their guarantees on the real broker."""

from __future__ import annotations

from _events import make_events

from paykafka import (
    Delivery,
    DeliveryFuture,
    PaymentEvent,
    PaymentProducer,
    PaymentTracker,
    Settings,
)


def events(n: int) -> list[PaymentEvent]:
    return make_events(n, users=13)


def test_every_send_reports_its_delivery_exactly_once(topic_settings: Settings) -> None:
    """A burst of sends: each callback fires once with its own event and a distinct offset."""
    sent = events(2000)
    reported: list[DeliveryFuture] = []
    with PaymentProducer(topic_settings) as producer:
        futures = [producer.send(e, on_delivery=reported.append) for e in sent]
    assert sorted(map(id, reported)) == sorted(map(id, futures))
    deliveries = [f.result(0) for f in futures]
    assert all(isinstance(d, Delivery) for d in deliveries)
    assert [d.event for d in deliveries] == sent
    assert {d.topic for d in deliveries} == {topic_settings.topic}
    assert len({(d.partition, d.offset) for d in deliveries}) == len(sent)
    late: list[DeliveryFuture] = []
    futures[0].add_done_callback(late.append)  # already done: called at once
    assert late == [futures[0]]


def test_batched_polling_commits_only_handled_events(topic_settings: Settings) -> None:
    """A tracker that stops mid-batch leaves the rest for the group: nothing lost or repeated."""
    sent = events(600)
    with PaymentProducer(topic_settings) as producer:
        for e in sent:
            producer.send(e)
    first: list[PaymentEvent] = []
    rest: list[PaymentEvent] = []
    with PaymentTracker(topic_settings) as tracker:
        tracker.run(first.append, max_events=150, idle_timeout=30, handle_signals=False)
    with PaymentTracker(topic_settings) as tracker:
        tracker.run(rest.append, max_events=450, idle_timeout=30, handle_signals=False)
    assert len(first) == 150
    assert sorted(e.payment_id for e in first + rest) == sorted(e.payment_id for e in sent)
