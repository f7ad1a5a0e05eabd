"""The Avro contract: finding, reading and parsing ``payment.avsc``.

The file users edit is ``schemas/payment.avsc`` at the top of the repository; wheels carry the
same file as ``paykafka/_schemas/payment.avsc``. Parsing happens once per file and is cached,
because every producer and tracker in a process shares the same contract.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import fastavro

from paykafka._errors import SchemaError
from paykafka._event import _AVRO, PaymentEvent, PaymentMethod

__all__ = [
    "PaymentSchema",
    "default_schema_path",
    "disagreement",
    "load_schema",
    "parse_schema_text",
    "require_agreement",
]

_SCHEMA_FILE = "payment.avsc"


def default_schema_path() -> Path:
    """Where the packaged contract lives: inside the wheel, else the source checkout's file."""
    packaged = resources.files("paykafka") / "_schemas" / _SCHEMA_FILE
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / "schemas" / _SCHEMA_FILE
    if checkout.is_file():
        return checkout
    raise SchemaError(
        f"the packaged {_SCHEMA_FILE} is missing (looked in {packaged} and {checkout}); "
        "reinstall paykafka or pass schema_path / PAYKAFKA_SCHEMA_PATH"
    )


@attrs.frozen
class PaymentSchema:
    """A parsed payment schema: its text as registered, and what readers and writers need."""

    #: The schema as JSON text, compact: what is sent to the registry.
    text: str
    #: fastavro's parsed form, ready for ``schemaless_writer`` / ``schemaless_reader``.
    parsed: dict[str, Any] = attrs.field(repr=False, eq=False)
    #: Field names in schema order.
    field_names: tuple[str, ...]
    #: Symbols of the ``method`` enum, in order.
    method_symbols: tuple[str, ...]
    #: Where it was read from, for messages (``None`` when built from text).
    source: str | None = attrs.field(default=None, eq=False)

    @property
    def fullname(self) -> str:
        """The record's full name, e.g. ``io.paykafka.Payment``."""
        name: str = self.parsed["name"]
        return name

    def field(self, name: str) -> dict[str, Any]:
        """The raw JSON definition of one field."""
        for f in json.loads(self.text)["fields"]:
            if f["name"] == name:
                found: dict[str, Any] = f
                return found
        raise KeyError(name)


def parse_schema_text(text: str, source: str | None = None) -> PaymentSchema:
    """Parse and check a payment schema given as JSON text."""
    where = source or "schema text"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{where} is not valid JSON: {exc}; fix the file") from None
    try:
        parsed = fastavro.parse_schema(raw, _write_hint=True)
    except Exception as exc:
        raise SchemaError(f"{where} is not a valid Avro schema: {exc}") from exc
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise SchemaError(f"{where} must define an Avro record at the top level")
    fields = raw.get("fields", [])
    names = tuple(f["name"] for f in fields)
    methods: tuple[str, ...] = ()
    for f in fields:
        ftype = f["type"]
        if f["name"] == "method" and isinstance(ftype, dict) and ftype.get("type") == "enum":
            methods = tuple(ftype["symbols"])
    required = {"payment_id", "user", "amount", "currency", "method", "timestamp"}
    missing = required - set(names)
    if missing:
        raise SchemaError(
            f"{where} lacks field(s) {', '.join(sorted(missing))} that every payment event has"
        )
    compact = json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
    return PaymentSchema(
        text=compact, parsed=parsed, field_names=names, method_symbols=methods, source=source
    )


@functools.lru_cache(maxsize=32)
def _load_cached(path: Path, mtime_ns: int) -> PaymentSchema:
    del mtime_ns  # part of the cache key only: an edited file is read again
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"cannot read schema file {path}: {exc.strerror}") from None
    return parse_schema_text(text, source=str(path))


def load_schema(path: str | Path | None = None) -> PaymentSchema:
    """Load the payment schema from ``path``, or the packaged contract when ``None``."""
    target = Path(path) if path is not None else default_schema_path()
    try:
        mtime = target.stat().st_mtime_ns
    except OSError:
        raise SchemaError(
            f"schema file {target} does not exist; check schema_path / PAYKAFKA_SCHEMA_PATH"
        ) from None
    return _load_cached(target.resolve(), mtime)


# -- the schema in use and the code --------------------------------------------------------------


def disagreement(schema: PaymentSchema) -> str | None:
    """Why this code's ``PaymentEvent`` / ``PaymentMethod`` cannot work with ``schema``.

    Why at start: code older than its schema file (``PAYKAFKA_SCHEMA_PATH`` pointed at a newer
    one) would otherwise start fine, then drop the fields it does not know and dead-letter real
    payments with a method it does not know. A schema *older* than the code is fine: the class
    may have optional fields and trailing methods the schema lacks (it writes and reads the
    older version). ``None`` means they agree.
    """
    where = schema.source or "the schema"
    known = {a.name: a for a in attrs.fields(PaymentEvent)}
    unknown = [name for name in schema.field_names if name not in known]
    if unknown:
        return (
            f"{where} has field(s) {', '.join(unknown)} that PaymentEvent lacks (their values "
            "would be lost): add them to PaymentEvent (README: how to add a field), or run "
            "with the schema this code was released with"
        )
    required = [
        name
        for name, a in known.items()
        if a.default is attrs.NOTHING and name not in schema.field_names
    ]
    if required:
        return f"{where} lacks PaymentEvent's required field(s) {', '.join(required)}"
    for name in schema.field_names:
        avro = known[name].metadata.get(_AVRO)
        ftype = schema.field(name)["type"]
        if avro is not None and not (
            isinstance(ftype, list)
            and ftype[:1] == ["null"]
            and len(ftype) == 2
            and ftype[1] in avro
        ):
            return (
                f"{where} gives field {name} the type {json.dumps(ftype)}, where PaymentEvent "
                f'declares it optional of ["null", {" or ".join(avro)}]'
            )
    members = tuple(m.value for m in PaymentMethod)
    new = [s for s in schema.method_symbols if s not in members]
    if new:
        return (
            f"{where} has payment method(s) {', '.join(new)} that paykafka.PaymentMethod lacks "
            "(events with them could not be read): add them to PaymentMethod at the same "
            "position, or run with the schema this code was released with"
        )
    prefix = members[: len(schema.method_symbols)]
    if prefix != schema.method_symbols:
        pairs = zip(prefix, schema.method_symbols, strict=True)
        at = next(i for i, (a, b) in enumerate(pairs) if a != b)
        return (
            f"PaymentMethod lists {members[at]!r} at position {at + 1} where {where} has "
            f"{schema.method_symbols[at]!r}: keep PaymentMethod in the schema's order"
        )
    return None


def require_agreement(schema: PaymentSchema) -> None:
    """Raise :class:`SchemaError` with :func:`disagreement`'s one line, if any."""
    why = disagreement(schema)
    if why is not None:
        raise SchemaError(f"refusing to start: {why}")
