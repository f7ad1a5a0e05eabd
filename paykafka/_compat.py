"""Offline schema compatibility: Avro's resolution rules, the registry's levels, our policy.

Why our own checker when the registry already has one: the registry's verdict may come without
reasons (Apicurio's ``/compatibility`` answers only ``is_compatible``), it needs a network, and
it knows nothing about payments. This module answers the same question from schema texts alone,
so ``paykafka schema check --offline`` and the tests of ``schemas/history/`` need no registry,
and every answer names the field and the rule it breaks.

Four layers:

* :func:`schema_errors` says why a schema is not valid Avro at all, as Java Avro (and so the
  registry) would refuse it: a union listing one type twice or holding a union, a named type
  defined twice, a default that does not fit its field's type (a union's default fits its
  first branch), recursively. Stricter than Java on purpose where Java only checks that a
  default is *text*: an enum default must be one of the symbols, a fixed default must have the
  fixed's size.
* :func:`read_breaks` applies the Avro specification's schema resolution: can data written with
  one schema be read with another (promotions, record fields by name with defaults and
  aliases, enum defaults, unions, fixed sizes, arrays, maps, named types)?
* :func:`check` applies a compatibility level (``BACKWARD``: the new schema reads the old ones'
  data; ``FORWARD``: old readers read the new data; ``FULL``: both; ``*_TRANSITIVE``: against
  every earlier version instead of the latest only; ``NONE``: nothing) and phrases each break
  as an old -> new change with its consequence.
* :func:`policy_breaks` adds what Avro allows but a payment history cannot afford: removing an
  enum symbol (old events would silently read as the default), inserting or reordering symbols
  (they are append-only) and changing a logical type or a
  decimal's precision or scale (the same bytes would mean another amount or instant), also
  when the base type changes by a legal promotion (``bytes`` decimal -> ``string``).

:func:`diff` lists field-level changes between two schemas for people, compatible or not.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from paykafka._errors import ConfigError, SchemaError

__all__ = [
    "INVALID",
    "LEVELS",
    "POLICY",
    "Break",
    "Change",
    "CompatReport",
    "Direction",
    "Problem",
    "check",
    "describe",
    "diff",
    "join_labels",
    "level_is_weaker",
    "policy_breaks",
    "read_breaks",
    "schema_errors",
]

LEVELS = (
    "NONE",
    "BACKWARD",
    "FORWARD",
    "FULL",
    "BACKWARD_TRANSITIVE",
    "FORWARD_TRANSITIVE",
    "FULL_TRANSITIVE",
)

#: The ``rule`` of problems that come from paykafka's policy rather than Avro's rules.
POLICY = "paykafka policy"
#: The ``rule`` of problems that make the candidate no valid Avro schema at all.
INVALID = "invalid schema"

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
# writer type -> reader types that can read it (Avro specification, "Schema Resolution"),
# less one on purpose: the spec lets a string reader read bytes, but bytes need not be UTF-8
# and Python readers (fastavro) fail on the first one that is not; Java would read garbage.
_PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
}

Node = dict[str, Any]
_Schema = str | Mapping[str, Any] | Sequence[Any]


# -- canonical form ------------------------------------------------------------------------------


def _fullname(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _short(fullname: str) -> str:
    return fullname.rsplit(".", 1)[-1]


class _Canon:
    """Turns schema JSON into nodes where every named reference is the defining node itself.

    Sharing the node (not a copy) keeps recursive types finite and lets the resolver stop on a
    pair of records it is already comparing.
    """

    def __init__(self) -> None:
        self.names: dict[str, Node] = {}
        #: Full names defined more than once (Java Avro refuses to redefine a name).
        self.redefined: list[str] = []

    def node(self, schema: Any, namespace: str | None) -> Node:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return {"type": schema}
            for candidate in (_fullname(schema, namespace), schema):
                if candidate in self.names:
                    return self.names[candidate]
            raise SchemaError(f"unknown type name {schema!r}: define it before its first use")
        if isinstance(schema, list):
            return {"type": "union", "branches": [self.node(s, namespace) for s in schema]}
        if not isinstance(schema, Mapping):
            raise SchemaError(f"not an Avro schema: {schema!r}")
        kind = schema.get("type")
        if not isinstance(kind, str) or kind not in _PRIMITIVES | _NAMED | {"array", "map"}:
            # {"type": {...}} or {"type": "SomeNamedType"}: a wrapped reference.
            inner = self.node(kind, namespace)
            logical = schema.get("logicalType")
            return inner if logical is None else {**inner, "logicalType": logical}
        if kind in _PRIMITIVES:
            out = {"type": kind}
            for key in ("logicalType", "precision", "scale"):
                if key in schema:
                    out[key] = schema[key]
            return out
        if kind == "array":
            return {"type": "array", "items": self.node(schema["items"], namespace)}
        if kind == "map":
            return {"type": "map", "values": self.node(schema["values"], namespace)}
        return self._named(schema, namespace)

    def _named(self, schema: Mapping[str, Any], namespace: str | None) -> Node:
        kind = "record" if schema["type"] == "error" else str(schema["type"])
        name = str(schema["name"])
        own_ns = schema.get("namespace", namespace)
        full = _fullname(name, own_ns)
        inner_ns = full.rsplit(".", 1)[0] if "." in full else None
        aliases = {_fullname(str(a), inner_ns) for a in schema.get("aliases", [])}
        node: Node = {"type": kind, "name": full, "aliases": aliases}
        if full in self.names:
            self.redefined.append(full)
        self.names[full] = node
        if kind == "enum":
            node["symbols"] = list(schema["symbols"])
            node["default"] = schema.get("default")
        elif kind == "fixed":
            node["size"] = int(schema["size"])
            for key in ("logicalType", "precision", "scale"):
                if key in schema:
                    node[key] = schema[key]
        else:
            node["fields"] = [
                {
                    "name": str(f["name"]),
                    # Declared order: Avro tries the name, then the aliases in this order.
                    "aliases": list(dict.fromkeys(str(a) for a in f.get("aliases", []))),
                    "has_default": "default" in f,
                    "default": f.get("default"),
                    "type": self.node(f["type"], inner_ns),
                }
                for f in schema["fields"]
            ]
        return node


def _parse(schema: _Schema) -> tuple[Node, list[tuple[str, str]]]:
    """The canonical node of ``schema`` and why it is not valid Avro (``(path, reason)``)."""
    raw = json.loads(schema) if isinstance(schema, str) else schema
    canon = _Canon()
    node = canon.node(raw, None)
    errors = [
        ("", f"defines the named type {name} more than once; define it once, then refer to it")
        for name in dict.fromkeys(canon.redefined)
    ]
    return node, errors + _invalid(node)


def _canonical(schema: _Schema) -> Node:
    return _parse(schema)[0]


def _valid(schema: _Schema, role: str) -> Node:
    """The canonical node, or :class:`SchemaError` naming the first reason it is invalid."""
    node, errors = _parse(schema)
    if errors:
        path, reason = errors[0]
        where = f"field `{path}`" if path else "the record"
        raise SchemaError(f"the {role} schema is not valid Avro: {where} {reason}")
    return node


# -- validity ------------------------------------------------------------------------------------

_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)


def _invalid(root: Node) -> list[tuple[str, str]]:
    """Unions with a type twice or a union inside, and defaults that do not fit their type."""
    out: list[tuple[str, str]] = []
    seen: set[int] = set()

    def walk(node: Node, path: str) -> None:
        kind = node["type"]
        if kind == "union":
            out.extend((path, why) for why in _union_errors(node))
            for branch in node["branches"]:
                walk(branch, path)
        elif kind in ("array", "map"):
            inner = "items" if kind == "array" else "values"
            walk(node[inner], f"{path}[]" if kind == "array" else f"{path}{{}}")
        elif kind == "enum":
            symbols = node["symbols"]
            twice = [sym for sym in dict.fromkeys(symbols) if symbols.count(sym) > 1]
            if twice:
                out.append((path, f"has enum {_short(node['name'])} listing {twice[0]} twice"))
            default = node.get("default")
            if default is not None and default not in node["symbols"]:
                why = f"has enum {_short(node['name'])} whose default {default!r} is no symbol"
                out.append((path, why))
        elif kind == "record" and id(node) not in seen:
            seen.add(id(node))
            out.extend(_field_errors(node, path))
            for f in node["fields"]:
                walk(f["type"], _join(path, f["name"]))

    walk(root, "")
    return out


def _union_errors(union: Node) -> list[str]:
    out: list[str] = []
    keys: list[str] = []
    for branch in union["branches"]:
        if branch["type"] == "union":
            out.append("has a union directly inside a union, which Avro forbids")
            continue
        key = branch["name"] if branch["type"] in _NAMED else branch["type"]
        if key in keys:
            out.append(
                f"has a union that lists {key} twice ({describe(union)}); a union may hold "
                "each type, and each named type, only once"
            )
        keys.append(key)
    return out


def _field_errors(record: Node, path: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    names = [f["name"] for f in record["fields"]]
    for name in dict.fromkeys(n for n in names if names.count(n) > 1):
        out.append((_join(path, name), "is declared twice in the same record"))
    claimed: dict[str, str] = {}
    for f in record["fields"]:
        for alias in f["aliases"]:
            # Readers would hand one writer field to two fields: Java's checker passes it,
            # Java's and fastavro's readers then leave one of them without a value.
            other = alias if alias in names and alias != f["name"] else claimed.get(alias)
            if other is not None and other != f["name"]:
                clash = (
                    f"has the alias `{alias}`, which field `{other}` of the same record "
                    "already answers to; a writer's field may be read by one field only"
                )
                out.append((_join(path, f["name"]), clash))
            claimed.setdefault(alias, f["name"])
    for f in record["fields"]:
        why = _default_error(f["type"], f["default"]) if f["has_default"] else None
        if why is not None:
            default = json.dumps(f["default"])
            out.append((_join(path, f["name"]), f"has an invalid default {default}: {why}"))
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# JSON default checks of the types whose default is one JSON value: (accepts, what it must be).
_SCALAR_DEFAULTS: Mapping[str, tuple[Any, str]] = {
    "null": (lambda v: v is None, "null"),
    "boolean": (lambda v: isinstance(v, bool), "a boolean"),
    "int": (lambda v: _is_int(v) and _INT_RANGE[0] <= v <= _INT_RANGE[1], "an int in range"),
    "long": (lambda v: _is_int(v) and _LONG_RANGE[0] <= v <= _LONG_RANGE[1], "a long in range"),
    "float": (lambda v: _is_int(v) or isinstance(v, float), "a number"),
    "double": (lambda v: _is_int(v) or isinstance(v, float), "a number"),
    "bytes": (lambda v: isinstance(v, str), "a JSON string"),
    "string": (lambda v: isinstance(v, str), "a JSON string"),
}


def _default_error(node: Node, value: Any) -> str | None:
    """Why ``value`` (JSON) is no valid default for ``node``; ``None`` when it is."""
    kind = node["type"]
    if kind in _SCALAR_DEFAULTS:
        accepts, must = _SCALAR_DEFAULTS[kind]
        return None if accepts(value) else f"{json.dumps(value)} is not {must} ({describe(node)})"
    if kind == "union":
        first = node["branches"][0]
        why = _default_error(first, value)
        if why is None:
            return None
        return f"{why}, and a default must fit the first branch of a union; put its type first"
    if kind == "enum":
        ok = value in node["symbols"]
        return None if ok else f"{json.dumps(value)} is not a symbol of {_short(node['name'])}"
    if kind == "fixed":
        ok = isinstance(value, str) and len(value) == node["size"]
        size = len(value) if isinstance(value, str) else "no"
        return None if ok else f"{size} characters where {describe(node)} needs {node['size']}"
    if kind == "array":
        if not isinstance(value, list):
            return f"not a JSON array ({describe(node)})"
        return next((w for w in (_default_error(node["items"], v) for v in value) if w), None)
    if kind == "map":
        if not isinstance(value, dict):
            return f"not a JSON object ({describe(node)})"
        found = (_default_error(node["values"], v) for v in value.values())
        return next((w for w in found if w), None)
    return _record_default_error(node, value)


def _record_default_error(node: Node, value: Any) -> str | None:
    name = _short(node["name"])
    if not isinstance(value, dict):
        return f"not a JSON object (record {name})"
    for f in node["fields"]:
        if f["name"] in value:
            why = _default_error(f["type"], value[f["name"]])
            if why is not None:
                return f"field `{f['name']}` of record {name}: {why}"
        elif not f["has_default"]:
            return f"record {name} needs field `{f['name']}`, which it lacks and has no default"
    return None


def schema_errors(schema: _Schema) -> list[Problem]:
    """Why ``schema`` is no valid Avro schema (empty: it is), one problem per reason."""
    return [_invalid_problem(path, reason) for path, reason in _parse(schema)[1]]


def _invalid_problem(path: str, reason: str) -> Problem:
    return Problem(
        path=path,
        change=reason,
        consequences=("Avro and the registry refuse such a schema; fix it before checking",),
        rule=INVALID,
    )


def describe(node: Node) -> str:
    """A type as people write it: ``string``, ``bytes (decimal 18,4)``, ``[null, string]``."""
    kind = node["type"]
    if kind == "union":
        return "[" + ", ".join(describe(b) for b in node["branches"]) + "]"
    if kind == "array":
        return f"array<{describe(node['items'])}>"
    if kind == "map":
        return f"map<{describe(node['values'])}>"
    if kind in _NAMED:
        return f"{kind} {_short(node['name'])}"
    logical = node.get("logicalType")
    if logical == "decimal":
        return f"{kind} (decimal {node.get('precision')},{node.get('scale', 0)})"
    if logical:
        return f"{kind} ({logical})"
    return str(kind)


# -- Avro resolution -----------------------------------------------------------------------------


class _Kind(enum.Enum):
    TYPE = "type"
    NO_DEFAULT = "no_default"
    ENUM_SYMBOLS = "enum_symbols"
    NAME = "name"
    SIZE = "size"
    AMBIGUOUS = "ambiguous"
    #: bytes read as string: legal in the spec, refused by us (see _PROMOTIONS).
    TEXT = "text"


@attrs.frozen
class Break:
    """One reason data written with ``writer`` cannot be read with ``reader``, at ``path``."""

    path: str
    kind: _Kind
    reader: str = ""
    writer: str = ""
    #: Enum symbols the reader lacks; for an ambiguous field, the writer fields it matches.
    symbols: tuple[str, ...] = ()
    #: For a field missing on one side: same-typed fields only on the other side (renames?).
    renamed_from: tuple[str, ...] = ()


def _names_match(reader: Node, writer: Node) -> bool:
    """Java Avro's rule: the same unqualified name, or the writer's *full* name among the
    reader's aliases (each alias qualified by the namespace of the type declaring it)."""
    if _short(reader["name"]) == _short(writer["name"]):
        return True
    return writer["name"] in reader["aliases"]


def _writer_fields(reader_field: Node, writer: Node) -> list[Node]:
    """The writer fields ``reader_field`` matches by its name, then its aliases in order."""
    by_name = {f["name"]: f for f in writer["fields"]}
    names = dict.fromkeys((reader_field["name"], *reader_field["aliases"]))
    return [by_name[n] for n in names if n in by_name]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Resolver:
    def __init__(self) -> None:
        self._seen: set[tuple[int, int]] = set()

    def breaks(self, reader: Node, writer: Node, path: str) -> list[Break]:
        rkind, wkind = reader["type"], writer["type"]
        if wkind == "union":
            for branch in writer["branches"]:
                found = self.breaks(reader, branch, path)
                if found:
                    return [self._whole(found, reader, writer, path)]
            return []
        if rkind == "union":
            # The first reader branch that can read the writer's type is used; any will do here.
            tried = [self.breaks(b, writer, path) for b in reader["branches"]]
            if any(not t for t in tried):
                return []
            # Only our bytes-as-string rule in the way of some branch: say that, not "type".
            text = next((t for t in tried if all(b.kind is _Kind.TEXT for b in t)), tried[0])
            return [self._whole(text, reader, writer, path)]
        if (rkind, wkind) == ("string", "bytes"):
            return [Break(path, _Kind.TEXT, reader=describe(reader), writer=describe(writer))]
        if rkind == wkind:
            return self._same_kind(reader, writer, path)
        if rkind in _PROMOTIONS.get(wkind, frozenset()):
            return []
        return [Break(path, _Kind.TYPE, reader=describe(reader), writer=describe(writer))]

    @staticmethod
    def _whole(found: list[Break], reader: Node, writer: Node, path: str) -> Break:
        """One break for a union that cannot be read: bytes-as-string when that is all that is
        in the way (so the reason is kept), else a type change."""
        text = all(b.kind is _Kind.TEXT for b in found)
        kind = _Kind.TEXT if text else _Kind.TYPE
        return Break(path, kind, reader=describe(reader), writer=describe(writer))

    def _same_kind(self, reader: Node, writer: Node, path: str) -> list[Break]:
        kind = reader["type"]
        if kind == "array":
            return self.breaks(reader["items"], writer["items"], f"{path}[]")
        if kind == "map":
            return self.breaks(reader["values"], writer["values"], f"{path}{{}}")
        if kind not in _NAMED:
            return []
        if not _names_match(reader, writer):
            return [
                Break(
                    path,
                    _Kind.NAME,
                    reader=f"{kind} {reader['name']}",
                    writer=f"{kind} {writer['name']}",
                )
            ]
        if kind == "fixed":
            if reader["size"] != writer["size"]:
                return [
                    Break(path, _Kind.SIZE, reader=str(reader["size"]), writer=str(writer["size"]))
                ]
            return []
        if kind == "enum":
            unknown = tuple(s for s in writer["symbols"] if s not in reader["symbols"])
            if unknown and reader.get("default") is None:
                return [Break(path, _Kind.ENUM_SYMBOLS, reader=reader["name"], symbols=unknown)]
            return []
        return self._record(reader, writer, path)

    def _record(self, reader: Node, writer: Node, path: str) -> list[Break]:
        pair = (id(reader), id(writer))
        if pair in self._seen:
            return []  # already being compared further up: recursive types resolve lazily
        self._seen.add(pair)
        try:
            return self._fields(reader, writer, path)
        finally:
            self._seen.discard(pair)

    def _fields(self, reader: Node, writer: Node, path: str) -> list[Break]:
        matched: set[str] = set()
        out: list[Break] = []
        for field in reader["fields"]:
            candidates = _writer_fields(field, writer)
            here = _join(path, field["name"])
            if len(candidates) > 1:
                # Java Avro refuses to guess ("matches multiple fields in writer schema").
                matched.update(f["name"] for f in candidates)
                names = tuple(f["name"] for f in candidates)
                out.append(Break(here, _Kind.AMBIGUOUS, symbols=names))
            elif candidates:
                (found,) = candidates
                matched.add(found["name"])
                out.extend(self.breaks(field["type"], found["type"], here))
            elif not field["has_default"]:
                out.append(Break(here, _Kind.NO_DEFAULT, reader=describe(field["type"])))
        # A reader field with no writer counterpart next to an unmatched writer field of the same
        # type is most often a rename: say so, since an alias is the fix.
        unmatched = [f for f in writer["fields"] if f["name"] not in matched]
        for i, b in enumerate(out):
            if b.kind is _Kind.NO_DEFAULT:
                same = tuple(
                    _join(path, f["name"]) for f in unmatched if describe(f["type"]) == b.reader
                )
                out[i] = attrs.evolve(b, renamed_from=same)
        return out


def read_breaks(reader: _Schema, writer: _Schema) -> list[Break]:
    """Why data written with ``writer`` cannot be read with ``reader`` (empty: it can).

    Raises :class:`SchemaError` when either is no valid Avro schema (see :func:`schema_errors`).
    """
    return _Resolver().breaks(_valid(reader, "reader"), _valid(writer, "writer"), "")


# -- paykafka policy -----------------------------------------------------------------------------


@attrs.frozen
class _PolicyBreak:
    path: str
    change: str
    why: str


def _policy(old: Node, new: Node, path: str, seen: set[tuple[int, int]]) -> list[_PolicyBreak]:
    okind, nkind = old["type"], new["type"]
    if okind == "union" or nkind == "union":
        obranches = old["branches"] if okind == "union" else [old]
        nbranches = new["branches"] if nkind == "union" else [new]
        out: list[_PolicyBreak] = []
        for ob in obranches:
            twin = _twin(ob, nbranches)
            if twin is not None:
                out.extend(_policy(ob, twin, path, seen))
        return out
    out = []
    old_logical, new_logical = old.get("logicalType"), new.get("logicalType")
    if old_logical != new_logical and _readable_scalar(okind, nkind):
        # The same underlying type, or one Avro promotes either way (bytes <-> string,
        # int -> long...): the bytes still resolve, their meaning does not. An unrelated type
        # is an Avro break already.
        out.append(
            _PolicyBreak(
                path,
                f"changed logical type {old_logical or 'none'} -> {new_logical or 'none'}",
                "the same stored value would mean something else to old and new readers",
            )
        )
    elif old_logical == new_logical == "decimal" and (
        old.get("precision") != new.get("precision") or old.get("scale", 0) != new.get("scale", 0)
    ):
        out.append(
            _PolicyBreak(
                path,
                f"changed decimal({old.get('precision')},{old.get('scale', 0)}) -> "
                f"decimal({new.get('precision')},{new.get('scale', 0)})",
                "the same bytes would be read as a different amount",
            )
        )
    if okind != nkind:
        return out
    if okind == "array":
        return out + _policy(old["items"], new["items"], f"{path}[]", seen)
    if okind == "map":
        return out + _policy(old["values"], new["values"], f"{path}{{}}", seen)
    if okind == "enum":
        return out + _enum_policy(old, new, path)
    if okind == "record":
        out.extend(_record_policy(old, new, path, seen))
    return out


def _enum_policy(old: Node, new: Node, path: str) -> list[_PolicyBreak]:
    removed = [s for s in old["symbols"] if s not in new["symbols"]]
    if not removed:
        return _enum_order(old, new, path)
    fallback = new.get("default")
    why = (
        f"payments already written with them would be read as `{fallback}`, silently "
        "rewriting history"
        if fallback
        else "payments already written with them could not be read at all"
    )
    return [
        _PolicyBreak(
            path,
            f"removed enum symbol(s) {', '.join(removed)} from {_short(new['name'])}",
            why + "; keep the symbol and mark it deprecated in the doc instead",
        )
    ]


def _enum_order(old: Node, new: Node, path: str) -> list[_PolicyBreak]:
    """Symbols are append-only. Avro resolves enums by name, so readers cope; but ordinals
    leak out of Avro (enums generated for other languages, ordinals stored in databases or
    sorted on), and the order is what tells a reviewer which symbols are new."""
    symbols, before = new["symbols"], old["symbols"]
    if symbols[: len(before)] == before:
        return []
    name = _short(new["name"])
    inserted = [s for s in symbols[: len(before)] if s not in before]
    if inserted:
        change = f"inserted enum symbol(s) {', '.join(inserted)} before existing ones of {name}"
    else:
        change = f"reordered enum symbols of {name}"
    return [
        _PolicyBreak(
            path,
            change,
            "symbols are append-only: every existing symbol keeps its position, new ones go at "
            "the end (ordinals outlive Avro in generated code and stored data)",
        )
    ]


def _record_policy(
    old: Node, new: Node, path: str, seen: set[tuple[int, int]]
) -> list[_PolicyBreak]:
    pair = (id(old), id(new))
    if pair in seen:
        return []
    seen.add(pair)
    out: list[_PolicyBreak] = []
    matched: set[str] = set()
    added: list[Node] = []
    for nf in new["fields"]:
        candidates = _writer_fields(nf, old)
        if len(candidates) > 1:
            matched.update(f["name"] for f in candidates)  # an Avro break, said there
            continue
        of = candidates[0] if candidates else None
        if of is None:
            added.append(nf)
        else:
            matched.add(of["name"])
            out.extend(_policy(of["type"], nf["type"], _join(path, nf["name"]), seen))
    removed = [f for f in old["fields"] if f["name"] not in matched]
    for nf in added:
        # With defaults on both sides Avro calls this compatible, yet every value written under
        # the old name would silently read as the default: a rename that needs an alias.
        twin = next((f for f in removed if describe(f["type"]) == describe(nf["type"])), None)
        if twin is not None and nf["has_default"]:
            out.append(
                _PolicyBreak(
                    _join(path, nf["name"]),
                    f"replaced `{twin['name']}` of the same type without an alias (a rename?)",
                    f"the new schema would read every `{twin['name']}` already written as its "
                    f'default; add "aliases": ["{twin["name"]}"] if it is a rename, or add the '
                    "new field without removing the old one in the same version",
                )
            )
    return out


def _readable_scalar(okind: str, nkind: str) -> bool:
    scalars = _PRIMITIVES | {"fixed"}
    if okind not in scalars or nkind not in scalars:
        return False
    return (
        okind == nkind
        or nkind in _PROMOTIONS.get(okind, frozenset())
        or okind in _PROMOTIONS.get(nkind, frozenset())
    )


def _same_branch(a: Node, b: Node) -> bool:
    if a["type"] != b["type"]:
        return False
    return a["type"] not in _NAMED or _names_match(b, a)


def _twin(old: Node, branches: Sequence[Node]) -> Node | None:
    """The new union branch that old values of ``old`` resolve to: the same type, else the
    first one Avro would promote them to."""
    same = next((b for b in branches if _same_branch(old, b)), None)
    if same is not None:
        return same
    return next((b for b in branches if _readable_scalar(old["type"], b["type"])), None)


def policy_breaks(old: _Schema, new: _Schema) -> list[Problem]:
    """Changes from ``old`` to ``new`` that Avro allows but paykafka never does (see module)."""
    return [_policy_problem(b) for b in _policy(_canonical(old), _canonical(new), "", set())]


def _policy_problem(b: _PolicyBreak, against: str = "") -> Problem:
    return Problem(
        path=b.path,
        change=b.change,
        consequences=(b.why,),
        rule=POLICY,
        against=(against,) if against else (),
    )


# -- levels --------------------------------------------------------------------------------------


class Direction(enum.Enum):
    """Which way data must flow between the new schema and an old one."""

    #: The new schema reads data written with the old one (consumers upgrade first).
    BACKWARD = "backward"
    #: Readers of the old schema read data written with the new one (producers upgrade first).
    FORWARD = "forward"


def _directions(level: str) -> tuple[Direction, ...]:
    base = level.removesuffix("_TRANSITIVE")
    return {
        "NONE": (),
        "BACKWARD": (Direction.BACKWARD,),
        "FORWARD": (Direction.FORWARD,),
        "FULL": (Direction.BACKWARD, Direction.FORWARD),
    }[base]


def level_is_weaker(level: str, than: str) -> bool:
    """Whether ``level`` promises strictly less than ``than`` (``NONE`` is weaker than all).

    ``BACKWARD`` and ``FORWARD`` promise different things, so neither is weaker than the other.
    """
    mine, theirs = set(_directions(level)), set(_directions(than))
    if not mine:
        return bool(theirs)
    mine_all, theirs_all = level.endswith("_TRANSITIVE"), than.endswith("_TRANSITIVE")
    return mine <= theirs and mine_all <= theirs_all and (mine, mine_all) != (theirs, theirs_all)


@attrs.frozen
class Problem:
    """One way a candidate breaks the rule, phrased as an old -> new change and its effect."""

    #: Dotted field path (``amount``, ``address.city``, ``items[]``); empty for the record.
    path: str
    #: What changed, old -> new: ``changed type bytes -> double``.
    change: str
    #: Who can no longer read what.
    consequences: tuple[str, ...]
    #: ``BACKWARD`` / ``FORWARD`` for Avro rules, ``paykafka policy`` for our own.
    rule: str
    #: Which earlier versions (labels) this is about; ``change`` and ``consequences`` name
    #: them through the ``{old}`` placeholder, so one problem can speak for several versions.
    against: tuple[str, ...] = ()

    def __str__(self) -> str:
        subject = f"field `{self.path}`" if self.path else "the record"
        text = f"{subject} {self.change}: {'; '.join(self.consequences)}"
        return text.replace(_OLD, join_labels(self.against))


_OLD = "{old}"


def join_labels(labels: Sequence[str]) -> str:
    """``version 1 and version 2`` reads worse than ``versions 1, 2``: say the latter."""
    if len(labels) > 1 and all(label.startswith("version ") for label in labels):
        return "versions " + ", ".join(label.removeprefix("version ") for label in labels)
    return " and ".join([", ".join(labels[:-1]), labels[-1]] if len(labels) > 1 else labels)


@attrs.frozen
class CompatReport:
    """The verdict on a candidate schema against earlier versions under one level."""

    level: str
    #: Labels of the versions the candidate was checked against, oldest first.
    checked_against: tuple[str, ...]
    problems: tuple[Problem, ...] = ()

    @property
    def compatible(self) -> bool:
        """No problem under the level and the policy."""
        return not self.problems

    def messages(self) -> tuple[str, ...]:
        """One human sentence per problem."""
        return tuple(dict.fromkeys(str(p) for p in self.problems))


def _phrase_missing(b: Break, new_reads: bool) -> tuple[str, str]:
    if new_reads:
        change = "was added without a default"
        hint = ' (give it a default, e.g. type ["null", ...] with "default": null)'
    else:
        change = f"was removed, and {_OLD} has no default for it"
        hint = " (keep the field, or it must have had a default)"
    if b.renamed_from:
        names = ", ".join(f"`{n}`" for n in b.renamed_from)
        if new_reads:
            hint = f' (renamed from {names}? keep the old name in "aliases")'
        else:
            hint = f" (renamed to {names}? a rename needs an alias and a default)"
    return change, hint


_TEXT_HINT = (
    " (bytes read as a string: Avro allows it, paykafka does not, since bytes need not be UTF-8 "
    "text and Python readers fail on the first that is not)"
)


def _phrase(b: Break, direction: Direction, label: str) -> Problem:
    new_reads = direction is Direction.BACKWARD
    old_t, new_t = (b.writer, b.reader) if new_reads else (b.reader, b.writer)
    if new_reads:
        effect = f"the new schema cannot read events written with {_OLD}"
    else:
        effect = f"readers of {_OLD} cannot read events written with the new schema"
    hint = ""
    if b.kind in (_Kind.TYPE, _Kind.TEXT):
        change = f"changed type {old_t} -> {new_t}"
        hint = _TEXT_HINT if b.kind is _Kind.TEXT else ""
    elif b.kind is _Kind.NO_DEFAULT:
        change, hint = _phrase_missing(b, new_reads)
    elif b.kind is _Kind.ENUM_SYMBOLS:
        symbols = ", ".join(b.symbols)
        if new_reads:
            change = f"enum {_short(b.reader)} no longer has symbol(s) {symbols} and no default"
        else:
            change = (
                f"enum {_short(b.reader)} gained symbol(s) {symbols}, but the enum in {_OLD} has "
                "no default to read them as"
            )
    elif b.kind is _Kind.NAME:
        change = f"renamed {old_t} -> {new_t} without an alias"
        hint = (
            ' (add the old full name to "aliases"; an alias without a namespace is in the '
            "namespace of the type that declares it)"
        )
    elif b.kind is _Kind.AMBIGUOUS:
        names = ", ".join(f"`{n}`" for n in b.symbols)
        if new_reads:
            change = f"matches more than one field of {_OLD} ({names}) by its name and aliases"
        else:
            change = (
                f"of {_OLD} matches more than one field of the new schema ({names}) by its name "
                "and aliases"
            )
        effect = "Avro refuses to guess which one to read"
        hint = "; drop the alias, or rename one of the fields"
    else:
        change = f"changed fixed size {old_t} -> {new_t}"
    return Problem(
        path=b.path,
        change=change,
        consequences=(effect + hint,),
        rule=direction.name,
        against=(label,),
    )


def check(
    candidate: _Schema,
    previous: Sequence[tuple[str, _Schema]],
    level: str,
    *,
    policy: bool = True,
) -> CompatReport:
    """Check ``candidate`` against ``previous`` (``(label, schema)``, oldest first) under
    ``level``, plus paykafka's policy unless ``policy`` is off or the level is ``NONE``.

    A candidate that is no valid Avro schema is refused at every level, ``NONE`` included,
    with the reasons from :func:`schema_errors`."""
    if level not in LEVELS:
        raise ConfigError(f"unknown compatibility level {level!r}; use one of {', '.join(LEVELS)}")
    directions = _directions(level)
    against = list(previous) if level.endswith("_TRANSITIVE") else list(previous[-1:])
    labels = tuple(label for label, _ in against)
    new, errors = _parse(candidate)
    if errors:
        # Not a schema at all: no level makes it usable, and resolving it would mislead.
        return CompatReport(level, labels, tuple(_invalid_problem(*e) for e in errors))
    if not directions:
        return CompatReport(level, labels)
    problems: list[Problem] = []
    for label, schema in against:
        old = _canonical(schema)
        for direction in directions:
            reader, writer = (new, old) if direction is Direction.BACKWARD else (old, new)
            for b in _Resolver().breaks(reader, writer, ""):
                problems.append(_phrase(b, direction, label))
        if policy:
            problems.extend(_policy_problem(b, label) for b in _policy(old, new, "", set()))
    return CompatReport(level, labels, tuple(_merge(problems)))


def _merge(problems: Iterable[Problem]) -> list[Problem]:
    """Say each break once: first both directions of one change against one version (a type
    change under FULL breaks both ways), then one change with the same effects everywhere
    against all the versions it concerns."""
    per_version: dict[tuple[str, str, tuple[str, ...]], Problem] = {}
    for p in problems:
        key = (p.path, p.change, p.against)
        first = per_version.get(key)
        if first is None:
            per_version[key] = p
            continue
        per_version[key] = attrs.evolve(
            first,
            consequences=first.consequences
            + tuple(c for c in p.consequences if c not in first.consequences),
            rule=first.rule if first.rule == p.rule else f"{first.rule}+{p.rule}",
        )
    merged: dict[tuple[str, str, tuple[str, ...], str], Problem] = {}
    for p in per_version.values():
        key2 = (p.path, p.change, p.consequences, p.rule)
        first = merged.get(key2)
        merged[key2] = (
            p if first is None else attrs.evolve(first, against=first.against + p.against)
        )
    return list(merged.values())


# -- diff ----------------------------------------------------------------------------------------


@attrs.frozen
class Change:
    """One field-level difference between two schemas."""

    path: str
    #: ``added``, ``removed``, ``type``, ``default``, ``doc``, ``symbols``, ``aliases``.
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path or '(record)'}: {self.detail}"


def _raw_fields(schema: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(f["name"]): f for f in schema.get("fields", [])}


def diff(old: _Schema, new: _Schema) -> list[Change]:
    """Top-level field changes from ``old`` to ``new``, in the new schema's field order."""
    o = json.loads(old) if isinstance(old, str) else old
    n = json.loads(new) if isinstance(new, str) else new
    if not isinstance(o, Mapping) or not isinstance(n, Mapping):
        raise SchemaError("diff compares two record schemas; pass .avsc records")
    ofields, nfields = _raw_fields(o), _raw_fields(n)
    canon_o, canon_n = _Canon(), _Canon()
    onode, nnode = canon_o.node(o, None), canon_n.node(n, None)
    otypes = {f["name"]: f["type"] for f in onode.get("fields", [])}
    ntypes = {f["name"]: f["type"] for f in nnode.get("fields", [])}
    out: list[Change] = []
    renamed: set[str] = set()
    for name, nf in nfields.items():
        of = ofields.get(name)
        if of is None:
            alias = next((a for a in nf.get("aliases", []) if a in ofields), None)
            if alias is not None:
                renamed.add(alias)
                out.append(Change(name, "renamed", f"renamed from `{alias}` (alias kept)"))
                of = ofields[alias]
                otypes[name] = otypes[alias]
            else:
                default = (
                    f", default {json.dumps(nf['default'])}" if "default" in nf else ", no default"
                )
                out.append(Change(name, "added", f"added: {describe(ntypes[name])}{default}"))
                continue
        out.extend(_field_changes(name, of, nf, otypes[name], ntypes[name]))
    out.extend(
        Change(name, "removed", f"removed (was {describe(otypes[name])})")
        for name in ofields
        if name not in nfields and name not in renamed
    )
    return out


def _field_changes(
    name: str, of: Mapping[str, Any], nf: Mapping[str, Any], ot: Node, nt: Node
) -> list[Change]:
    out: list[Change] = []
    if describe(ot) != describe(nt):
        out.append(Change(name, "type", f"type {describe(ot)} -> {describe(nt)}"))
    if ot["type"] == "enum" and nt["type"] == "enum":
        added = [s for s in nt["symbols"] if s not in ot["symbols"]]
        removed = [s for s in ot["symbols"] if s not in nt["symbols"]]
        if added:
            out.append(Change(name, "symbols", f"enum symbol(s) added: {', '.join(added)}"))
        if removed:
            out.append(Change(name, "symbols", f"enum symbol(s) removed: {', '.join(removed)}"))
        if ot.get("default") != nt.get("default"):
            out.append(
                Change(name, "default", f"enum default {ot.get('default')} -> {nt.get('default')}")
            )
    if ("default" in of) != ("default" in nf) or of.get("default") != nf.get("default"):
        before = json.dumps(of["default"]) if "default" in of else "none"
        after = json.dumps(nf["default"]) if "default" in nf else "none"
        out.append(Change(name, "default", f"default {before} -> {after}"))
    if set(of.get("aliases", [])) != set(nf.get("aliases", [])):
        out.append(
            Change(name, "aliases", f"aliases {of.get('aliases', [])} -> {nf.get('aliases', [])}")
        )
    if of.get("doc") != nf.get("doc"):
        out.append(Change(name, "doc", "doc changed"))
    return out
