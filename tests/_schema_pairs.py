"""Generated schema evolutions for the differential tests of the schema gate (issue 12).

A case is a short history of released versions and a candidate, each an edit of the one
before, starting from ``schemas/payment.avsc`` (read from the file, so a user's own evolution
is covered too) or from small records that exercise what the payment schema lacks: nested and
recursive records, arrays, maps, fixed, enums without a default, namespaces.

Three oracles judge a case: paykafka's checker, the registry on the running stack, and the
runtime truth (fastavro writes generated data with one schema and reads it with the other).
The helpers here are the shared parts: the strategies, the runtime read, and the sorting of a
disagreement into the deliberate differences documented in docs/schema-evolution.md.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import fastavro.utils
from hypothesis import strategies as st

from paykafka._compat import INVALID, POLICY, Problem

PAYMENT = json.loads(
    (Path(__file__).resolve().parents[1] / "schemas" / "payment.avsc").read_text(encoding="utf-8")
)

SMALL: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "t.shop",
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "label", "type": "string"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "counts", "type": {"type": "map", "values": "int"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b", "c"]}},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {
            "name": "address",
            "type": {
                "type": "record",
                "name": "Address",
                "fields": [
                    {"name": "city", "type": "string"},
                    {"name": "zip", "type": ["null", "int"], "default": None},
                ],
            },
        },
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
        },
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}

LINKED: dict[str, Any] = {
    "type": "record",
    "name": "Node",
    "namespace": "t.list",
    "fields": [
        {"name": "value", "type": "int"},
        {"name": "next", "type": ["null", "Node"], "default": None},
    ],
}

BASES = (PAYMENT, SMALL, LINKED)

# Field types an edit may switch to: every promotion, demotion and logical type of the spec.
TYPES: tuple[Any, ...] = (
    "int",
    "long",
    "float",
    "double",
    "string",
    "bytes",
    "boolean",
    ["null", "int"],
    ["null", "string"],
    ["null", "long"],
    ["string", "null"],
    {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4},
    {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2},
    {"type": "long", "logicalType": "timestamp-micros"},
    {"type": "long", "logicalType": "timestamp-millis"},
    {"type": "int", "logicalType": "date"},
    {"type": "int", "logicalType": "time-millis"},
    {"type": "long", "logicalType": "time-micros"},
    {"type": "string", "logicalType": "uuid"},
    {"type": "array", "items": "int"},
    {"type": "array", "items": "long"},
    {"type": "map", "values": "string"},
    {"type": "map", "values": "bytes"},
)


def _base(type_: Any) -> Any:
    return type_["type"] if isinstance(type_, dict) and "logicalType" in type_ else type_


def _neighbours(type_: Any) -> tuple[Any, ...]:
    """Types an edit of ``type_`` most likely goes to: its promotions, demotions and logical
    variants (half the time), else any type (so rare edits still happen)."""
    base = _base(type_)
    close = tuple(t for t in TYPES if isinstance(base, str) and _base(t) in _FAMILY.get(base, ()))
    return close + close + TYPES if close else TYPES


_FAMILY: dict[str, tuple[str, ...]] = {
    "int": ("int", "long", "float", "double"),
    "long": ("int", "long", "float", "double"),
    "float": ("int", "long", "float", "double"),
    "double": ("long", "float", "double"),
    "string": ("string", "bytes"),
    "bytes": ("string", "bytes"),
}

DEFAULTS: dict[str, Any] = {
    "int": 0,
    "long": 0,
    "float": 0.5,
    "double": 0.5,
    "string": "",
    "bytes": "",
    "boolean": False,
    "null": None,
    "array": [],
    "map": {},
}


def default_for(type_: Any) -> Any:
    """A valid default for ``type_`` (a union's: for its first branch)."""
    if isinstance(type_, list):
        return default_for(type_[0])
    if isinstance(type_, dict):
        if type_["type"] == "enum":
            return type_["symbols"][0]
        if type_["type"] == "fixed":
            return "x" * type_["size"]
        if type_["type"] == "record":
            return {f["name"]: default_for(f["type"]) for f in type_["fields"]}
        return default_for(type_["type"])
    return DEFAULTS.get(type_)


Edit = Callable[[dict[str, Any]], None]


def _named(schema: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Every inline definition of ``kind`` (enum, record, fixed) in ``schema``, outermost first."""
    out: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for n in node:
                walk(n)
        elif isinstance(node, dict):
            if node.get("type") == kind:
                out.append(node)
            for key in ("fields", "items", "values"):
                if key in node:
                    walk(node[key])
            if "fields" not in node and isinstance(node.get("type"), dict | list):
                walk(node["type"])
            for f in node.get("fields", []):
                walk(f["type"])

    walk(schema)
    return out


@st.composite
def edits(draw: st.DrawFn, schema: dict[str, Any]) -> tuple[str, Edit]:
    """One edit of ``schema``: a label for reports and the function that applies it."""
    records = _named(schema, "record")
    record = draw(st.sampled_from(records))
    fields = record["fields"]
    index = draw(st.integers(0, max(len(fields) - 1, 0)))
    kinds = ["add", "retype", "rename", "optional", "alias_clash", "namespace", "bad_default"]
    if len(fields) > 1:
        kinds.append("remove")
    if _named(schema, "enum"):
        kinds += ["enum_append", "enum_insert", "enum_remove", "enum_default", "named_rename"]
    if _named(schema, "fixed"):
        kinds += ["fixed_size", "named_rename"]
    kind = draw(st.sampled_from(kinds))
    with_default = draw(st.booleans())
    field = fields[index] if fields else None
    pool = _neighbours(field["type"]) if field is not None else TYPES
    new_type = copy.deepcopy(draw(st.sampled_from(pool)))
    alias_style = draw(st.sampled_from(["none", "short", "full", "other_ns"]))

    def apply(target: dict[str, Any]) -> None:
        # Edits address the copy by position, so one drawn edit applies to any deep copy.
        rec = _named(target, "record")[records.index(record)]
        fs = rec["fields"]
        f = fs[index] if fs else None
        if kind == "add":
            added: dict[str, Any] = {"name": f"f{len(fs)}", "type": new_type}
            if with_default:
                added["default"] = default_for(new_type)
            fs.append(added)
        elif kind == "remove":
            del fs[index]
        elif kind == "retype" and f is not None:
            f["type"] = new_type
            f.pop("default", None)
            if with_default:
                f["default"] = default_for(new_type)
        elif kind == "rename" and f is not None:
            old = f["name"]
            f["name"] = f"{old}_renamed"
            if with_default:
                f["aliases"] = [old]
        elif kind == "optional" and f is not None:
            if isinstance(f["type"], list) and "null" in f["type"]:
                f["type"] = next(t for t in f["type"] if t != "null")
                f.pop("default", None)
            else:
                f["type"] = ["null", f["type"]]
                f["default"] = None
        elif kind == "alias_clash" and f is not None and len(fs) > 1:
            other = fs[(index + 1) % len(fs)]["name"]
            f["aliases"] = [*f.get("aliases", []), other]
        elif kind == "namespace":
            target["namespace"] = "t.moved"
        elif kind == "bad_default" and f is not None:
            f["default"] = {} if not isinstance(f["type"], str) else [1]
        elif kind.startswith("enum_"):
            enum = _named(target, "enum")[0]
            symbols = enum["symbols"]
            if kind == "enum_append":
                symbols.append(f"added{len(symbols)}")
            elif kind == "enum_insert":
                symbols.insert(1, f"inserted{len(symbols)}")
            elif kind == "enum_remove" and len(symbols) > 2:
                gone = symbols.pop(1)
                if enum.get("default") == gone:
                    enum["default"] = symbols[0]
            elif kind == "enum_default":
                if "default" in enum:
                    del enum["default"]
                else:
                    enum["default"] = symbols[-1]
        elif kind == "fixed_size":
            _named(target, "fixed")[0]["size"] += 1
        elif kind == "named_rename":
            named = (_named(target, "enum") or _named(target, "fixed"))[0]
            old_name = named["name"]
            named["name"] = f"{old_name}V2"
            space = _space(target, named)
            alias = {
                "none": None,
                "short": old_name,
                "full": f"{space}.{old_name}" if space else old_name,
                "other_ns": f"elsewhere.{old_name}",
            }[alias_style]
            if alias is not None:
                named["aliases"] = [alias]

    label = f"{kind}:{field['name'] if field else '-'}"
    if kind in ("add", "retype"):
        label += f"->{json.dumps(new_type)}{' default' if with_default else ''}"
    if kind == "named_rename":
        label += f" alias={alias_style}"
    return label, apply


def _space(schema: dict[str, Any], named: dict[str, Any]) -> str | None:
    """The namespace ``named`` is declared in (own, else the top record's)."""
    return named.get("namespace") or schema.get("namespace")


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """``(history, candidate, labels)``: one or two released versions and a candidate."""
    base = copy.deepcopy(draw(st.sampled_from(BASES)))
    history = [base]
    labels: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        label, apply = draw(edits(history[-1]))
        nxt = copy.deepcopy(history[-1])
        apply(nxt)
        labels.append(label)
        history.append(nxt)
    candidate = history.pop()
    del history[:-2]  # at most two released versions: enough for transitive to differ
    return history, candidate, labels


# -- runtime truth -------------------------------------------------------------------------------


def _plain(schema: Any) -> Any:
    """``schema`` without logical types: the runtime oracle judges the encoding only (logical
    types are policy), and random longs are not all valid timestamps."""
    if isinstance(schema, list):
        return [_plain(s) for s in schema]
    if isinstance(schema, dict):
        return {k: _plain(v) for k, v in schema.items() if k not in ("logicalType",)}
    return schema


def read_fails(writer: dict[str, Any], reader: dict[str, Any], count: int = 5) -> str | None:
    """Why fastavro cannot read data written with ``writer`` using ``reader`` (None: it can)."""
    w = fastavro.parse_schema(_plain(writer))
    r = fastavro.parse_schema(_plain(reader))
    try:
        records = list(fastavro.utils.generate_many(w, count))
    except RecursionError:
        return None  # a record that requires itself has no finite value: nothing to read
    for record in records:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, w, record)
        buffer.seek(0)
        try:
            fastavro.schemaless_reader(buffer, w, r)
        except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
            return f"{type(exc).__name__}: {exc}"
    return None


# -- deliberate differences ----------------------------------------------------------------------


def deliberate(problem: Problem) -> str | None:
    """The documented reason ours refuses what the registry accepts, or None (unexplained).

    Each category is a row of the table in docs/schema-evolution.md.
    """
    text = str(problem)
    if problem.rule == POLICY:
        if "removed enum symbol" in text:
            return "policy: enum symbol removed"
        if "inserted enum symbol" in text or "reordered" in text:
            return "policy: enum symbols inserted or reordered"
        if "logical type" in text or "decimal(" in text:
            return "policy: logical type or decimal changed"
        if "without an alias" in text:
            return "policy: optional field replaced without an alias"
        return None
    if problem.rule == INVALID:
        if "is not a symbol of" in text or "characters where fixed" in text:
            return "invalid: enum/fixed default the registry does not check"
        if "already answers to" in text:
            return "invalid: an alias naming another field of the record"
        return None
    if "bytes need not be UTF-8" in text:
        return "avro: bytes read as string (fastavro needs UTF-8)"
    return None


def to_text(schema: dict[str, Any]) -> str:
    """The schema as the registry gets it."""
    return json.dumps(schema, separators=(",", ":"))
