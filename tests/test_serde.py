"""Wire format: Confluent framing, Avro round trips, schema resolution, decode failures."""

import contextlib
import io
import json
import struct
from decimal import Decimal, localcontext

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paykafka import DecodeError, DecodeReason, PaymentEvent, load_schema
from paykafka._errors import RegistryUnavailableError, SchemaNotFoundError
from paykafka._schema import parse_schema_text
from paykafka._serde import EventDeserializer, EventSerializer, frame_header, split_frame

SCHEMA = load_schema()
EVENT = PaymentEvent(user="marek", amount=Decimal("249.99"), currency="PLN", method="blik")


def deserializer(schemas: dict[int, str] | None = None) -> EventDeserializer:
    known = schemas if schemas is not None else {7: SCHEMA.text}

    def lookup(schema_id: int) -> str:
        if schema_id not in known:
            raise SchemaNotFoundError(f"id {schema_id}", status=404, error_code=40403)
        return known[schema_id]

    return EventDeserializer(SCHEMA, lookup)


def test_frame_is_magic_byte_then_big_endian_id() -> None:
    """Bytes 0..4 are the Confluent header: 0x00 and the schema id, big-endian."""
    data = EventSerializer(SCHEMA, 0x01020304)(EVENT)
    assert data[:5] == b"\x00\x01\x02\x03\x04"
    assert split_frame(data)[0] == 0x01020304


def test_body_is_plain_avro_readable_by_fastavro() -> None:
    """After the header, the body is the event in Avro, readable with the schema alone."""
    data = EventSerializer(SCHEMA, 7)(EVENT)
    record = fastavro.schemaless_reader(io.BytesIO(data[5:]), SCHEMA.parsed, None)
    assert isinstance(record, dict)
    assert record["user"] == "marek"
    assert record["amount"] == Decimal("249.99")
    assert record["method"] == "blik"


def test_round_trip_returns_an_equal_event() -> None:
    """serialize then deserialize gives back an equal PaymentEvent."""
    data = EventSerializer(SCHEMA, 7)(EVENT)
    schema_id, event = deserializer().decode(data)
    assert (schema_id, event) == (7, EVENT)


def test_frame_header_rejects_out_of_range_ids() -> None:
    """Schema ids outside the 4-byte signed range cannot be framed."""
    with pytest.raises(Exception, match="outside"):
        frame_header(-1)
    assert frame_header(2**31 - 1) == struct.pack(">bI", 0, 2**31 - 1)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", DecodeReason.NOT_CONFLUENT_FRAMING),
        (None, DecodeReason.NOT_CONFLUENT_FRAMING),
        (b'{"user": "marek"}', DecodeReason.NOT_CONFLUENT_FRAMING),
        (b"\x00\x00\x00", DecodeReason.NOT_CONFLUENT_FRAMING),
        (b"\x00\x00\x00\x03\x15abc", DecodeReason.UNKNOWN_SCHEMA_ID),
        (b"\x00\x00\x00\x00\x07\xff\xff", DecodeReason.CORRUPT_AVRO),
    ],
)
def test_bad_records_fail_with_a_reason(data: bytes | None, reason: DecodeReason) -> None:
    """Each kind of bad record is a DecodeError with the matching reason."""
    with pytest.raises(DecodeError) as info:
        deserializer()(data)
    assert info.value.reason is reason
    assert not info.value.retriable


def test_truncated_and_padded_bodies_are_corrupt() -> None:
    """A body cut short or with trailing bytes is corrupt, not silently accepted."""
    data = EventSerializer(SCHEMA, 7)(EVENT)
    for bad in (data[:-4], data + b"\x00\x01"):
        with pytest.raises(DecodeError) as info:
            deserializer()(bad)
        assert info.value.reason is DecodeReason.CORRUPT_AVRO


def test_schema_of_another_record_is_wrong_schema() -> None:
    """A record written with an unrelated schema cannot pass as a payment."""
    other = {"type": "record", "name": "Refund", "fields": [{"name": "x", "type": "int"}]}
    buf = io.BytesIO()
    buf.write(frame_header(9))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(other), {"x": 1})
    with pytest.raises(DecodeError) as info:
        deserializer({9: json.dumps(other)})(buf.getvalue())
    assert info.value.reason is DecodeReason.WRONG_SCHEMA


def test_registry_outage_is_retriable_not_bad_data() -> None:
    """An unseen id during a registry outage is a retriable error, not a poison record."""

    def down(_id: int) -> str:
        raise RegistryUnavailableError("registry down")

    data = EventSerializer(SCHEMA, 7)(EVENT)
    with pytest.raises(DecodeError) as info:
        EventDeserializer(SCHEMA, down)(data)
    assert info.value.reason is DecodeReason.REGISTRY_UNAVAILABLE
    assert info.value.retriable


def test_writer_schema_is_fetched_once_per_id() -> None:
    """Decoding many records with one id asks for the writer schema once."""
    calls: list[int] = []

    def lookup(schema_id: int) -> str:
        calls.append(schema_id)
        return SCHEMA.text

    des = EventDeserializer(SCHEMA, lookup)
    data = EventSerializer(SCHEMA, 7)(EVENT)
    for _ in range(5):
        des(data)
    assert calls == [7]


def _evolved(extra_field: bool, extra_symbol: bool) -> str:
    raw = json.loads(SCHEMA.text)
    if extra_field:
        raw["fields"].append(
            {"name": "channel", "type": ["null", "string"], "default": None, "doc": "free text"}
        )
    if extra_symbol:
        for f in raw["fields"]:
            if f["name"] == "method":
                f["type"]["symbols"] = [*f["type"]["symbols"], "crypto"]
    names = [f["name"] for f in raw["fields"]]
    assert len(names) == len(set(names)), names
    return json.dumps(raw)


def test_newer_writer_schema_resolves_onto_ours() -> None:
    """Events written with a newer schema (extra field, extra enum symbol) still decode."""
    newer = parse_schema_text(_evolved(extra_field=True, extra_symbol=True))
    buf = io.BytesIO()
    buf.write(frame_header(8))
    record = dict(EVENT.to_dict(), note="hello", channel="web", method="crypto")
    fastavro.schemaless_writer(buf, newer.parsed, record)
    event = deserializer({8: newer.text})(buf.getvalue())
    assert event.payment_id == EVENT.payment_id
    assert event.method == "other"  # the enum default for symbols this reader does not know
    assert event.note == "hello"


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    """Hypothesis: any bytes decode to an event or raise DecodeError, nothing else."""
    with contextlib.suppress(DecodeError):
        deserializer()(data)


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_arbitrary_bodies_behind_a_valid_header_only_raise_decode_error(body: bytes) -> None:
    """Hypothesis: a known schema id followed by random bytes never escapes as another error."""
    with contextlib.suppress(DecodeError):
        deserializer()(frame_header(7) + body)


def test_decoding_ignores_the_callers_decimal_context() -> None:
    """Under a 5-digit context 12345.67 PLN decodes on both paths, never as invalid_event."""
    event = PaymentEvent(user="marek", amount="12345.67", currency="PLN", method="blik")
    data = EventSerializer(SCHEMA, 7)(event)
    fast, generic = deserializer(), deserializer()
    fast(data)
    generic._fast.clear()  # only the generic path (fastavro + from_dict) is left
    generic._resolved[7] = deserializer()._resolve(7)
    with localcontext() as ctx:
        ctx.prec = 5
        assert fast(data) == event
        assert generic.decode_record(data)[1]["amount"] == Decimal("12345.6700")
        assert generic(data) == event
