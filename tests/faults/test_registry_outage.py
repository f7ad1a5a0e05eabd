"""A registry outage is not bad data: production and tracking go on, nothing is dead-lettered."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import attrs
import pytest
from _events import make_events

from paykafka import (
    DecodeError,
    DecodeReason,
    PaymentProducer,
    RegistryClient,
    RegistryUnavailableError,
    Settings,
    load_schema,
)
from paykafka._dlq import DeadLetterQueue
from paykafka._schema import parse_schema_text
from paykafka._serde import EventDeserializer, frame_header
from paykafka._stack import Stack

from ._support import Report, TrackerThread, fresh_settings

OUTAGE_SECONDS = 20.0


def _evolved_schema_text() -> str:
    """The payment schema with its fields in another order: a second id the tracker has never
    seen, which this code's PaymentEvent still agrees with (checked at start), and which
    invents no field a user may add."""
    raw = json.loads(load_schema().text)
    raw["fields"] = [raw["fields"][-1], *raw["fields"][:-1]]
    return json.dumps(raw)


@pytest.mark.timeout(300)
def test_registry_down_for_20s_stops_nothing_and_dead_letters_nothing(
    single_stack: Stack, report: Report, tmp_path: Path
) -> None:
    """Registry stopped 20 s mid-stream: producing and tracking continue, 0 dead letters."""
    settings = fresh_settings(single_stack)
    cached = attrs.evolve(settings, schema_cache_dir=tmp_path / "schema-cache")
    producer = PaymentProducer(settings).start()
    PaymentProducer(cached).start().close()  # a process that ran once with the schema cache
    # Registered while the registry is up; its events reach the tracker only during the outage.
    evolved = PaymentProducer(
        settings, schema=parse_schema_text(_evolved_schema_text(), source="evolved")
    ).start()
    assert evolved.schema_id != producer.schema_id
    tracker = TrackerThread(settings).start()
    warm = make_events(300, prefix="warm")
    for event in warm:
        producer.send(event)
    producer.flush(30)
    assert tracker.wait_for({e.payment_id for e in warm}, timeout=60), "tracker never started"

    single_stack.stop_registry()
    down_at = time.monotonic()
    with RegistryClient(settings) as registry, pytest.raises(RegistryUnavailableError):
        registry.subjects()
    # A producer that has no schema id yet cannot start: a typed, retriable error, not a hang.
    with pytest.raises(RegistryUnavailableError) as cold_start:
        PaymentProducer(settings).start()
    assert cold_start.value.retriable
    # With the schema cache, a restarted producer and a restarted tracker both start anyway.
    warm_started = PaymentProducer(cached).start()
    assert warm_started.schema_id == producer.schema_id
    restarted = TrackerThread(attrs.evolve(cached, group_id=f"{settings.group_id}-restarted"))
    restarted.start()
    tracked_at_outage = tracker.distinct()

    during = make_events(4_000, prefix="during")
    unseen_id = make_events(20, prefix="evolved", users=1)
    i = 0
    while time.monotonic() - down_at < OUTAGE_SECONDS - 1:
        for event in during[i : i + 20]:
            producer.send(event)
        if i % 200 == 0 and i // 200 < len(unseen_id):
            evolved.send(unseen_id[i // 200])
        i += 20
        time.sleep(0.1)
    sent_during = during[:i]
    from_warm_start = make_events(100, prefix="warm-started")
    for event in from_warm_start:
        warm_started.send(event)
    producer.flush(15)  # raises DeliveryError if anything failed while the registry was down
    evolved.flush(15)
    warm_started.close()
    restarted_read_old_ids = restarted.wait_for({e.payment_id for e in warm}, timeout=15)
    restarted.stop()
    tracked_during = tracker.distinct() - tracked_at_outage
    evolved_sent = min(len(unseen_id), (i + 199) // 200)
    dead_during = tracker.tracker.dead_lettered
    single_stack.start_registry()
    outage = time.monotonic() - down_at

    producer.close()
    evolved.close()
    everything = warm + sent_during + unseen_id[:evolved_sent] + from_warm_start
    complete = tracker.wait_for({e.payment_id for e in everything}, timeout=90)
    tracker.stop()
    letters = DeadLetterQueue(settings, timeout=15).letters(include_replayed=True)
    tracked = len({e.payment_id for e in everything} & tracker.seen.keys())
    figures = {
        "sent": len(everything),
        "sent_during_outage": len(sent_during) + evolved_sent + len(from_warm_start),
        "sent_by_producer_started_during_outage": len(from_warm_start),
        "tracked_during_outage_by_tracker_started_during_outage": restarted.distinct(),
        "unseen_schema_id_events": evolved_sent,
        "tracked_during_outage": tracked_during,
        "tracked": tracked,
        "lost": len(everything) - tracked,
        "duplicates": tracker.total() - tracker.distinct(),
        "dead_lettered": tracker.tracker.dead_lettered,
        "in_dlq": len(letters),
        "outage_seconds": round(outage, 1),
    }
    report(**figures)
    assert not tracker.errors, tracker.errors
    assert not restarted.errors, restarted.errors
    assert restarted_read_old_ids, "a tracker restarted in the outage did not use the cache"
    assert complete, figures
    assert figures["lost"] == 0
    assert tracked_during > 0, "tracking stopped while the registry was down"
    assert dead_during == 0
    assert tracker.tracker.dead_lettered == 0
    assert letters == []
    assert outage >= OUTAGE_SECONDS - 1


@pytest.mark.timeout(30)
def test_a_hung_registry_times_out_as_a_retriable_outage() -> None:
    """A registry that accepts connections but never answers fails each call within its timeout."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # connections complete in the backlog; nobody ever answers
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/apis/ccompat/v7"
        settings = Settings(registry_url=url, registry_timeout=1.0)
        with RegistryClient(settings) as registry:
            began = time.monotonic()
            with pytest.raises(RegistryUnavailableError, match="did not answer") as info:
                registry.schema_by_id(1)
            took = time.monotonic() - began
        decode = EventDeserializer(load_schema(), RegistryClient(settings).schema_by_id)
        with pytest.raises(DecodeError) as undecodable:
            decode(frame_header(1) + b"\x00")
    assert info.value.retriable
    assert took < 3.0
    assert undecodable.value.reason is DecodeReason.REGISTRY_UNAVAILABLE
    assert undecodable.value.retriable
