"""Differential test of the schema gate against the real registry on the running stack.

The same generated evolutions as tests/test_compat_differential.py (tests/_schema_pairs.py),
each asked of the registry at all seven levels the way the gate asks it (``/versions`` for a
transitive level, ``/versions/latest`` otherwise: Apicurio's ``latest`` is never transitive),
and of paykafka's checker. Every verdict must agree, or ours must refuse for a reason listed as
a deliberate difference in docs/schema-evolution.md; every "compatible" of ours is also backed
by a real fastavro read. The run ends with the tally the docs quote (``pytest -s`` shows it).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from _schema_pairs import PAYMENT, cases, deliberate, read_fails, to_text
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from paykafka import RegistryClient, RegistryError, Settings
from paykafka._compat import LEVELS, check, schema_errors

EXAMPLES = 100


@pytest.fixture(scope="module")
def tally() -> Iterator[Counter[str]]:
    """Counts of cases, verdicts, agreements and each deliberate difference, printed at the end."""
    counts: Counter[str] = Counter()
    yield counts
    print(f"\nschema gate vs registry: {dict(sorted(counts.items()))}")


@pytest.fixture(scope="module")
def registry(live_settings: Settings) -> Iterator[RegistryClient]:
    with RegistryClient(live_settings) as client:
        yield client


def _ask(registry: RegistryClient, subject: str, text: str, level: str) -> bool:
    """The registry's verdict at ``level``; an invalid schema (422) is a refusal."""
    registry.set_compatibility(level, subject)
    version = None if level.endswith("_TRANSITIVE") else "latest"
    try:
        return registry.test_compatibility(subject, text, version=version).is_compatible
    except RegistryError as exc:
        if exc.status == 422:
            return False
        raise


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(case=cases(), data=st.data())
def test_registry_and_checker_agree_or_differ_on_purpose(
    registry: RegistryClient,
    tally: Counter[str],
    case: tuple[list[dict[str, Any]], dict[str, Any], list[str]],
    data: st.DataObject,
) -> None:
    """Each of 100 evolutions x 7 levels: same verdict as the registry, or a documented reason."""
    del data
    history, candidate, edits = case
    assume(not any(schema_errors(old) for old in history))
    subject = f"compat-diff-{uuid.uuid4().hex[:12]}-value"
    text = to_text(candidate)
    try:
        registry.set_compatibility("NONE", subject)
        for old in history:
            registry.register(subject, to_text(old))
        # Apicurio keeps one version for schemas that differ only in aliases or docs (it
        # compares canonical forms): judge against what it kept, as the gate does.
        numbers = registry.versions(subject)
        history = [json.loads(registry.version(subject, n).schema) for n in numbers]
        labelled = [(f"version {n}", s) for n, s in zip(numbers, history, strict=True)]
        tally["cases"] += 1
        for level in LEVELS:
            ours = check(candidate, labelled, level)
            theirs = _ask(registry, subject, text, level)
            tally["verdicts"] += 1
            if ours.compatible == theirs:
                tally["agreements"] += 1
            elif theirs:
                reasons = {deliberate(p) for p in ours.problems}
                assert None not in reasons, (
                    f"{level} {edits}: the registry accepts, ours refuses for an undocumented "
                    f"reason: {ours.messages()}"
                )
                tally["deliberate differences"] += 1
                for reason in reasons:
                    tally[f"deliberate: {reason}"] += 1
            else:
                pytest.fail(f"{level} {edits}: the registry refuses what ours accepts")
            if ours.compatible and level != "NONE":
                against = history if level.endswith("_TRANSITIVE") else history[-1:]
                for old in against:
                    if level.startswith(("BACKWARD", "FULL")):
                        assert read_fails(writer=old, reader=candidate) is None, (level, edits)
                    if level.startswith(("FORWARD", "FULL")):
                        assert read_fails(writer=candidate, reader=old) is None, (level, edits)
    finally:
        registry.delete_subject(subject, permanent=True)


def _payment(edit: Any) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(json.dumps(PAYMENT))
    edit(schema)
    return schema


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in schema["fields"] if f["name"] == name)
    return found


def _enum_default_not_a_symbol(s: dict[str, Any]) -> None:
    _field(s, "method")["default"] = "bitcoin"


def _insert_method(s: dict[str, Any]) -> None:
    _field(s, "method")["type"]["symbols"].insert(0, "bitcoin")


def _drop_cash(s: dict[str, Any]) -> None:
    _field(s, "method")["type"]["symbols"].remove("cash")


def _amount_as_string(s: dict[str, Any]) -> None:
    _field(s, "amount")["type"] = "string"


def _note_renamed(s: dict[str, Any]) -> None:
    _field(s, "note")["name"] = "remark"


def _alias_names_another_field(s: dict[str, Any]) -> None:
    _field(s, "note")["aliases"] = ["user"]


def _note_as_bytes(s: dict[str, Any]) -> None:
    _field(s, "note")["type"] = ["null", "bytes"]


@pytest.mark.parametrize(
    ("edit", "level", "reason"),
    [
        (
            _enum_default_not_a_symbol,
            "NONE",
            "invalid: enum/fixed default the registry does not check",
        ),
        (_insert_method, "FULL_TRANSITIVE", "policy: enum symbols inserted or reordered"),
        (_drop_cash, "FULL_TRANSITIVE", "policy: enum symbol removed"),
        (_amount_as_string, "FORWARD", "policy: logical type or decimal changed"),
        (_note_renamed, "FULL_TRANSITIVE", "policy: optional field replaced without an alias"),
        (
            _alias_names_another_field,
            "FORWARD",
            "invalid: an alias naming another field of the record",
        ),
        (_note_as_bytes, "FORWARD", "avro: bytes read as string (fastavro needs UTF-8)"),
    ],
)
def test_each_deliberate_difference_is_real(
    registry: RegistryClient, edit: Any, level: str, reason: str
) -> None:
    """Each row of docs/schema-evolution.md's table: the registry accepts, ours refuses, why."""
    candidate = _payment(edit)
    subject = f"compat-diff-{uuid.uuid4().hex[:12]}-value"
    try:
        registry.set_compatibility("NONE", subject)
        registry.register(subject, to_text(PAYMENT))
        assert _ask(registry, subject, to_text(candidate), level)
    finally:
        registry.delete_subject(subject, permanent=True)
    report = check(candidate, [("version 1", PAYMENT)], level)
    assert not report.compatible
    assert reason in {deliberate(p) for p in report.problems}


def _enum_renamed_with_alias_elsewhere(s: dict[str, Any]) -> None:
    enum = _field(s, "method")["type"]
    enum["name"] = "Method"
    enum["aliases"] = ["other.PaymentMethod"]


def _field_matching_two(s: dict[str, Any]) -> None:
    s["fields"] = [f for f in s["fields"] if f["name"] != "user"]
    _field(s, "currency")["aliases"] = ["user"]  # the old schema has both


def _record_default_lacking_a_field(s: dict[str, Any]) -> None:
    s["fields"].append(
        {
            "name": "shop",
            "type": {"type": "record", "name": "Shop", "fields": [{"name": "id", "type": "int"}]},
            "default": {},
        }
    )


def _union_listing_a_type_twice(s: dict[str, Any]) -> None:
    _field(s, "note")["type"] = ["null", "string", "string"]


@pytest.mark.parametrize(
    ("edit", "level", "reason"),
    [
        (_enum_renamed_with_alias_elsewhere, "BACKWARD", "field `method` renamed enum"),
        (_field_matching_two, "BACKWARD", "field `currency` matches more than one field"),
        (_record_default_lacking_a_field, "BACKWARD", "field `shop` has an invalid default"),
        (_union_listing_a_type_twice, "BACKWARD", "field `note` has a union that lists string"),
    ],
)
def test_the_reported_wrong_verdicts_now_agree_with_the_registry(
    registry: RegistryClient, edit: Any, level: str, reason: str
) -> None:
    """Issue 12's classes 2-5 on payment.avsc: the registry refuses, and so does ours now (class
    1, a logical type riding on a promotion, is a deliberate difference tested above)."""
    candidate = _payment(edit)
    subject = f"compat-diff-{uuid.uuid4().hex[:12]}-value"
    try:
        registry.set_compatibility("NONE", subject)
        registry.register(subject, to_text(PAYMENT))
        assert not _ask(registry, subject, to_text(candidate), level)
    finally:
        registry.delete_subject(subject, permanent=True)
    report = check(candidate, [("version 1", PAYMENT)], level)
    assert any(m.startswith(reason) for m in report.messages()), report.messages()
