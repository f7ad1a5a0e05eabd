"""A specialised Avro encoder and decoder for the payment record: the serde's fast path.

Why: fastavro's generic writer and reader walk the schema for every record, convert each
logical type through a Python call, and hand back a dict that ``PaymentEvent`` then converts
and validates again. Profiling the serde showed that work as most of the per-event cost. The
payment record is small and its shape is known when a producer or tracker starts, so this
module turns a parsed schema into a plan once and then moves straight between
``PaymentEvent`` attributes and Avro bytes.

It is an optimisation, never a second definition of the format:

* a plan is built only for schemas whose shape it fully understands (the six core fields, in
  the contract's order and types, followed by optional extras of simple types); any other
  schema gets ``None`` and the caller keeps the generic fastavro path;
* for a single record, anything unexpected (an unknown method, a surprising value, bytes
  that do not parse cleanly) also returns ``None``, so that record takes the generic path and
  gets its usual result or error;
* ``tests/test_codec.py`` proves with hypothesis that the bytes equal fastavro's and that
  decoded events equal ``PaymentEvent.from_dict`` of fastavro's record.
"""

from __future__ import annotations

import decimal
import uuid
from binascii import hexlify, unhexlify
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from paykafka._currencies import MINOR_UNITS
from paykafka._event import PaymentEvent, PaymentMethod

__all__ = ["Decoder", "Encoder", "build_decoder", "build_encoder"]

#: Encodes an event to its framed bytes, or ``None`` to ask for the generic path.
Encoder = Callable[[PaymentEvent], bytes | None]
#: Decodes framed bytes (header included) to an event, or ``None`` to ask for the generic path.
Decoder = Callable[[bytes], PaymentEvent | None]

_CORE = ("payment_id", "user", "amount", "currency", "method", "timestamp")
_UUID_TYPE = {"type": "string", "logicalType": "uuid"}
_DECIMAL_TYPE = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4}
_TIMESTAMP_TYPE = {"type": "long", "logicalType": "timestamp-micros"}
_SCALE = 4
_MAX_UNITS = 10**18  # decimal(18, 4): 18 digits at most
_HEADER_SIZE = 5
_UUID_TEXT = 36
_SIMPLE = frozenset({"null", "boolean", "int", "long", "string", "bytes"})
_TIMESTAMP_CACHE = 64  # high parts kept: over two hours of timestamps, in any order

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Decimal arithmetic here must not depend on whatever context the caller's thread set.
_CTX = decimal.Context(prec=40)
_SMALL = tuple(bytes((i,)) for i in range(128))
# Length prefixes of strings and bytes shorter than 64: zigzag(n) = 2n fits one byte.
_LENGTH = tuple(bytes((2 * i,)) for i in range(64))
_UUID_PREFIX = _LENGTH[_UUID_TEXT]
_CURRENCIES = {code: _LENGTH[len(code)] + code.encode() for code in MINOR_UNITS}


_new, _set = object.__new__, object.__setattr__
# Looked up once: an enum member read through its class is a descriptor call in Python.
_UUID, _UNKNOWN = uuid.UUID, uuid.SafeUUID.unknown


def uuid_from_text(raw: bytes) -> uuid.UUID:
    """``uuid.UUID(raw.decode())``, quicker for the 32 hex digits every writer sends.

    Why: building a UUID from its text was a tenth of decoding an event. Only 32 hex digits
    with hyphens (anywhere, as ``UUID()`` allows) take the quick way, which builds the very
    object ``UUID()`` would, the way unpickling does; anything else goes through ``UUID()``,
    which accepts or raises exactly as always.
    """
    digits = raw.replace(b"-", b"")
    if len(digits) == 32:
        try:
            value = int.from_bytes(unhexlify(digits), "big")  # strict: hex digits only
        except ValueError:
            pass
        else:
            out = _new(_UUID)
            _set(out, "int", value)
            _set(out, "is_safe", _UNKNOWN)
            return out
    return uuid.UUID(raw.decode())


def _varint(value: int) -> bytes:
    """Zigzag and base-128 encoding of an Avro ``long``."""
    return _base128((value << 1) ^ (value >> 63))


def _base128(n: int) -> bytes:
    """Base-128 encoding of a non-negative integer, low groups first."""
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _timestamp_encoder() -> Callable[[int], bytes]:
    """``_varint`` for values close to the last one, like the timestamps of a stream.

    Why: a timestamp is eight varint bytes, the slowest part of an event to encode in a loop.
    Everything above its low 28 bits changes only every couple of minutes, so the bytes of
    the recent high parts are cached and the low four are computed with integer arithmetic.
    """
    cache: dict[int, bytes] = {}

    def encode(value: int) -> bytes:
        n = (value << 1) ^ (value >> 63)
        high = n >> 28
        if not high:
            return _base128(n)
        tail = cache.get(high)
        if tail is None:
            if len(cache) >= _TIMESTAMP_CACHE:
                cache.clear()
            tail = cache[high] = _base128(high)
        low = n & 0xFFFFFFF
        four = (
            (low & 0x7F)
            | (low << 1 & 0x7F00)
            | (low << 2 & 0x7F0000)
            | (low << 3 & 0x7F000000)
            | 0x80808080  # more bytes follow each of the four
        )
        return four.to_bytes(4, "little") + tail

    return encode


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro ``long`` at ``pos``, and the position after it; ``IndexError`` when cut short.

    Anything longer than ten bytes or wider than 64 bits is refused (``ValueError``) so the
    generic reader decides what such bytes mean.
    """
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n = b & 0x7F
    shift = 7
    end = pos + 10
    pos += 1
    while True:
        if pos >= end:
            raise ValueError("varint longer than ten bytes")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    if n >> 64:
        raise ValueError("varint wider than 64 bits")
    return (n >> 1) ^ -(n & 1), pos


# -- schema shape -----------------------------------------------------------------------------


def _strip(schema: Any) -> Any:
    """A type as plain JSON-like data without docs, fastavro hints or aliases."""
    if isinstance(schema, dict):
        return {
            k: _strip(v)
            for k, v in schema.items()
            if k not in {"doc", "aliases", "__fastavro_parsed", "__named_schemas"}
        }
    if isinstance(schema, list):
        return [_strip(s) for s in schema]
    return schema


def _core_types(fields: Sequence[Mapping[str, Any]]) -> tuple[str, ...] | None:
    """The ``method`` enum's symbols when the first six fields are the contract's, else None."""
    if len(fields) < len(_CORE) or tuple(f["name"] for f in fields[:6]) != _CORE:
        return None
    types = [_strip(f["type"]) for f in fields[:6]]
    expected = [_UUID_TYPE, "string", _DECIMAL_TYPE, "string", None, _TIMESTAMP_TYPE]
    for got, want in zip(types, expected, strict=True):
        if want is not None and got != want:
            return None
    method = types[4]
    if not isinstance(method, dict) or method.get("type") != "enum":
        return None
    return tuple(method["symbols"])


def _simple_type(schema: Any) -> tuple[str, ...] | None:
    """The branches of a simple extra field: one primitive, or a union of primitives."""
    branches = schema if isinstance(schema, list) else [schema]
    names = tuple(_strip(b) for b in branches)
    if not all(isinstance(b, str) and b in _SIMPLE for b in names):
        return None
    # One non-null branch at most: which branch a value is written in is then never a choice.
    if len(set(names)) != len(names) or len([n for n in names if n != "null"]) > 1:
        return None
    return names


# -- encoding ---------------------------------------------------------------------------------


def _encode_value(kind: str, value: Any) -> bytes | None:
    """One primitive value, or ``None`` when it is not that kind (the generic path decides)."""
    if kind == "null":
        return b"" if value is None else None
    if kind == "string":
        if type(value) is not str:
            return None
        raw = value.encode()
        return _varint(len(raw)) + raw
    if kind == "bytes":
        if type(value) is not bytes:
            return None
        return _varint(len(value)) + value
    if kind == "boolean":
        return (b"\x01" if value else b"\x00") if type(value) is bool else None
    if type(value) is not int or not -(2**63) <= value < 2**63:
        return None
    if kind == "int" and not -(2**31) <= value < 2**31:
        return None
    return _varint(value)


_MISSING = object()


def _extra_encoder(field: Mapping[str, Any]) -> Callable[[PaymentEvent], bytes | None] | None:
    """How to write one extra field from an event, the way fastavro writes ``to_dict()``."""
    branches = _simple_type(field["type"])
    if branches is None:
        return None
    name = field["name"]
    has_default = "default" in field
    default = field.get("default")
    union = isinstance(field["type"], list)
    null = _SMALL[2 * branches.index("null")] if union and "null" in branches else None

    def encode(event: PaymentEvent) -> bytes | None:
        value = getattr(event, name, _MISSING)
        if value is _MISSING:
            # to_dict() lacks the key: fastavro writes the field's default, or null.
            if not has_default and "null" not in branches:
                return None
            value = default
        if value is None and null is not None:
            return null
        if not union:
            return _encode_value(branches[0], value)
        for index, kind in enumerate(branches):
            body = _encode_value(kind, value)
            if body is not None:
                return _SMALL[2 * index] + body
        return None

    return encode


def build_encoder(parsed: Mapping[str, Any], header: bytes) -> Encoder | None:
    """A fast encoder for events written with ``parsed``, framed with ``header``; or None.

    ``None`` means the schema has a shape this module does not specialise.
    """
    fields = parsed.get("fields", [])
    symbols = _core_types(fields)
    if symbols is None:
        return None
    methods = {m: _SMALL[2 * i] for i, m in enumerate(symbols) if i < 64}
    method_bytes = {m: methods[m.value] for m in PaymentMethod if m.value in methods}
    extras = [_extra_encoder(f) for f in fields[6:]]
    if any(e is None for e in extras):
        return None
    extra_encoders = tuple(e for e in extras if e is not None)
    uuid_prefix, lengths, currencies = _UUID_PREFIX, _LENGTH, _CURRENCIES
    epoch, micro, ctx = _EPOCH, _MICROSECOND, _CTX
    timestamp = _timestamp_encoder()

    def encode(event: PaymentEvent) -> bytes | None:
        user = event.user.encode()
        size = len(user)
        scaled = event.amount.scaleb(_SCALE, ctx)
        units = int(scaled)
        currency = currencies.get(event.currency)
        method = method_bytes.get(event.method)
        if (
            currency is None
            or method is None
            or units != scaled
            or not 0 < units < _MAX_UNITS
            or type(event.payment_id) is not uuid.UUID
        ):
            return None
        amount = units.to_bytes((units.bit_length() + 8) // 8, "big", signed=True)
        # str(payment_id).encode(), in a third less time: the 8-4-4-4-12 hex groups.
        hex_ = hexlify(event.payment_id.int.to_bytes(16, "big"))
        parts = [
            header,
            uuid_prefix,
            b"-".join((hex_[:8], hex_[8:12], hex_[12:16], hex_[16:20], hex_[20:])),
            lengths[size] if size < 64 else _varint(size),
            user,
            lengths[len(amount)],
            amount,
            currency,
            method,
            timestamp((event.timestamp - epoch) // micro),
        ]
        for extra in extra_encoders:
            body = extra(event)
            if body is None:
                return None
            parts.append(body)
        return b"".join(parts)

    return encode


# -- decoding ---------------------------------------------------------------------------------


def _read_value(kind: str, data: bytes, pos: int) -> tuple[Any, int]:
    """One primitive value at ``pos`` and the position after it."""
    if kind == "null":
        return None, pos
    if kind == "boolean":
        b = data[pos]
        if b > 1:
            raise ValueError("not a boolean")
        return b == 1, pos + 1
    if kind in {"int", "long"}:
        value, pos = _read_long(data, pos)
        if kind == "int" and not -(2**31) <= value < 2**31:
            raise ValueError("int out of range")
        return value, pos
    size, pos = _read_long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise ValueError("length out of range")
    raw = data[pos:end]
    return (raw.decode() if kind == "string" else raw), end


_Read = Callable[[bytes, int], tuple[Any, int]]


def _extra_reader(branches: tuple[str, ...], union: bool) -> _Read:
    if not union:
        kind = branches[0]
        return lambda data, pos: _read_value(kind, data, pos)

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        index = data[pos]
        if index < 0x80 and not index & 1:
            index >>= 1
            pos += 1
        else:
            index, pos = _read_long(data, pos)
        if not 0 <= index < len(branches):
            raise ValueError("union index out of range")
        kind = branches[index]
        if kind == "null":
            return None, pos
        return _read_value(kind, data, pos)

    return read


def _method_table(
    writer_symbols: Sequence[str], reader_method: Mapping[str, Any]
) -> tuple[PaymentMethod | None, ...]:
    """Writer enum index to the reader's ``PaymentMethod``, resolving as Avro says.

    A writer symbol the reader lacks reads as the reader's default; ``None`` where there is
    no such default or ``PaymentMethod`` lacks the symbol (the generic path then says why).
    """
    reader_symbols = set(reader_method["symbols"])
    default = reader_method.get("default")
    known = {m.value: m for m in PaymentMethod}
    table: list[PaymentMethod | None] = []
    for symbol in writer_symbols:
        resolved = symbol if symbol in reader_symbols else default
        table.append(known.get(resolved) if resolved else None)
    return tuple(table)


_Step = tuple[str | None, _Read]


def _decode_plan(
    writer: Mapping[str, Any], reader: Mapping[str, Any]
) -> tuple[tuple[PaymentMethod | None, ...], tuple[_Step, ...], dict[str, Any]] | None:
    """What the decoder needs: the method table, how to read each extra writer field (and the
    name to keep it under, ``None`` to skip it), and defaults of reader-only extras."""
    w_fields, r_fields = writer.get("fields", []), reader.get("fields", [])
    w_symbols = _core_types(w_fields)
    if w_symbols is None or _core_types(r_fields) is None:
        return None
    methods = _method_table(w_symbols, _strip(r_fields[4]["type"]))
    r_extras = {f["name"]: f for f in r_fields[6:]}
    steps: list[_Step] = []
    for field in w_fields[6:]:
        branches = _simple_type(field["type"])
        if branches is None:
            return None
        target = r_extras.get(field["name"])
        if target is not None and _strip(target["type"]) != _strip(field["type"]):
            return None  # a promoted or reshaped type: leave resolution to fastavro
        read = _extra_reader(branches, isinstance(field["type"], list))
        steps.append((field["name"] if target is not None else None, read))
    written = {f["name"] for f in w_fields[6:]}
    defaults: dict[str, Any] = {}
    for name, field in r_extras.items():
        if name in written:
            continue
        if "default" not in field or _simple_type(field["type"]) is None:
            return None
        defaults[name] = field["default"]
    return methods, tuple(steps), defaults


def build_decoder(  # noqa: PLR0915 - the decoder below is unrolled on purpose
    writer: Mapping[str, Any], reader: Mapping[str, Any] | None = None
) -> Decoder | None:
    """A fast decoder of records written with ``writer`` and read as ``reader``; or None.

    ``reader`` ``None`` means the same schema. ``None`` is returned for shapes this module
    does not specialise: the generic resolving reader handles those.
    """
    plan = _decode_plan(writer, writer if reader is None else reader)
    if plan is None:
        return None
    methods, extra_steps, defaults = plan
    trusted = PaymentEvent._trusted
    epoch, micro, read_long = _EPOCH, _MICROSECOND, _read_long

    def decode(data: bytes) -> PaymentEvent | None:  # noqa: PLR0912 - one straight pass
        # Slices never fail on short data, so every length is checked against the end.
        last = len(data)
        if data[_HEADER_SIZE] != 2 * _UUID_TEXT:
            return None
        pos = _HEADER_SIZE + 1 + _UUID_TEXT
        payment_id = uuid_from_text(data[_HEADER_SIZE + 1 : pos])
        # Lengths and the enum index nearly always fit one byte (an even one: zigzag of a
        # non-negative number); anything else goes through the full varint reader.
        size = data[pos]
        if size < 0x80 and not size & 1:
            start = pos + 1
            size >>= 1
        else:
            size, start = read_long(data, pos)
        pos = start + size
        if size < 0 or pos > last:
            return None
        user = data[start:pos].decode()
        size = data[pos]
        if size < 0x80 and not size & 1:
            start = pos + 1
            size >>= 1
        else:
            size, start = read_long(data, pos)
        pos = start + size
        if size < 0 or pos > last:
            return None
        units = int.from_bytes(data[start:pos], "big", signed=True)
        size = data[pos]
        if size < 0x80 and not size & 1:
            start = pos + 1
            size >>= 1
        else:
            size, start = read_long(data, pos)
        pos = start + size
        if size < 0 or pos > last:
            return None
        currency = data[start:pos].decode()
        index = data[pos]
        if index < 0x80 and not index & 1:
            index >>= 1
            pos += 1
        else:
            index, pos = read_long(data, pos)
        micros, pos = read_long(data, pos)
        if not 0 <= index < len(methods):
            return None
        method = methods[index]
        if method is None:
            return None
        extras = dict(defaults) if defaults else {}
        for name, read in extra_steps:
            value, pos = read(data, pos)
            if name is not None:
                extras[name] = value
        if pos != last:
            return None
        return trusted(
            payment_id, user, units, _SCALE, currency, method, epoch + micros * micro, extras
        )

    return decode
