"""The specialised codec: byte-for-byte fastavro's output, and never more lenient on input."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paykafka import PaymentEvent, PaymentMethod, ValidationError, load_schema
from paykafka._codec import build_decoder, build_encoder, uuid_from_text
from paykafka._currencies import MINOR_UNITS
from paykafka._schema import parse_schema_text
from paykafka._serde import EventDeserializer, EventSerializer, frame_header

SCHEMA = load_schema()
HEADER = frame_header(7)

users = st.text(min_size=1, max_size=256).filter(
    lambda s: any(c.isascii() and c.isalnum() for c in s)
)
notes = st.none() | st.text(max_size=80)
timestamps = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5))]),
)


@st.composite
def events(draw: st.DrawFn) -> PaymentEvent:
    currency = draw(st.sampled_from(sorted(MINOR_UNITS)))
    places = MINOR_UNITS[currency]
    units = draw(st.integers(min_value=1, max_value=10 ** (14 + places) - 1))
    return PaymentEvent(
        payment_id=uuid.UUID(int=draw(st.integers(min_value=0, max_value=2**128 - 1))),
        user=draw(users),
        amount=Decimal(units).scaleb(-places),
        currency=currency,
        method=draw(st.sampled_from(list(PaymentMethod))),
        timestamp=draw(timestamps),
        note=draw(notes),
    )


def fastavro_bytes(event: PaymentEvent, parsed: dict[str, Any] = SCHEMA.parsed) -> bytes:
    buf = io.BytesIO()
    buf.write(HEADER)
    fastavro.schemaless_writer(buf, parsed, event.to_dict())
    return buf.getvalue()


def slow_decode(data: bytes, writer: dict[str, Any], reader: dict[str, Any] | None) -> Any:
    """What the generic path makes of a body: an event, or the ValidationError it raises."""
    record = fastavro.schemaless_reader(io.BytesIO(data[5:]), writer, reader)
    assert isinstance(record, dict)
    try:
        return PaymentEvent.from_dict(record)
    except ValidationError as exc:
        return exc


def evolved(*, extra_field: bool, extra_symbol: bool, drop_note: bool = False) -> dict[str, Any]:
    raw = json.loads(SCHEMA.text)
    if drop_note:
        raw["fields"] = [f for f in raw["fields"] if f["name"] != "note"]
        method = next(f for f in raw["fields"] if f["name"] == "method")
        method["type"]["symbols"].remove("gift_card")
    if extra_field:
        raw["fields"].append(
            {"name": "zz_test_only_extra", "type": ["null", "long"], "default": None}
        )
    if extra_symbol:
        method = next(f for f in raw["fields"] if f["name"] == "method")
        method["type"]["symbols"].append("crypto")
    return parse_schema_text(json.dumps(raw)).parsed


ENCODE = build_encoder(SCHEMA.parsed, HEADER)
DECODE = build_decoder(SCHEMA.parsed)


def test_the_packaged_schema_is_specialised() -> None:
    """The contract as shipped takes the fast path both ways (no silent fallback)."""
    extras = json.loads(SCHEMA.text)["fields"][6:]
    complex_ = [f["name"] for f in extras if build_encoder(_only(f), HEADER) is None]
    hint = (
        "the codec's fast path is off for this schema: after the six core fields it specialises "
        "only optional fields of primitive types (or [null, primitive]); "
        f"{complex_ or 'a core field'} is not one: keep new optional fields simple, or teach "
        "paykafka/_codec.py the new shape"
    )
    assert ENCODE is not None, hint
    assert DECODE is not None, hint


def _only(extra_field: dict[str, Any]) -> dict[str, Any]:
    """The contract's six core fields plus one extra: which extra turns the fast path off."""
    raw = json.loads(SCHEMA.text)
    return parse_schema_text(json.dumps(dict(raw, fields=[*raw["fields"][:6], extra_field]))).parsed


@settings(max_examples=400)
@given(events())
def test_encoder_writes_exactly_fastavros_bytes(event: PaymentEvent) -> None:
    """Hypothesis: for any valid event the specialised bytes equal fastavro's."""
    assert ENCODE is not None
    assert ENCODE(event) == fastavro_bytes(event)


@settings(max_examples=400)
@given(events())
def test_decoder_builds_the_event_from_dict_builds(event: PaymentEvent) -> None:
    """Hypothesis: decoding a valid event gives exactly what fastavro + from_dict give."""
    assert DECODE is not None
    data = fastavro_bytes(event)
    fast = DECODE(data)
    assert fast is not None
    assert fast == slow_decode(data, SCHEMA.parsed, None) == event
    assert str(fast.amount) == str(event.amount)  # same exponent, not only equal value
    assert fast.timestamp.tzinfo is UTC


@st.composite
def raw_records(draw: st.DrawFn) -> dict[str, Any]:
    """Avro-valid records: a valid event's, often with one value breaking a business rule."""
    record = draw(events()).to_dict()
    broken = draw(st.sampled_from([None, "user", "amount", "currency", "method", "note"]))
    if broken == "user":
        record["user"] = draw(
            st.text(max_size=300) | st.sampled_from(["", " \t", "\u200b", "\u3164 ", "x" * 257])
        )
    elif broken == "amount":
        units = st.integers(min_value=-(10**19), max_value=10**19)
        edges = st.sampled_from([0, -1, 1, 5, 50, 10**18 - 1, 10**18, 10**18 + 10000])
        record["amount"] = Decimal(draw(units | edges)).scaleb(-4)
    elif broken == "currency":
        record["currency"] = draw(st.sampled_from(["XYZ", "pln", "", "EURO"]) | st.text())
    elif broken == "method":
        record["method"] = draw(st.sampled_from(SCHEMA.method_symbols))
    elif broken == "note":
        record["note"] = draw(notes)
    return record


@settings(max_examples=600)
@given(raw_records())
def test_decoder_is_never_more_lenient_than_from_dict(record: dict[str, Any]) -> None:
    """Hypothesis: on any record, the fast path agrees with from_dict or steps aside."""
    assert DECODE is not None
    buf = io.BytesIO()
    buf.write(HEADER)
    try:
        fastavro.schemaless_writer(buf, SCHEMA.parsed, record)
    except ValueError:
        return  # beyond decimal(18, 4): not something a writer can put on the wire
    data = buf.getvalue()
    slow = slow_decode(data, SCHEMA.parsed, None)
    fast = DECODE(data)
    if isinstance(slow, ValidationError):
        assert fast is None
    else:  # a valid record: the fast path must take it, not step aside
        assert fast is not None
        assert fast == slow
        assert str(fast.amount) == str(slow.amount)


@pytest.mark.parametrize(
    ("writer_args", "reader_args"),
    [
        ({"extra_field": True, "extra_symbol": True}, None),
        ({"extra_field": False, "extra_symbol": False, "drop_note": True}, None),
        (None, {"extra_field": False, "extra_symbol": False, "drop_note": True}),
        (None, {"extra_field": True, "extra_symbol": False}),
    ],
)
@settings(max_examples=100)
@given(event=events(), channel=st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_evolved_writer_schemas_resolve_like_fastavro(
    writer_args: dict[str, bool] | None,
    reader_args: dict[str, bool] | None,
    event: PaymentEvent,
    channel: int | None,
) -> None:
    """Hypothesis: newer and older writers (extra fields, symbols) read as fastavro reads them."""
    writer = evolved(**writer_args) if writer_args else SCHEMA.parsed
    reader = evolved(**reader_args) if reader_args else SCHEMA.parsed
    record = dict(event.to_dict(), zz_test_only_extra=channel)
    method_field = next(f for f in writer["fields"] if f["name"] == "method")
    if record["method"] not in method_field["type"]["symbols"]:
        record["method"] = "crypto" if "crypto" in method_field["type"]["symbols"] else "other"
    buf = io.BytesIO()
    buf.write(HEADER)
    fastavro.schemaless_writer(buf, writer, record)
    data = buf.getvalue()
    decode = build_decoder(writer, reader)
    assert decode is not None
    fast = decode(data)
    slow = slow_decode(data, writer, reader)
    assert fast is not None
    assert fast == slow


def test_shapes_it_does_not_know_are_left_to_fastavro() -> None:
    """Reordered core fields or a complex extra field get no specialised codec."""
    raw = json.loads(SCHEMA.text)
    reordered = dict(raw, fields=[raw["fields"][1], raw["fields"][0], *raw["fields"][2:]])
    nested = dict(
        raw, fields=[*raw["fields"], {"name": "tags", "type": {"type": "array", "items": "string"}}]
    )
    for shape in (reordered, nested):
        parsed = parse_schema_text(json.dumps(shape)).parsed
        assert build_encoder(parsed, HEADER) is None
        assert build_decoder(parsed) is None
        assert build_decoder(parsed, SCHEMA.parsed) is None


def test_serde_takes_the_generic_path_for_unknown_shapes() -> None:
    """A schema the codec does not specialise still round-trips through fastavro."""
    raw = json.loads(SCHEMA.text)
    raw["fields"].append({"name": "tags", "type": {"type": "array", "items": "string"}})
    raw["fields"][-1]["default"] = []
    schema = parse_schema_text(json.dumps(raw))
    event = PaymentEvent(user="marek", amount=Decimal("249.99"), currency="PLN", method="blik")
    data = EventSerializer(schema, 3)(event)
    got = EventDeserializer(schema, lambda _id: schema.text).decode(data)
    assert got == (3, event)


@settings(max_examples=300)
@given(events())
def test_valid_events_never_miss_the_fast_paths(event: PaymentEvent) -> None:
    """Hypothesis: through the serde, no valid event falls back to the generic path."""
    serialize = EventSerializer(SCHEMA, 7)
    deserialize = EventDeserializer(SCHEMA, lambda _id: SCHEMA.text)
    assert deserialize(serialize(event)) == event
    assert deserialize(serialize(event)) == event  # the second decode uses the cached codec
    assert (serialize.fast_path_misses, deserialize.fast_path_misses) == (0, 0)


def test_a_codec_that_raises_is_counted_not_hidden() -> None:
    """A fast codec raising on a valid event: the result is still right, and the miss counted."""
    event = PaymentEvent(user="marek", amount="249.99", currency="PLN", method="blik")
    serialize = EventSerializer(SCHEMA, 7)
    deserialize = EventDeserializer(SCHEMA, lambda _id: SCHEMA.text)
    data = serialize(event)
    deserialize(data)  # resolves schema 7, installing its fast decoder

    def broken(_value: object) -> None:
        raise IndexError("a codec bug")

    serialize._fast = broken
    deserialize._fast = {k: (sid, broken) for k, (sid, _) in deserialize._fast.items()}
    assert serialize(event) == data
    assert deserialize(data) == event
    assert (serialize.fast_path_misses, deserialize.fast_path_misses) == (1, 1)


@settings(max_examples=200)
@given(events())
def test_the_fast_path_never_declines_a_valid_event(event: PaymentEvent) -> None:
    """A valid event decodes on the fast path: it adapts to optional fields by itself, and this
    fails loudly (instead of the tracker silently slowing down) if it ever stops doing so."""
    assert ENCODE is not None
    assert DECODE is not None
    data = ENCODE(event)
    assert data is not None
    assert DECODE(data) == event, (
        "the decoder's fast path declined a valid event: PaymentEvent._trusted must set every "
        "field of the class (declare optional fields with extra(), see _event.py)"
    )


@given(
    st.uuids().map(lambda u: str(u).encode())
    | st.uuids().map(lambda u: u.hex.upper().encode())
    | st.binary(min_size=30, max_size=40)
    | st.text(alphabet="0123456789abcdefABCDEF-+_ {}:urnid\u0660", min_size=30, max_size=40).map(
        str.encode
    )
)
def test_uuid_from_text_is_exactly_uuid(raw: bytes) -> None:
    """The quick UUID builder accepts what ``uuid.UUID(text)`` accepts, gives the same UUID
    (equal, same hash, same text, same is_safe) and refuses what it refuses."""
    try:
        expected = uuid.UUID(raw.decode())
    except ValueError:
        with pytest.raises(ValueError):
            uuid_from_text(raw)
        return
    got = uuid_from_text(raw)
    assert type(got) is uuid.UUID
    assert (got, hash(got), str(got), got.is_safe) == (
        expected,
        hash(expected),
        str(expected),
        expected.is_safe,
    )
