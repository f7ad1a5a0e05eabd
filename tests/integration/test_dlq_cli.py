"""``paykafka dlq list | replay`` on the real broker: see dead letters, replay them once."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer

from paykafka import DeadLetterQueue, PaymentEvent, PaymentProducer, PaymentTracker, Settings
from paykafka._serde import frame_header

from ._cli import connection_flags, run_cli


def _flags(settings: Settings) -> list[str]:
    return [*connection_flags(settings), "--dlq-topic", settings.dlq_topic]


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def _event(user: str) -> PaymentEvent:
    return PaymentEvent(user=user, amount=Decimal("12.34"), currency="PLN", method="blik")


def _dead_letter_some(settings: Settings) -> tuple[PaymentEvent, list[bytes]]:
    """Two poison records and one event whose handler fails: three dead letters."""
    victim = _event("unlucky")
    poison = [b"\x13\x37 not avro", frame_header(987_654) + b"\x02"]
    with PaymentProducer(settings) as producer:
        producer.send(_event("fine"))
        producer.send(victim)
    raw = Producer(settings.producer_config())
    for value in poison:
        raw.produce(settings.topic, value, b"poison")
    assert raw.flush(30) == 0

    def handler(event: PaymentEvent) -> None:
        if event.payment_id == victim.payment_id:
            raise RuntimeError("ledger unavailable")

    with PaymentTracker(settings, handler_retries=1, retry_backoff=0.01) as tracker:
        tracker.run(handler, idle_timeout=5, handle_signals=False)
        assert tracker.dead_lettered == 3
    return victim, poison


def test_list_on_a_missing_dlq_says_there_is_nothing(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no dead-letter topic yet, list succeeds and says there is nothing pending."""
    code, out, err = run_cli(capsys, "dlq", "list", *_flags(topic_settings))
    assert (code, err) == (0, "")
    assert out.strip() == f"no pending dead letters on {topic_settings.dlq_topic}"


def test_list_shows_reason_source_and_schema_id(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """list --json gives each letter's reason, source topic/partition/offset and schema id."""
    victim, poison = _dead_letter_some(topic_settings)
    rows = _json(capsys, "dlq", "list", *_flags(topic_settings))
    assert sorted(r["reason"] for r in rows) == [
        "handler_failed",
        "not_confluent_framing",
        "unknown_schema_id",
    ]
    assert {r["source_topic"] for r in rows} == {topic_settings.topic}
    assert all(r["source_offset"] >= 0 and r["source_partition"] >= 0 for r in rows)
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["unknown_schema_id"]["schema_id"] == 987_654
    assert "ledger unavailable" in by_reason["handler_failed"]["message"]
    assert by_reason["handler_failed"]["key"] == victim.user
    code, out, _ = run_cli(capsys, "dlq", "list", *_flags(topic_settings))
    assert code == 0
    assert out.startswith(f"3 pending dead letters on {topic_settings.dlq_topic}")
    assert f"{topic_settings.topic}[" in out
    assert "987654" in out
    assert len(poison) == 2


def test_replay_sends_letters_back_once(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """replay --reason re-produces the original record once; a second replay finds nothing."""
    victim, _ = _dead_letter_some(topic_settings)
    flags = _flags(topic_settings)

    dry = _json(capsys, "dlq", "replay", "--reason", "handler_failed", "--dry-run", *flags)
    assert (dry["replayed"], dry["kept"], dry["dry_run"]) == (1, 2, True)
    assert len(_json(capsys, "dlq", "list", *flags)) == 3  # a dry run changes nothing

    code, out, err = run_cli(capsys, "dlq", "replay", "--reason", "handler_failed", *flags)
    assert (code, err) == (0, "")
    assert out.strip() == (
        f"replayed 1 dead letter(s) (1 to {topic_settings.topic}) of reason handler_failed; "
        f"2 of other reasons stay pending on {topic_settings.dlq_topic}"
    )
    # The fixed handler now gets the very same payment back.
    got: list[PaymentEvent] = []
    with PaymentTracker(topic_settings) as tracker:
        tracker.run(got.append, max_events=1, idle_timeout=20, handle_signals=False)
    assert got == [victim]

    stored = len(_json(capsys, "dlq", "list", "--all", *flags))
    again = _json(capsys, "dlq", "replay", "--reason", "handler_failed", *flags)
    assert (again["replayed"], again["kept"]) == (0, 2)
    pending = _json(capsys, "dlq", "list", *flags)
    assert sorted(r["reason"] for r in pending) == ["not_confluent_framing", "unknown_schema_id"]
    assert len(_json(capsys, "dlq", "list", "--all", *flags)) == stored  # a no-op writes nothing


def test_replay_of_everything_is_not_repeated(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """replay without --reason writes back every replayable letter, and nothing the second time."""
    _dead_letter_some(topic_settings)
    flags = _flags(topic_settings)
    first = _json(capsys, "dlq", "replay", *flags)
    assert (first["replayed"], first["kept"]) == (2, 1)
    assert first["refused"] == {"not_confluent_framing": 1}
    assert first["by_topic"] == {topic_settings.topic: 2}
    assert _json(capsys, "dlq", "replay", *flags)["replayed"] == 0
    assert [r["reason"] for r in _json(capsys, "dlq", "list", *flags)] == ["not_confluent_framing"]


def _track_all(settings: Settings) -> int:
    """A tracker run over whatever is new; how many records it dead-lettered."""
    with PaymentTracker(settings, handler_retries=0, retry_backoff=0.01) as tracker:
        tracker.run(lambda _e: None, idle_timeout=5, handle_signals=False)
        return tracker.dead_lettered


def test_replay_refuses_reasons_that_cannot_succeed(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """--reason of a reason whose bytes cannot decode is refused (exit 2) unless --force."""
    _dead_letter_some(topic_settings)
    flags = _flags(topic_settings)
    for reason in ("not_confluent_framing", "corrupt_avro"):
        code, out, err = run_cli(capsys, "dlq", "replay", "--reason", reason, *flags)
        assert (code, out) == (2, "")
        assert f"dead letters of reason {reason} cannot succeed" in err
        assert "--force" in err
    assert len(_json(capsys, "dlq", "list", *flags)) == 3  # nothing was touched


def test_rounds_of_replay_count_attempts_link_origin_and_never_duplicate(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each round's failure adds to paykafka.attempts and keeps the first offset; the pending
    list holds each record once, and replay never copies letters (the issue's loop)."""
    _dead_letter_some(topic_settings)
    flags = _flags(topic_settings)
    first = {r["reason"]: r for r in _json(capsys, "dlq", "list", *flags)}
    origin = first["unknown_schema_id"]["origin"]
    assert origin == {
        "topic": topic_settings.topic,
        "partition": first["unknown_schema_id"]["source_partition"],
        "offset": first["unknown_schema_id"]["source_offset"],
    }
    total = len(_json(capsys, "dlq", "list", "--all", *flags))
    for attempt in (2, 3):
        # The schema id is still unknown, so the record fails again; handler_failed succeeds.
        replayed = _json(capsys, "dlq", "replay", *flags)["replayed"]
        assert len(_json(capsys, "dlq", "list", "--all", *flags)) == total  # nothing copied
        assert _track_all(topic_settings) == 1
        total += 1
        pending = _json(capsys, "dlq", "list", *flags)
        reasons = sorted(r["reason"] for r in pending)
        assert reasons == ["not_confluent_framing", "unknown_schema_id"]
        again = next(r for r in pending if r["reason"] == "unknown_schema_id")
        assert again["attempts"] == attempt
        assert again["origin"] == origin
        assert again["source_offset"] != origin["offset"]  # read from the replayed copy
        assert replayed == (2 if attempt == 2 else 1)
    assert len(_json(capsys, "dlq", "list", "--all", *flags)) == total


def test_replay_of_one_reason_never_copies_the_others(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replaying one reason leaves letters of other reasons pending where they are."""
    _dead_letter_some(topic_settings)
    flags = _flags(topic_settings)
    before = _json(capsys, "dlq", "list", "--all", *flags)
    # The two poison records share a key, so their letters share a partition, framing first.
    assert _json(capsys, "dlq", "replay", "--reason", "unknown_schema_id", *flags)["replayed"] == 1
    assert _json(capsys, "dlq", "list", "--all", *flags) == before
    pending = _json(capsys, "dlq", "list", *flags)
    assert sorted(r["reason"] for r in pending) == ["handler_failed", "not_confluent_framing"]


def test_dry_run_lists_what_would_be_replayed(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run names each letter it would replay and what stays, and writes nothing."""
    _dead_letter_some(topic_settings)
    flags = _flags(topic_settings)
    dry = _json(capsys, "dlq", "replay", "--dry-run", *flags)
    assert sorted(r["reason"] for r in dry["letters"]) == ["handler_failed", "unknown_schema_id"]
    assert dry["refused"] == {"not_confluent_framing": 1}
    code, out, _ = run_cli(capsys, "dlq", "replay", "--dry-run", *flags)
    assert code == 0
    assert out.startswith("would replay 2 dead letter(s)")
    assert "not_confluent_framing: 1" in out
    assert "handler_failed" in out
    assert "unknown_schema_id" in out
    assert len(_json(capsys, "dlq", "list", *flags)) == 3


def test_forced_replay_of_a_hopeless_letter_keeps_one_pending_copy(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """--force replays a corrupt record; it fails again and is pending once, attempts 2."""
    _dead_letter_some(topic_settings)
    flags = _flags(topic_settings)
    forced = _json(capsys, "dlq", "replay", "--reason", "not_confluent_framing", "--force", *flags)
    assert forced["replayed"] == 1
    assert _track_all(topic_settings) == 1
    pending = [
        r for r in _json(capsys, "dlq", "list", *flags) if r["reason"] == "not_confluent_framing"
    ]
    assert [r["attempts"] for r in pending] == [2]


def test_a_stopped_replay_marks_what_it_wrote_and_keeps_the_rest(topic_settings: Settings) -> None:
    """Stopped (SIGTERM in the CLI) mid-way, replay marks only letters written back."""
    _dead_letter_some(topic_settings)
    queue = DeadLetterQueue(topic_settings)
    at_once = queue.replay(should_stop=lambda: True)
    assert (at_once.replayed, at_once.stopped, at_once.deferred) == (0, True, 2)
    asked = iter([False, False, True])  # before writing, before letter 1, before letter 2
    result = queue.replay(should_stop=lambda: next(asked, True))
    assert (result.replayed, result.stopped, result.deferred) == (1, True, 1)
    rest = queue.replay()
    assert rest.replayed == 1
    assert {letter.reason for letter in [*result.letters, *rest.letters]} == {
        "handler_failed",
        "unknown_schema_id",
    }


def test_unreachable_broker_is_a_one_line_error(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no broker at the address, dlq list fails with exit 1 and says what to do."""
    flags = _flags(topic_settings)
    flags[1] = "127.0.0.1:1"
    code, out, err = run_cli(capsys, "dlq", "list", "--timeout", "2", *flags)
    assert code == 5
    assert out == ""
    assert err.startswith("paykafka: error: no Kafka broker answered at 127.0.0.1:1")
    assert "paykafka stack up" in err
    assert str(uuid.UUID(int=0)) not in err
