"""Payment events to and from the Confluent wire format.

The wire format is what any standard Confluent deserializer reads: magic byte ``0``, the
schema id as a 4-byte big-endian integer, then the Avro body written with that schema. The
serializer is bound to one schema id, so framing is a constant prefix. The deserializer
resolves each writer schema (by id) onto our reader schema once, then reuses it, so events
written with older or newer compatible schemas still arrive as ``PaymentEvent``.

Every decode failure is a :class:`~paykafka.DecodeError` whose ``reason`` separates bad data
(never retriable) from a registry outage (retriable): the tracker dead-letters the first kind
and waits out the second.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import threading
from collections.abc import Callable
from typing import Any

import fastavro

from paykafka._codec import Decoder, build_decoder, build_encoder
from paykafka._errors import (
    DecodeError,
    DecodeReason,
    EncodeError,
    RegistryUnavailableError,
    SchemaNotFoundError,
    ValidationError,
)
from paykafka._event import PaymentEvent
from paykafka._schema import PaymentSchema

__all__ = ["MAGIC_BYTE", "EventDeserializer", "EventSerializer", "frame_header", "split_frame"]

MAGIC_BYTE = 0
log = logging.getLogger(__name__)

_HEADER = struct.Struct(">bI")
_HEADER_SIZE = _HEADER.size
_MAX_SCHEMA_ID = 2**31 - 1
# What the specialised codec may raise on bytes or values it does not expect: the record then
# takes the generic path, which gives it its proper result or error.
_FAST_PATH_MISSES = (ValueError, IndexError, OverflowError, TypeError, AttributeError)


def _missed(what: str, exc: Exception) -> None:
    # DEBUG only: garbage bytes raise here by design; the count is what shows a codec bug.
    log.debug("fast %s path raised %s: %s; taking the generic path", what, type(exc).__name__, exc)


def frame_header(schema_id: int) -> bytes:
    """The 5-byte Confluent prefix for ``schema_id``."""
    if not 0 <= schema_id <= _MAX_SCHEMA_ID:
        raise EncodeError(f"schema id {schema_id} is outside 0..{_MAX_SCHEMA_ID}")
    return _HEADER.pack(MAGIC_BYTE, schema_id)


def split_frame(data: bytes | None) -> tuple[int, memoryview]:
    """Split a framed record into (schema id, Avro body), or raise ``DecodeError``."""
    if data is None:
        raise DecodeError(
            DecodeReason.NOT_CONFLUENT_FRAMING, "the record has no value (a tombstone?)"
        )
    if len(data) < _HEADER_SIZE or data[0] != MAGIC_BYTE:
        seen = f"{len(data)} bytes starting with 0x{data[:1].hex()}" if data else "an empty value"
        raise DecodeError(
            DecodeReason.NOT_CONFLUENT_FRAMING,
            f"not Confluent wire format: {seen} (expected magic byte 0x00 and a 4-byte schema id)",
        )
    _magic, schema_id = _HEADER.unpack_from(data)
    return schema_id, memoryview(data)[_HEADER_SIZE:]


class EventSerializer:
    """Writes ``PaymentEvent``s with one schema, prefixed with that schema's id.

    Events go through the specialised encoder of :mod:`paykafka._codec` when the schema has a
    shape it knows (the same bytes, several times faster); anything else through fastavro.
    ``fast_path_misses`` counts events the specialised encoder had but did not write (it
    raised or gave up): the result is still right, but on valid events it should stay 0, and
    a count that grows points at a codec bug rather than at the data.
    """

    def __init__(self, schema: PaymentSchema, schema_id: int) -> None:
        self._header = frame_header(schema_id)
        self._parsed = schema.parsed
        self.schema_id = schema_id
        self._fast = build_encoder(schema.parsed, self._header)
        self.fast_path_misses = 0

    def __call__(self, event: PaymentEvent) -> bytes:
        fast = self._fast
        if fast is not None:
            try:
                data = fast(event)
            except _FAST_PATH_MISSES as exc:
                _missed("encode", exc)
                data = None
            if data is not None:
                return data
            self.fast_path_misses += 1
        return self._generic(event)

    def _generic(self, event: PaymentEvent) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header)
        try:
            fastavro.schemaless_writer(buf, self._parsed, event.to_dict())
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(
                f"payment {event.payment_id} cannot be written with schema id {self.schema_id}: "
                f"{exc}; does the schema file match PaymentEvent?"
            ) from exc
        return buf.getvalue()


# (writer parsed, reader parsed or None when identical)
_Resolved = tuple[dict[str, Any], dict[str, Any] | None]


class EventDeserializer:
    """Reads framed records into ``PaymentEvent``s, resolving writer schemas onto ours.

    ``schema_for_id`` returns the writer schema text for an id (normally
    ``RegistryClient.schema_by_id``); each id is resolved once and cached, together with the
    specialised decoder of :mod:`paykafka._codec` when the writer schema has a shape it knows.
    ``fast_path_misses`` counts records that decoder had but handed to the generic path (it
    raised, or the record was not clearly valid): expected for bad records, 0 for valid ones.
    """

    def __init__(self, reader: PaymentSchema, schema_for_id: Callable[[int], str]) -> None:
        self._reader = reader
        self._reader_raw = json.loads(reader.text)
        self._schema_for_id = schema_for_id
        self._resolved: dict[int, _Resolved] = {}
        # Keyed by the four id bytes of the frame, so the hot path never unpacks the header.
        self._fast: dict[bytes, tuple[int, Decoder]] = {}
        self._lock = threading.Lock()
        self.fast_path_misses = 0

    def __call__(self, data: bytes | None) -> PaymentEvent:
        return self.decode(data)[1]

    def decode(self, data: bytes | None) -> tuple[int, PaymentEvent]:
        """Decode one record; returns (writer schema id, event)."""
        if type(data) is bytes and len(data) > _HEADER_SIZE and data[0] == MAGIC_BYTE:
            fast = self._fast.get(data[1:_HEADER_SIZE])
            if fast is not None:
                try:
                    event = fast[1](data)
                except _FAST_PATH_MISSES as exc:
                    _missed("decode", exc)
                    event = None
                if event is not None:
                    return fast[0], event
                self.fast_path_misses += 1
        schema_id, record = self.decode_record(data)
        try:
            return schema_id, PaymentEvent.from_dict(record)
        except ValidationError as exc:
            raise DecodeError(
                DecodeReason.INVALID_EVENT,
                f"record written with schema id {schema_id} is not a valid payment: {exc}",
                schema_id=schema_id,
            ) from exc

    def decode_record(self, data: bytes | None) -> tuple[int, dict[str, Any]]:
        """Decode one record to its Avro dict in our reader schema's shape."""
        schema_id, body = split_frame(data)
        writer, reader = self._resolve(schema_id)
        stream = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(stream, writer, reader)
        except fastavro.read.SchemaResolutionError as exc:
            raise DecodeError(
                DecodeReason.WRONG_SCHEMA,
                f"schema id {schema_id} cannot be read as {self._reader.fullname}: {exc}",
                schema_id=schema_id,
            ) from exc
        except Exception as exc:
            # fastavro raises many types on garbage (EOFError, ValueError, IndexError,
            # UnicodeDecodeError, OverflowError...): all of them mean the bytes are corrupt.
            raise DecodeError(
                DecodeReason.CORRUPT_AVRO,
                f"corrupt Avro body for schema id {schema_id}: {type(exc).__name__}: {exc}",
                schema_id=schema_id,
            ) from exc
        if stream.tell() != len(body):
            raise DecodeError(
                DecodeReason.CORRUPT_AVRO,
                f"{len(body) - stream.tell()} unread bytes after the record for schema id "
                f"{schema_id}: the body was not written with that schema",
                schema_id=schema_id,
            )
        if not isinstance(record, dict):
            raise DecodeError(
                DecodeReason.WRONG_SCHEMA,
                f"schema id {schema_id} is not a record schema",
                schema_id=schema_id,
            )
        return schema_id, record

    def _resolve(self, schema_id: int) -> _Resolved:
        found = self._resolved.get(schema_id)
        if found is not None:
            return found
        try:
            text = self._schema_for_id(schema_id)
        except SchemaNotFoundError as exc:
            raise DecodeError(
                DecodeReason.UNKNOWN_SCHEMA_ID,
                f"schema id {schema_id} is not in the registry: {exc}",
                schema_id=schema_id,
            ) from exc
        except RegistryUnavailableError as exc:
            raise DecodeError(
                DecodeReason.REGISTRY_UNAVAILABLE,
                f"cannot fetch writer schema id {schema_id}: {exc}",
                schema_id=schema_id,
                retriable=True,
            ) from exc
        try:
            raw = json.loads(text)
            writer = fastavro.parse_schema(raw)
        except Exception as exc:
            raise DecodeError(
                DecodeReason.WRONG_SCHEMA,
                f"schema id {schema_id} is not an Avro schema paykafka can read: {exc}",
                schema_id=schema_id,
            ) from exc
        if not isinstance(writer, dict) or writer.get("type") != "record":
            raise DecodeError(
                DecodeReason.WRONG_SCHEMA,
                f"schema id {schema_id} is not a record schema",
                schema_id=schema_id,
            )
        # Equal as JSON values (key order aside): then no resolution is needed at all.
        same = raw == self._reader_raw
        resolved: _Resolved = (writer, None if same else self._reader.parsed)
        fast = build_decoder(writer, resolved[1])
        with self._lock:
            self._resolved[schema_id] = resolved
            if fast is not None:
                self._fast[frame_header(schema_id)[1:]] = (schema_id, fast)
        return resolved
