"""Bad input between good events: every poison record dead-lettered, every payment tracked."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from typing import Any

import attrs
import fastavro
import pytest
from _events import make_events
from confluent_kafka import Producer

from paykafka import (
    DecodeReason,
    PaymentEvent,
    PaymentProducer,
    PaymentTracker,
    RegistryClient,
    load_schema,
)
from paykafka._dlq import DeadLetterQueue
from paykafka._serde import frame_header
from paykafka._stack import Stack

from ._support import Report, TrackerThread, fresh_settings

VALID = 2_000
EACH_KIND = 20
REFUND = {"type": "record", "name": "Refund", "fields": [{"name": "x", "type": "int"}]}


def _poison(kind: str, i: int, good: bytes, payment_id: int, refund_id: int) -> bytes | None:
    """The ``i``-th poison record of ``kind``; ``good`` is a valid framed event to spoil."""
    if kind == "random_bytes":
        return b"\x7f" + os.urandom(8 + i)
    if kind == "json":
        return json.dumps({"user": f"marek-{i}", "amount": 12.5, "currency": "PLN"}).encode()
    if kind == "tombstone":
        return None
    if kind == "unknown_id":
        return frame_header(2_000_000_000 - i) + good[5:]
    if kind == "truncated_avro":
        return good[: -(1 + i % 6)]
    if kind == "wrong_schema":
        buf = io.BytesIO()
        buf.write(frame_header(refund_id))
        fastavro.schemaless_writer(buf, fastavro.parse_schema(REFUND), {"x": i})
        return buf.getvalue()
    if kind == "invalid_values":
        buf = io.BytesIO()
        buf.write(frame_header(payment_id))
        record = dict(make_events(1)[0].to_dict(), currency="ZZZ")
        fastavro.schemaless_writer(buf, load_schema().parsed, record)
        return buf.getvalue()
    raise AssertionError(kind)


EXPECTED_REASON = {
    "random_bytes": DecodeReason.NOT_CONFLUENT_FRAMING,
    "json": DecodeReason.NOT_CONFLUENT_FRAMING,
    "tombstone": DecodeReason.NOT_CONFLUENT_FRAMING,
    "unknown_id": DecodeReason.UNKNOWN_SCHEMA_ID,
    "truncated_avro": DecodeReason.CORRUPT_AVRO,
    "wrong_schema": DecodeReason.WRONG_SCHEMA,
    "invalid_values": DecodeReason.INVALID_EVENT,
}


@pytest.mark.timeout(240)
def test_poison_records_go_to_the_dlq_and_tracking_goes_on(
    single_stack: Stack, report: Report
) -> None:
    """140 poison records of 7 kinds among 2,000 events: all in the DLQ, all events tracked."""
    settings = fresh_settings(single_stack)
    with RegistryClient(settings) as registry:
        refund_id = registry.register(f"{settings.topic}-refund-value", json.dumps(REFUND))
    sent = make_events(VALID)
    tracker = TrackerThread(settings).start()
    raw = Producer(settings.producer_config())
    where: dict[tuple[int, int], str] = {}  # (partition, offset) of each poison -> its kind
    kinds = list(EXPECTED_REASON)
    poison: list[tuple[str, bytes | None]] = []

    def remember(kind: str) -> Any:
        def on_delivery(err: Any, msg: Any) -> None:
            assert err is None, err
            where[(msg.partition(), msg.offset())] = kind

        return on_delivery

    with PaymentProducer(settings) as producer:
        good = producer._started()[1](sent[0])
        for i, event in enumerate(sent):
            producer.send(event)
            if i % 14 == 7 and len(poison) < EACH_KIND * len(kinds):
                kind = kinds[len(poison) % len(kinds)]
                value = _poison(kind, len(poison), good, producer.schema_id, refund_id)
                poison.append((kind, value))
                raw.produce(settings.topic, value, event.user.encode(), on_delivery=remember(kind))
                raw.poll(0)
    assert raw.flush(30) == 0
    assert len(where) == len(poison) == EACH_KIND * len(kinds)

    complete = tracker.wait_for({e.payment_id for e in sent}, timeout=120)
    letters = []
    for _ in range(60):  # the last dead letters may still be on their way
        letters = DeadLetterQueue(settings, timeout=15).letters(include_replayed=True)
        if len(letters) >= len(poison) or not tracker.alive:
            break
        tracker.wait_for(set(), timeout=1)
    # Still running: events sent after all the poison are tracked by the same tracker.
    after = make_events(10, prefix="after")
    with PaymentProducer(settings) as producer:
        for event in after:
            producer.send(event)
    still_tracking = tracker.wait_for({e.payment_id for e in after}, timeout=60)
    tracker.stop()

    tracked = len({e.payment_id for e in sent + after} & tracker.seen.keys())
    figures = {
        "sent": VALID + len(after),
        "poison": len(poison),
        "tracked": tracked,
        "lost": VALID + len(after) - tracked,
        "duplicates": tracker.total() - tracker.distinct(),
        "dead_lettered": tracker.tracker.dead_lettered,
        "in_dlq": len(letters),
        "dlq_by_reason": dict(Counter(d.reason for d in letters)),
    }
    report(**figures)
    assert not tracker.errors, tracker.errors
    assert complete, figures
    assert still_tracking, figures
    assert figures["lost"] == 0
    assert tracker.tracker.dead_lettered == len(poison)
    assert Counter(d.value for d in letters) == Counter(v for _, v in poison)
    for letter in letters:
        kind = where[(letter.source_partition, letter.source_offset)]
        assert letter.reason == EXPECTED_REASON[kind].value, (kind, letter)
        assert letter.source_topic == settings.topic
        assert letter.message
        if kind in {"unknown_id", "truncated_avro", "wrong_schema", "invalid_values"}:
            assert letter.schema_id is not None, (kind, letter)


@pytest.mark.timeout(120)
def test_failing_handlers_are_retried_then_dead_lettered_or_read_again(
    single_stack: Stack, report: Report
) -> None:
    """A handler failing for good: retried N times, then DLQ; or, raised, read again next run."""
    settings = fresh_settings(single_stack)
    sent = make_events(30)
    victim = sent[11]
    with PaymentProducer(settings) as producer:
        for event in sent:
            producer.send(event)
    attempts: Counter[Any] = Counter()
    handled: set[Any] = set()

    def always_fails_on_victim(event: PaymentEvent) -> None:
        attempts[event.payment_id] += 1
        if event.payment_id == victim.payment_id:
            raise RuntimeError("ledger down")
        handled.add(event.payment_id)

    with PaymentTracker(settings, handler_retries=2, retry_backoff=0.01) as tracker:
        tracker.run(always_fails_on_victim, idle_timeout=5, handle_signals=False)
        dead = tracker.dead_lettered
    (letter,) = DeadLetterQueue(settings, timeout=15).letters()
    assert attempts[victim.payment_id] == 3  # the first call and 2 retries
    assert dead == 1
    assert letter.reason == "handler_failed"
    assert "ledger down" in letter.message
    assert handled == {e.payment_id for e in sent} - {victim.payment_id}

    # Without dead letters the error is raised; the same tracker then reads that event again.
    raised = attrs.evolve(settings, group_id=f"{settings.group_id}-raising")
    seen: list[Any] = []
    fail_once = {victim.payment_id}

    def fails_once(event: PaymentEvent) -> None:
        if event.payment_id in fail_once:
            fail_once.clear()
            raise RuntimeError("transient")
        seen.append(event.payment_id)

    with PaymentTracker(raised, dead_letters=False, handler_retries=0) as tracker:
        with pytest.raises(RuntimeError, match="transient"):
            tracker.run(fails_once, idle_timeout=10, handle_signals=False)
        tracker.run(fails_once, idle_timeout=5, handle_signals=False)
    report(
        sent=len(sent),
        handler_attempts_on_failing_event=attempts[victim.payment_id],
        dead_lettered=dead,
        reread_after_raise=victim.payment_id in seen,
        lost=len({e.payment_id for e in sent} - set(seen)),
    )
    assert victim.payment_id in seen
    assert set(seen) == {e.payment_id for e in sent}
