"""A crashed broker loses no payment: SIGKILL mid-stream, restart, count every payment id."""

from __future__ import annotations

import threading
import time

import pytest
from _events import make_events

from paykafka import DeliveryError, DeliveryFuture, PaymentProducer
from paykafka._admin import KafkaAdmin
from paykafka._stack import Stack

from ._support import KilledNode, Report, TrackerThread, fresh_settings

EVENTS = 20_000
KILL_AFTER = 6_000
DOWN_SECONDS = 3.0


@pytest.mark.timeout(420)
def test_sigkill_of_the_only_broker_mid_stream_loses_no_payment(
    single_stack: Stack, report: Report
) -> None:
    """20,000 events sent across a SIGKILL + restart of the broker are all tracked, 0 lost."""
    settings = fresh_settings(single_stack)
    sent = make_events(EVENTS)
    ids = {e.payment_id for e in sent}
    tracker = TrackerThread(settings).start()
    failures: list[DeliveryError] = []
    crash = threading.Event()
    restarted = threading.Event()
    down = threading.Event()
    chaos_errors: list[BaseException] = []

    def chaos() -> None:
        try:
            crash.wait(120)
            node = KilledNode(single_stack, 1).kill()
            down.set()
            time.sleep(DOWN_SECONDS)
            node.restart()
            down.clear()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test below
            chaos_errors.append(exc)
        finally:
            restarted.set()

    def on_delivery(future: DeliveryFuture) -> None:
        error = future.exception(0)
        if error is not None:
            failures.append(error)

    killer = threading.Thread(target=chaos, name="chaos", daemon=True)
    killer.start()
    began = time.monotonic()
    sent_while_down = 0
    with PaymentProducer(settings, flush_timeout=240) as producer:
        for i, event in enumerate(sent):
            producer.send(event, on_delivery=on_delivery)
            sent_while_down += down.is_set()
            if i == KILL_AFTER:
                crash.set()
            if i % 200 == 199:
                time.sleep(0.1)  # ~2,000 events/s: the stream spans the crash and the restart
        restarted.wait(120)
    produced_for = time.monotonic() - began
    assert not chaos_errors, chaos_errors
    complete = tracker.wait_for(ids, timeout=240)
    tracker.stop()
    marks = KafkaAdmin(settings, timeout=30).watermarks(settings.topic)
    in_log = sum(high - low for low, high in marks.values())
    tracked = len(ids & tracker.seen.keys())
    figures = {
        "sent": EVENTS,
        "sent_while_broker_down": sent_while_down,
        "delivery_failures": len(failures),
        "records_in_topic": in_log,
        "tracked": tracked,
        "lost": EVENTS - tracked,
        "duplicates": tracker.total() - tracker.distinct(),
        "dead_lettered": tracker.tracker.dead_lettered,
        "seconds": round(produced_for, 1),
    }
    report(**figures)
    assert not tracker.errors, tracker.errors
    assert complete, figures
    assert figures["lost"] == 0
    assert sent_while_down > 0, "the crash did not happen mid-stream"
    assert not failures
    assert tracker.tracker.dead_lettered == 0
    # Idempotence: the broker deduplicated every retried batch, so the log holds each once.
    assert in_log == EVENTS, figures
