"""Hypothesis against bad input: events, wire bytes, dead-letter headers and the environment.

Each property runs ``max_examples`` generated cases (the figure after each ``settings``); the
promise under test is always the same: bad input is refused with *our* typed error and a
message naming what was wrong, and nothing else ever escapes.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from paykafka import (
    ConfigError,
    DecodeError,
    DecodeReason,
    PaymentEvent,
    PaymentMethod,
    Settings,
    ValidationError,
    load_schema,
)
from paykafka._currencies import MINOR_UNITS
from paykafka._dlq import H_OFFSET, H_PARTITION, H_REASON, H_SCHEMA_ID, H_TOPIC, DeadLetter
from paykafka._errors import RegistryUnavailableError, SchemaNotFoundError
from paykafka._serde import EventDeserializer, EventSerializer, frame_header

SCHEMA = load_schema()
SCHEMA_ID = 7
VALID: dict[str, Any] = {
    "user": "marek",
    "amount": Decimal("249.99"),
    "currency": "PLN",
    "method": "credit_card",
}
FIELDS = ("payment_id", "user", "amount", "currency", "method", "timestamp", "note")


def _not_a_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return True
    return False


_anything_else = st.none() | st.integers() | st.binary(max_size=8) | st.lists(st.integers())

INVALID: dict[str, st.SearchStrategy[Any]] = {
    "payment_id": st.text(max_size=40).filter(_not_a_uuid) | _anything_else,
    "user": (
        st.text(alphabet=" \t\n\r\x0b\x0c\u200b\u2060\ufeff\u3164", max_size=5)
        | st.text(min_size=257, max_size=300)
        | _anything_else
    ),
    "amount": (
        st.floats(allow_nan=True, allow_infinity=True)
        | st.booleans()
        | st.decimals(max_value=0, allow_nan=False, allow_infinity=False, places=2)
        | st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
        | st.decimals(min_value=Decimal("0.001"), max_value=1000, places=3).filter(
            lambda d: d != d.quantize(Decimal("0.01"))
        )
        | st.integers(min_value=10**14, max_value=10**30)
        | st.text(max_size=12).filter(lambda t: not _is_number(t))
        | st.none()
        | st.binary(max_size=4)
    ),
    "currency": (
        st.text(max_size=5).filter(lambda t: t not in MINOR_UNITS)
        | st.sampled_from(sorted(MINOR_UNITS)).map(str.lower)
        | _anything_else
    ),
    "method": st.text(max_size=20).filter(lambda t: t not in set(PaymentMethod)) | _anything_else,
    "timestamp": (
        st.datetimes(timezones=st.none())
        | st.dates()
        | st.text(max_size=30)
        | st.integers()
        | st.none()
    ),
    "note": st.integers() | st.binary(max_size=8) | st.lists(st.text(max_size=3), max_size=2),
}


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


@settings(max_examples=2000)
@given(data=st.data(), field=st.sampled_from(FIELDS))
def test_every_invalid_field_is_refused_naming_it(data: st.DataObject, field: str) -> None:
    """Any invalid value of any field raises ValidationError naming that field, nothing else."""
    value = data.draw(INVALID[field], label=field)
    with pytest.raises(ValidationError) as info:
        PaymentEvent(**{**VALID, field: value})
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"invalid {field}: ")
    assert len(message) > len(f"invalid {field}: ") + 10, "the message must say what is wrong"


_MINUS_7 = timezone(timedelta(hours=-7))
aware_timestamps = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), _MINUS_7]),
)


@st.composite
def valid_events(draw: st.DrawFn) -> PaymentEvent:
    currency = draw(st.sampled_from(sorted(MINOR_UNITS)))
    units = draw(st.integers(min_value=1, max_value=10**13))
    return PaymentEvent(
        payment_id=draw(st.uuids()),
        user=draw(
            st.text(min_size=1, max_size=60).filter(
                lambda s: any(c.isascii() and c.isalnum() for c in s)
            )
        ),
        amount=Decimal(units).scaleb(-MINOR_UNITS[currency]),
        currency=currency,
        method=draw(st.sampled_from(list(PaymentMethod))),
        timestamp=draw(aware_timestamps),
        note=draw(st.none() | st.text(max_size=40)),
    )


def _deserializer(schemas: dict[int, str] | None = None) -> EventDeserializer:
    known = {SCHEMA_ID: SCHEMA.text} if schemas is None else schemas

    def lookup(schema_id: int) -> str:
        if schema_id not in known:
            raise SchemaNotFoundError(f"no schema {schema_id}", status=404, error_code=40403)
        return known[schema_id]

    return EventDeserializer(SCHEMA, lookup)


SERIALIZE = EventSerializer(SCHEMA, SCHEMA_ID)


@settings(max_examples=500)
@given(valid_events())
def test_valid_events_survive_the_wire_exactly(event: PaymentEvent) -> None:
    """Any valid event is decoded back equal: exact money, UTC time, note and all."""
    assert _deserializer().decode(SERIALIZE(event)) == (SCHEMA_ID, event)


@settings(max_examples=3000)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_decode_error_only(data: bytes) -> None:
    """Arbitrary bytes give an event or a DecodeError with a reason, never another error."""
    error: DecodeError | None = None
    try:
        _deserializer().decode(data)
    except DecodeError as exc:
        error = exc
    if error is not None:
        assert isinstance(error.reason, DecodeReason)
        assert str(error)


def _generic(des: EventDeserializer, data: bytes) -> tuple[int, PaymentEvent] | DecodeReason:
    """The slow, plain path: fastavro then ``from_dict``; what the fast path must agree with."""
    try:
        schema_id, record = des.decode_record(data)
    except DecodeError as exc:
        return exc.reason
    try:
        return schema_id, PaymentEvent.from_dict(record)
    except ValidationError:
        return DecodeReason.INVALID_EVENT


@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    """A valid framed event, then flipped, cut, padded or spliced bytes."""
    data = bytearray(SERIALIZE(draw(valid_events())))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        op = draw(st.sampled_from(["flip", "cut", "pad", "splice"]))
        at = draw(st.integers(min_value=5, max_value=max(5, len(data) - 1)))
        if op == "flip" and at < len(data):
            data[at] ^= draw(st.integers(min_value=1, max_value=255))
        elif op == "cut":
            del data[at:]
        elif op == "pad":
            data += draw(st.binary(min_size=1, max_size=6))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=6))
    return bytes(data)


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_records())
def test_spoiled_records_fail_typed_and_the_fast_path_agrees(data: bytes) -> None:
    """Corrupted valid records: only DecodeError, and the fast decoder agrees with fastavro."""
    des = _deserializer()
    expected = _generic(des, data)
    try:
        got: tuple[int, PaymentEvent] | DecodeReason = des.decode(data)
    except DecodeError as exc:
        got = exc.reason
    assert got == expected


@settings(max_examples=500)
@given(schema_id=st.integers(min_value=0, max_value=2**31 - 1), body=st.binary(max_size=60))
def test_registry_outage_is_always_retriable_never_bad_data(schema_id: int, body: bytes) -> None:
    """Any framed record whose id must be fetched while the registry is down is retriable."""

    def down(_schema_id: int) -> str:
        raise RegistryUnavailableError("registry down")

    with pytest.raises(DecodeError) as info:
        EventDeserializer(SCHEMA, down).decode(frame_header(schema_id) + body)
    assert info.value.reason is DecodeReason.REGISTRY_UNAVAILABLE
    assert info.value.retriable
    assert info.value.schema_id == schema_id


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
writer_schemas = (
    st.text(max_size=80)
    | json_values.map(json.dumps)
    | st.fixed_dictionaries(
        {"type": st.just("record"), "name": st.text(max_size=8), "fields": json_values}
    ).map(json.dumps)
)


@settings(max_examples=500)
@given(text=writer_schemas, body=st.binary(max_size=40))
def test_any_writer_schema_text_fails_typed(text: str, body: bytes) -> None:
    """Whatever a registry returns as the writer schema, decoding raises DecodeError at worst."""
    error: DecodeError | None = None
    try:
        _deserializer({3: text}).decode(frame_header(3) + body)
    except DecodeError as exc:
        error = exc
    assert error is None or not error.retriable


class _Msg:
    """The parts of a confluent ``Message`` that ``DeadLetter.from_message`` reads."""

    def __init__(self, headers: list[tuple[str, bytes | None]]) -> None:
        self._headers = headers

    def headers(self) -> list[tuple[str, bytes | None]]:
        return self._headers

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"v"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 42


header_names = st.sampled_from([H_REASON, H_TOPIC, H_PARTITION, H_OFFSET, H_SCHEMA_ID]) | st.text(
    max_size=12
)
header_values = st.none() | st.binary(max_size=12) | st.integers().map(lambda i: str(i).encode())


@settings(max_examples=1000)
@given(st.lists(st.tuples(header_names, header_values), max_size=8))
@example([(H_PARTITION, "²".encode()), (H_OFFSET, b"abc"), (H_SCHEMA_ID, b"-")])
def test_dead_letters_with_any_headers_are_listed_not_crashed(
    headers: list[tuple[str, bytes | None]],
) -> None:
    """Hand-made or damaged dead-letter headers never stop ``paykafka dlq list``."""
    letter = DeadLetter.from_message(_Msg(headers))
    assert isinstance(letter.source_partition, int)
    assert isinstance(letter.source_offset, int)
    assert letter.schema_id is None or isinstance(letter.schema_id, int)
    assert all(not k.startswith("paykafka.") for k, _ in letter.headers)


ENV_VARS = [f"PAYKAFKA_{f.name.upper()}" for f in attrs.fields(Settings)]


env_values = st.text(max_size=30) | st.sampled_from(["nan", "inf", "-1", "0", "1e400", "{}", "[]"])


@settings(max_examples=1000)
@given(st.dictionaries(st.sampled_from(ENV_VARS), env_values, max_size=6))
@example({"PAYKAFKA_REGISTRY_TIMEOUT": "nan"})
@example({"PAYKAFKA_REGISTRY_TIMEOUT": "inf"})
def test_any_environment_gives_settings_or_config_error(env: dict[str, str]) -> None:
    """Whatever PAYKAFKA_* holds, from_env gives usable Settings or a ConfigError, nothing else.

    Usable includes a finite registry timeout: NaN or infinity would mean no timeout at all.
    """
    try:
        built = Settings.from_env(env)
    except ConfigError as exc:
        message = str(exc)
    else:
        assert 0 < built.registry_timeout < float("inf")
        return
    assert message
