"""Schema evolution on the real broker and registry: v1 and v2 readers and writers mix, and
every breaking edit is refused by `paykafka schema check`, by `register` and by the producer."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from confluent_kafka import Consumer, TopicPartition

from paykafka import (
    PaymentEvent,
    PaymentMethod,
    PaymentProducer,
    PaymentTracker,
    RegistryClient,
    RegistryIncompatibleError,
    SchemaError,
    Settings,
    load_schema,
)
from paykafka._cli import main
from paykafka._governance import SchemaGate
from paykafka._schema import parse_schema_text

from ._cli import connection_flags

ROOT = Path(__file__).resolve().parents[2]
V1_PATH = ROOT / "schemas" / "history" / "payment.v1.avsc"
V2_PATH = ROOT / "schemas" / "history" / "payment.v2.avsc"


def track(settings: Settings, expected: int, **kw: Any) -> list[PaymentEvent]:
    got: list[PaymentEvent] = []
    with PaymentTracker(settings, from_beginning=True, **kw) as tracker:
        tracker.run(got.append, max_events=expected, idle_timeout=30, handle_signals=False)
    return got


def by_id(events: list[PaymentEvent]) -> dict[str, PaymentEvent]:
    return {str(e.payment_id): e for e in events}


def test_v1_and_v2_readers_and_writers_understand_each_other(topic_settings: Settings) -> None:
    """v1 trackers read v2 events (no note, new method as other); v2 trackers read v1 events."""
    v1 = load_schema(V1_PATH)
    old = PaymentEvent(user="ala", amount=Decimal("10.00"), currency="PLN", method="blik")
    new = PaymentEvent(
        user="ola", amount=Decimal("20.00"), currency="EUR", method="gift_card", note="rent"
    )
    plain_new = PaymentEvent(user="ela", amount=Decimal("5"), currency="JPY", method="cash")
    with PaymentProducer(topic_settings, schema=v1) as producer:
        producer.send(old).result(30)
        v1_id = producer.schema_id
    with PaymentProducer(topic_settings) as producer:
        producer.send(new).result(30)
        producer.send(plain_new).result(30)
        v2_id = producer.schema_id
    assert v1_id != v2_id
    with RegistryClient(topic_settings) as registry:
        assert registry.versions(topic_settings.subject) == [1, 2]
        assert registry.compatibility(topic_settings.subject) == "FULL_TRANSITIVE"

    v2_view = by_id(track(attrs.evolve(topic_settings, group_id="v2-readers"), 3))
    assert v2_view[str(old.payment_id)] == old  # v1 event: note None in the v2 class
    assert v2_view[str(old.payment_id)].note is None
    assert v2_view[str(new.payment_id)] == new  # the new field surfaces for a v2 reader
    assert v2_view[str(new.payment_id)].method is PaymentMethod.GIFT_CARD

    v1_view = by_id(track(attrs.evolve(topic_settings, group_id="v1-readers"), 3, schema=v1))
    assert v1_view[str(old.payment_id)] == old
    seen_new = v1_view[str(new.payment_id)]
    assert seen_new.note is None  # a v1 reader does not know the field
    assert seen_new.method is PaymentMethod.OTHER  # nor the symbol: the enum default applies
    assert attrs.evolve(seen_new, note="rent", method="gift_card") == new
    assert v1_view[str(plain_new.payment_id)] == plain_new


# -- breaking edits ------------------------------------------------------------------------------


def _fields(raw: dict[str, Any]) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = raw["fields"]
    return fields


def _field(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in _fields(raw) if f["name"] == name)


def change_type(raw: dict[str, Any]) -> None:
    _field(raw, "amount")["type"] = "double"


def remove_field_without_default(raw: dict[str, Any]) -> None:
    raw["fields"] = [f for f in _fields(raw) if f["name"] != "currency"]


def add_required_field(raw: dict[str, Any]) -> None:
    _fields(raw).append({"name": "merchant", "type": "string", "doc": "who was paid"})


def rename_without_alias(raw: dict[str, Any]) -> None:
    _field(raw, "note")["name"] = "comment"


def remove_enum_symbol(raw: dict[str, Any]) -> None:
    _field(raw, "method")["type"]["symbols"].remove("cash")


@attrs.frozen
class Edit:
    apply: Callable[[dict[str, Any]], None]
    #: What every refusal must mention.
    expect: str
    #: Whether Apicurio itself refuses it (False: only paykafka's policy or contract does).
    registry_refuses: bool


EDITS = {
    "change a field type": Edit(change_type, "field `amount` changed type", True),
    "remove a field without default": Edit(
        remove_field_without_default, "lacks field(s) currency", True
    ),
    "add a required field without default": Edit(
        add_required_field, "field `merchant` was added without a default", True
    ),
    "rename without alias": Edit(
        rename_without_alias, "field `comment` replaced `note` of the same type", False
    ),
    "remove an enum symbol": Edit(remove_enum_symbol, "removed enum symbol(s) cash", False),
}


@pytest.fixture
def evolved(topic_settings: Settings) -> Settings:
    """The test subject with v1 and v2 registered, as production would have it."""
    for path in (V1_PATH, V2_PATH):
        assert main(["schema", "register", str(path), *connection_flags(topic_settings)]) == 0
    return topic_settings


def end_offsets(settings: Settings) -> int:
    consumer = Consumer(settings.consumer_config(**{"group.id": f"{settings.group_id}-probe"}))
    try:
        meta = consumer.list_topics(settings.topic, timeout=10).topics[settings.topic]
        total = 0
        for p in meta.partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(settings.topic, p), 10)
            total += high
        return total
    finally:
        consumer.close()


@pytest.mark.parametrize("name", list(EDITS))
def test_breaking_edits_are_refused_everywhere(
    name: str, evolved: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each breaking edit of v2 is refused by check (online and offline), register and the
    producer, with the field named, and nothing is registered or produced."""
    edit = EDITS[name]
    raw = json.loads(V2_PATH.read_text())
    edit.apply(raw)
    path = tmp_path / "broken.avsc"
    path.write_text(json.dumps(raw, indent=2))
    capsys.readouterr()

    for command in (["check"], ["check", "--offline"], ["register"]):
        assert main(["schema", *command, str(path), *connection_flags(evolved)]) == 1
        captured = capsys.readouterr()
        assert edit.expect in captured.out + captured.err, (command, captured)

    # The producer's gate gives the same reason; the producer may refuse even earlier, when
    # this code's PaymentEvent cannot carry the edited schema (checked at start, no network).
    expected = re.escape(edit.expect)
    with RegistryClient(evolved) as registry, pytest.raises(SchemaError, match=expected):
        SchemaGate(registry, evolved).admit(load_schema(path))
    with pytest.raises(SchemaError, match=f"{expected}|refusing to start: "):
        PaymentProducer(attrs.evolve(evolved, schema_path=path)).start()

    with RegistryClient(evolved) as registry:
        assert registry.versions(evolved.subject) == [1, 2]
        if edit.registry_refuses:
            # The registry on its own agrees (it says why only on registration, by JSON path).
            with pytest.raises(RegistryIncompatibleError) as refused:
                registry.register(evolved.subject, json.dumps(raw))
            assert refused.value.status == 409
        else:
            # Avro's rules allow it (defaults make it readable); only paykafka's policy stops it.
            verdict = registry.test_compatibility(evolved.subject, json.dumps(raw), version=None)
            assert verdict.is_compatible
    assert end_offsets(evolved) == 0


def test_transitive_rule_is_checked_against_every_version(topic_settings: Settings) -> None:
    """A break against an old version only is caught: the latest-only registry answer misses it,
    so the gate asks about all versions under *_TRANSITIVE and names the one broken."""
    base = json.loads(V1_PATH.read_text())

    def with_optional(name: str | None, avro_type: str = "string") -> str:
        raw = json.loads(json.dumps(base))
        if name is not None:
            raw["fields"].append(
                {"name": name, "type": ["null", avro_type], "default": None, "doc": "a label"}
            )
        return json.dumps(raw)

    with RegistryClient(topic_settings) as registry:
        gate = SchemaGate(registry, topic_settings)
        # Versions 1, 2, 3: `tag` comes as a string and goes again. (Apicurio would not make a
        # new version of a schema equal to an older one, so version 3 has a field of its own.)
        for text in (with_optional(None), with_optional("tag"), with_optional("label", "long")):
            gate.register(parse_schema_text(text, source="step"))
        candidate = parse_schema_text(with_optional("tag", "int"), source="tag-as-int.avsc")
        latest_only = registry.test_compatibility(topic_settings.subject, candidate.text)
        assert latest_only.is_compatible  # version 3 has no tag at all
        verdict = gate.check(candidate)
    assert not verdict.compatible
    assert verdict.checked_against == ("version 1 (payment.v1.avsc)", "version 2", "version 3")
    assert verdict.problems == (
        (
            "field `tag` changed type [null, string] -> [null, int]: the new schema cannot read "
            "events written with version 2; readers of version 2 cannot read events written "
            "with the new schema"
        ),
    )
