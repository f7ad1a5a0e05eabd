"""PaymentTracker(concurrency=N) on the real broker: each user's order kept, nothing lost."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

from _events import make_events

from paykafka import PaymentEvent, PaymentProducer, PaymentTracker, Settings


def test_concurrent_handlers_keep_each_users_order(topic_settings: Settings) -> None:
    """2,000 events of 40 users, 8 handlers with random delays: per-user order, none lost,
    more than one handler at a time, and a second tracker finds nothing left uncommitted."""
    sent = make_events(2000, users=40)
    with PaymentProducer(topic_settings) as producer:
        for event in sent:
            producer.send(event)
    position = {e.payment_id: i for i, e in enumerate(sent)}
    order: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()
    running = [0, 0]
    rng = random.Random(11)

    def handler(event: PaymentEvent) -> None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
            delay = rng.random() * 0.002
        time.sleep(delay)
        with lock:
            order[event.user].append(position[event.payment_id])
            running[0] -= 1

    with PaymentTracker(topic_settings, concurrency=8) as tracker:
        count = tracker.run(handler, max_events=len(sent), idle_timeout=30, handle_signals=False)
    assert count == len(sent)
    assert sum(len(v) for v in order.values()) == len(sent)
    assert all(v == sorted(v) for v in order.values())  # one user's payments in send order
    assert 1 < running[1] <= 8
    with PaymentTracker(topic_settings) as again:
        assert again.run(handler, idle_timeout=3, handle_signals=False) == 0
