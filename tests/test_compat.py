"""The offline checker: Avro resolution rules, level semantics, paykafka policy, diff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from paykafka import ConfigError, SchemaError
from paykafka._compat import (
    LEVELS,
    POLICY,
    Break,
    check,
    describe,
    diff,
    level_is_weaker,
    policy_breaks,
    read_breaks,
)


def record(*fields: dict[str, Any], name: str = "P", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(symbols: list[str], default: str | None = None, name: str = "E") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "enum", "name": name, "symbols": symbols}
    if default is not None:
        out["default"] = default
    return out


def kinds(breaks: list[Break]) -> list[tuple[str, str]]:
    return [(b.path, b.kind.value) for b in breaks]


def one(type_: Any) -> dict[str, Any]:
    return record(field("x", type_))


# -- Avro resolution ---------------------------------------------------------------------------


def test_identical_schemas_resolve() -> None:
    """A schema always reads its own data."""
    s = record(field("a", "string"), field("b", enum(["x", "y"])))
    assert read_breaks(s, s) == []


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
    ],
)
def test_promotions_are_readable(writer: str, reader: str) -> None:
    """Each promotion the Avro specification allows resolves without a break (bytes -> string
    aside: see the test below)."""
    assert read_breaks(one(reader), one(writer)) == []


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("long", "int"),
        ("double", "float"),
        ("float", "long"),
        ("double", "int"),
        ("string", "int"),
        ("boolean", "int"),
        ("null", "string"),
    ],
)
def test_demotions_and_unrelated_types_break(writer: str, reader: str) -> None:
    """Narrowing or unrelated primitives are a type break at the field's path."""
    assert kinds(read_breaks(one(reader), one(writer))) == [("x", "type")]


def test_reader_field_missing_from_writer_needs_a_default() -> None:
    """A field the writer lacks is filled from the reader's default, or breaks without one."""
    writer = record(field("a", "string"))
    with_default = record(field("a", "string"), field("b", ["null", "string"], default=None))
    without = record(field("a", "string"), field("b", "string"))
    assert read_breaks(with_default, writer) == []
    assert kinds(read_breaks(without, writer)) == [("b", "no_default")]


def test_writer_only_fields_are_skipped() -> None:
    """A reader ignores fields only the writer has."""
    assert (
        read_breaks(record(field("a", "int")), record(field("a", "int"), field("z", "int"))) == []
    )


def test_field_alias_matches_the_writers_old_name() -> None:
    """A reader field whose alias is the writer's field name reads that field."""
    writer = record(field("user", "string"))
    reader = record(field("payer", "string", aliases=["user"]))
    assert read_breaks(reader, writer) == []


def test_rename_without_alias_is_a_missing_field_with_a_rename_hint() -> None:
    """A renamed required field breaks, and the break points at the likely old name."""
    breaks = read_breaks(record(field("payer", "string")), record(field("user", "string")))
    assert kinds(breaks) == [("payer", "no_default")]
    assert breaks[0].renamed_from == ("user",)


def test_record_names_must_match_or_be_aliased() -> None:
    """Records resolve by name; an alias on the reader accepts the writer's old name."""
    writer = record(field("a", "int"), name="Old")
    assert kinds(read_breaks(record(field("a", "int"), name="New"), writer)) == [("", "name")]
    aliased = record(field("a", "int"), name="New", aliases=["Old"])
    assert read_breaks(aliased, writer) == []


def test_namespaced_names_compare_by_full_name_and_short_name() -> None:
    """A namespace change alone keeps the short name, which Avro resolves."""
    writer = record(field("a", "int"), name="P", namespace="io.old")
    reader = record(field("a", "int"), name="P", namespace="io.new")
    assert read_breaks(reader, writer) == []


def test_enum_unknown_symbol_uses_the_readers_default() -> None:
    """A symbol the reader lacks reads as its default; without a default it breaks."""
    writer = one(enum(["a", "b", "c"]))
    assert read_breaks(one(enum(["a", "b"], default="a")), writer) == []
    breaks = read_breaks(one(enum(["a", "b"])), writer)
    assert kinds(breaks) == [("x", "enum_symbols")]
    assert breaks[0].symbols == ("c",)


def test_enum_names_must_match() -> None:
    """Two enums of different names do not resolve."""
    assert kinds(read_breaks(one(enum(["a"], name="F")), one(enum(["a"], name="E")))) == [
        ("x", "name")
    ]


def test_union_writer_needs_every_branch_readable() -> None:
    """Each branch a writer union may hold must be readable by the reader."""
    assert kinds(read_breaks(one("string"), one(["null", "string"]))) == [("x", "type")]
    assert read_breaks(one(["null", "string"]), one(["null", "string"])) == []


def test_reader_union_accepts_a_matching_branch() -> None:
    """A plain writer type is read by the reader union's first matching branch."""
    assert read_breaks(one(["null", "string"]), one("string")) == []
    assert read_breaks(one(["null", "long"]), one("int")) == []
    assert kinds(read_breaks(one(["null", "string"]), one("int"))) == [("x", "type")]


def test_union_to_union_with_promotion() -> None:
    """Union branches resolve with promotions too."""
    assert read_breaks(one(["null", "long"]), one(["null", "int"])) == []
    assert kinds(read_breaks(one(["null", "int"]), one(["null", "long"]))) == [("x", "type")]


def test_fixed_needs_same_name_and_size() -> None:
    """A fixed of another size, or another name, is unreadable."""
    f16 = {"type": "fixed", "name": "Id", "size": 16}
    assert read_breaks(one(f16), one(f16)) == []
    assert kinds(read_breaks(one({**f16, "size": 8}), one(f16))) == [("x", "size")]
    assert kinds(read_breaks(one({**f16, "name": "Other"}), one(f16))) == [("x", "name")]


def test_arrays_and_maps_resolve_their_items_with_paths() -> None:
    """Items and values resolve recursively; a break names the element path."""
    assert (
        read_breaks(one({"type": "array", "items": "long"}), one({"type": "array", "items": "int"}))
        == []
    )
    assert kinds(
        read_breaks(
            one({"type": "array", "items": "int"}), one({"type": "array", "items": "string"})
        )
    ) == [("x[]", "type")]
    assert kinds(
        read_breaks(one({"type": "map", "values": "int"}), one({"type": "map", "values": "string"}))
    ) == [("x{}", "type")]
    assert kinds(
        read_breaks(one({"type": "array", "items": "int"}), one({"type": "map", "values": "int"}))
    ) == [("x", "type")]


def test_nested_records_report_dotted_paths() -> None:
    """A break inside a nested record names the full path."""
    inner_old = record(field("city", "string"), name="Address")
    inner_new = record(field("city", "int"), name="Address")
    assert kinds(read_breaks(one(inner_new), one(inner_old))) == [("x.city", "type")]


def test_named_types_are_resolved_by_reference() -> None:
    """A type defined once and referenced by (namespaced) name is checked where it is used."""

    def schema(money: str) -> dict[str, Any]:
        return record(
            field("price", record(field("v", money), name="Money")),
            field("fee", "Money"),
            name="P",
            namespace="io.x",
        )

    assert read_breaks(schema("long"), schema("int")) == []
    assert kinds(read_breaks(schema("int"), schema("string"))) == [
        ("price.v", "type"),
        ("fee.v", "type"),
    ]


def test_recursive_types_terminate() -> None:
    """A self-referencing record (a linked list) is checked without endless recursion."""

    def linked(value: str) -> dict[str, Any]:
        return record(field("value", value), field("next", ["null", "Node"]), name="Node")

    assert read_breaks(linked("long"), linked("int")) == []
    assert kinds(read_breaks(linked("int"), linked("string"))) == [("value", "type")]


def test_unknown_type_name_is_a_schema_error() -> None:
    """A reference to an undefined name says so instead of passing as compatible."""
    with pytest.raises(SchemaError, match="unknown type name 'Nope'"):
        read_breaks(one("Nope"), one("int"))


def test_describe_names_logical_types() -> None:
    """Types are described as people write them, including decimals and unions."""
    s = one(["null", {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4}])
    text = json.dumps(s)
    breaks = read_breaks(one("double"), text)
    assert breaks[0].writer == "[null, bytes (decimal 18,4)]"
    assert (
        describe({"type": "long", "logicalType": "timestamp-micros"}) == "long (timestamp-micros)"
    )


# -- levels --------------------------------------------------------------------------------------

V1 = record(field("a", "string"))
ADDED_REQUIRED = record(field("a", "string"), field("b", "int"))
ADDED_OPTIONAL = record(field("a", "string"), field("b", ["null", "int"], default=None))
REMOVED = record()


def test_none_accepts_anything() -> None:
    """NONE checks nothing, not even the policy."""
    assert check(record(field("a", "int")), [("v1", V1)], "NONE").compatible


@pytest.mark.parametrize(
    ("candidate", "level", "ok"),
    [
        (ADDED_REQUIRED, "BACKWARD", False),
        (ADDED_REQUIRED, "FORWARD", True),
        (ADDED_REQUIRED, "FULL", False),
        (REMOVED, "BACKWARD", True),
        (REMOVED, "FORWARD", False),
        (REMOVED, "FULL", False),
        (ADDED_OPTIONAL, "BACKWARD", True),
        (ADDED_OPTIONAL, "FORWARD", True),
        (ADDED_OPTIONAL, "FULL", True),
    ],
)
def test_level_directions(candidate: dict[str, Any], level: str, ok: bool) -> None:
    """BACKWARD: new reads old; FORWARD: old reads new; FULL: both."""
    assert check(candidate, [("v1", V1)], level).compatible is ok


def test_transitive_levels_check_every_version_others_only_the_latest() -> None:
    """A break against version 1 only counts under *_TRANSITIVE."""
    history = [("version 1", V1), ("version 2", REMOVED)]
    candidate = record(field("a", "int", default=0))
    latest_only = check(candidate, history, "BACKWARD")
    assert latest_only.compatible
    assert latest_only.checked_against == ("version 2",)
    transitive = check(candidate, history, "BACKWARD_TRANSITIVE")
    assert not transitive.compatible
    assert transitive.checked_against == ("version 1", "version 2")
    assert transitive.messages() == (
        (
            "field `a` changed type string -> int: the new schema cannot read events written "
            "with version 1"
        ),
    )


def test_full_type_change_is_one_message_naming_both_effects() -> None:
    """Under FULL a type change is said once, with who cannot read what, both ways."""
    old = record(
        field("amount", {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4})
    )
    new = record(field("amount", "double"))
    (message,) = check(new, [("version 2", old)], "FULL").messages()
    assert message.startswith("field `amount` changed type bytes (decimal 18,4) -> double: ")
    assert "readers of version 2 cannot read events written with the new schema" in message
    assert "the new schema cannot read events written with version 2" in message


def test_one_break_against_several_versions_is_said_once() -> None:
    """The same break against versions 1 and 2 names both versions in one sentence."""
    report = check(ADDED_REQUIRED, [("version 1", V1), ("version 2", V1)], "BACKWARD_TRANSITIVE")
    assert report.messages() == (
        (
            "field `b` was added without a default: the new schema cannot read events written "
            'with versions 1, 2 (give it a default, e.g. type ["null", ...] with "default": null)'
        ),
    )


def test_removed_field_without_default_names_the_old_readers() -> None:
    """Removing a field the old schema had no default for breaks its readers."""
    (message,) = check(REMOVED, [("version 3", V1)], "FORWARD").messages()
    assert message.startswith("field `a` was removed, and version 3 has no default for it")


def test_added_enum_symbol_without_old_default_breaks_forward() -> None:
    """Old readers without an enum default cannot read a new symbol."""
    old = one(enum(["a"]))
    new = one(enum(["a", "b"]))
    (message,) = check(new, [("version 1", old)], "FORWARD").messages()
    assert "gained symbol(s) b" in message
    assert check(one(enum(["a", "b"], "a")), [("v1", one(enum(["a"], "a")))], "FULL").compatible


def test_rename_without_alias_suggests_the_alias() -> None:
    """A required field renamed without alias is explained as a probable rename."""
    report = check(
        record(field("payer", "string")), [("version 1", record(field("user", "string")))], "FULL"
    )
    text = " ".join(report.messages())
    assert 'renamed from `user`? keep the old name in "aliases"' in text
    assert check(
        record(field("payer", "string", aliases=["user"])),
        [("v1", record(field("user", "string")))],
        "BACKWARD",
    ).compatible


def test_unknown_level_is_a_config_error() -> None:
    """A misspelt level is refused, naming the valid ones."""
    with pytest.raises(ConfigError, match="FULL_TRANSITIVE"):
        check(V1, [("v1", V1)], "FULLY")


def test_levels_constant_lists_all_seven() -> None:
    """Every level the registry knows is accepted."""
    for level in LEVELS:
        assert check(V1, [("v1", V1)], level).compatible
    assert len(LEVELS) == 7


def test_no_previous_version_is_compatible() -> None:
    """A first version has nothing to break."""
    report = check(V1, [], "FULL_TRANSITIVE")
    assert report.compatible
    assert report.checked_against == ()


# -- policy --------------------------------------------------------------------------------------


def test_enum_symbol_removal_is_avro_compatible_but_refused_by_policy() -> None:
    """With a reader default Avro allows removing a symbol; paykafka refuses it."""
    old = one(enum(["a", "b", "other"], "other"))
    new = one(enum(["a", "other"], "other"))
    assert check(new, [("version 1", old)], "FULL", policy=False).compatible
    report = check(new, [("version 1", old)], "FULL")
    assert [p.rule for p in report.problems] == [POLICY]
    assert "removed enum symbol(s) b" in report.messages()[0]
    assert "read as `other`" in report.messages()[0]


def test_decimal_scale_change_is_refused() -> None:
    """The same bytes at another scale would be another amount."""
    old = one({"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4})
    new = one({"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2})
    (problem,) = policy_breaks(old, new)
    assert problem.change == "changed decimal(18,4) -> decimal(18,2)"


def test_logical_type_change_is_refused() -> None:
    """micros read as millis would move every timestamp; paykafka refuses it."""
    old = one({"type": "long", "logicalType": "timestamp-micros"})
    new = one({"type": "long", "logicalType": "timestamp-millis"})
    assert read_breaks(new, old) == []
    (problem,) = policy_breaks(old, new)
    assert "timestamp-micros -> timestamp-millis" in problem.change


def test_optional_field_rename_without_alias_is_refused() -> None:
    """Avro reads a renamed optional field as its default; paykafka calls it a lost value."""
    old = record(field("note", ["null", "string"], default=None))
    new = record(field("comment", ["null", "string"], default=None))
    assert check(new, [("v2", old)], "FULL", policy=False).compatible
    (problem,) = check(new, [("v2", old)], "FULL").problems
    assert problem.path == "comment"
    assert 'add "aliases": ["note"]' in str(problem)
    aliased = record(field("comment", ["null", "string"], default=None, aliases=["note"]))
    assert check(aliased, [("v2", old)], "FULL").compatible


def test_policy_follows_unions_and_nested_records() -> None:
    """Policy breaks are found inside optional and nested types too."""
    old = one(["null", record(field("m", enum(["a", "b"], "a")), name="In")])
    new = one(["null", record(field("m", enum(["a"], "a")), name="In")])
    (problem,) = policy_breaks(old, new)
    assert problem.path == "x.m"


def test_adding_symbols_and_optional_fields_passes_policy() -> None:
    """The safe evolutions are not flagged."""
    old = record(field("m", enum(["a", "other"], "other")))
    new = record(
        field("m", enum(["a", "other", "b"], "other")),
        field("note", ["null", "string"], default=None),
    )
    assert policy_breaks(old, new) == []
    assert check(new, [("v1", old)], "FULL_TRANSITIVE").compatible


# -- level ordering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "than", "weaker"),
    [
        ("NONE", "BACKWARD", True),
        ("NONE", "NONE", False),
        ("BACKWARD", "FULL", True),
        ("FORWARD", "FULL_TRANSITIVE", True),
        ("FULL", "FULL_TRANSITIVE", True),
        ("BACKWARD", "BACKWARD_TRANSITIVE", True),
        ("FULL_TRANSITIVE", "FULL", False),
        ("BACKWARD", "FORWARD", False),
        ("FULL", "BACKWARD_TRANSITIVE", False),
        ("BACKWARD_TRANSITIVE", "FULL", False),
        ("FULL_TRANSITIVE", "FULL_TRANSITIVE", False),
        ("FULL_TRANSITIVE", "NONE", False),
    ],
)
def test_level_is_weaker(level: str, than: str, weaker: bool) -> None:
    """A level is weaker only when it promises strictly less in every respect."""
    assert level_is_weaker(level, than) is weaker


# -- diff ----------------------------------------------------------------------------------------


def test_diff_lists_field_level_changes() -> None:
    """Added, removed, retyped fields and enum symbol changes each get a line."""
    old = record(field("a", "int"), field("gone", "string"), field("m", enum(["x", "y"], "x")))
    new = record(
        field("a", "long"),
        field("m", enum(["x", "z"], "x")),
        field("note", ["null", "string"], default=None),
    )
    lines = [str(c) for c in diff(old, new)]
    assert lines == [
        "a: type int -> long",
        "m: enum symbol(s) added: z",
        "m: enum symbol(s) removed: y",
        "note: added: [null, string], default null",
        "gone: removed (was string)",
    ]


def test_diff_follows_aliases_and_defaults() -> None:
    """A rename with an alias is one change, and default changes are shown."""
    old = record(field("user", "string"), field("n", "int", default=1))
    new = record(field("payer", "string", aliases=["user"]), field("n", "int", default=2))
    assert [str(c) for c in diff(old, new)] == [
        "payer: renamed from `user` (alias kept)",
        "payer: aliases [] -> ['user']",
        "n: default 1 -> 2",
    ]


def test_diff_of_identical_schemas_is_empty() -> None:
    """No changes, no lines."""
    assert diff(V1, json.dumps(V1)) == []


# -- the five classes of wrong verdicts (issue 12) -----------------------------------------------

PAYMENT_AVSC = Path(__file__).resolve().parents[1] / "schemas" / "payment.avsc"
DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (DECIMAL, "string"),
        ({"type": "long", "logicalType": "timestamp-micros"}, "double"),
        (
            {"type": "int", "logicalType": "date"},
            {"type": "long", "logicalType": "timestamp-millis"},
        ),
        (
            {"type": "int", "logicalType": "time-millis"},
            {"type": "long", "logicalType": "time-micros"},
        ),
        (["null", DECIMAL], ["null", "string"]),
    ],
)
def test_logical_type_change_riding_on_a_promotion_is_refused(old: Any, new: Any) -> None:
    """A legal Avro promotion does not make a changed logical type safe: policy refuses it."""
    report = check(one(new), [("version 1", one(old))], "FULL_TRANSITIVE")
    assert not report.compatible
    assert any(p.rule == POLICY and p.path == "x" for p in report.problems)
    assert any("changed logical type" in m and m.startswith("field `x`") for m in report.messages())


def test_payment_amount_as_string_is_refused_offline() -> None:
    """The README's promise: `amount` as plain string is refused at FULL_TRANSITIVE."""
    current = json.loads(PAYMENT_AVSC.read_text(encoding="utf-8"))
    edited = json.loads(json.dumps(current))
    for f in edited["fields"]:
        if f["name"] == "amount":
            f["type"] = "string"
    report = check(edited, [("version 1", current)], "FULL_TRANSITIVE")
    assert any(
        "field `amount` changed logical type decimal -> none" in m for m in report.messages()
    )


def test_aliases_are_full_names_in_the_declaring_types_namespace() -> None:
    """An alias in another namespace does not match; a short or full one in the same does."""

    def schema(method: dict[str, Any]) -> dict[str, Any]:
        return record(field("method", method), name="Payment", namespace="io.paykafka")

    old = schema(enum(["a", "b"], name="PaymentMethod"))
    other_ns = schema({**enum(["a", "b"], name="Method"), "aliases": ["other.PaymentMethod"]})
    assert kinds(read_breaks(other_ns, old)) == [("method", "name")]
    report = check(other_ns, [("version 1", old)], "BACKWARD")
    assert any(m.startswith("field `method` renamed") for m in report.messages())
    for alias in ("PaymentMethod", "io.paykafka.PaymentMethod"):
        same_ns = schema({**enum(["a", "b"], name="Method"), "aliases": [alias]})
        assert read_breaks(same_ns, old) == []


def test_a_reader_field_matching_two_writer_fields_is_a_break() -> None:
    """`y` with alias `x` when the writer has both `x` and `y` is ambiguous: Avro refuses it."""
    writer = record(field("x", "int"), field("y", "string"))
    reader = record(field("y", "string", aliases=["x"]))
    assert kinds(read_breaks(reader, writer)) == [("y", "ambiguous")]
    (message,) = check(reader, [("version 1", writer)], "BACKWARD").messages()
    assert message.startswith("field `y` matches more than one field of version 1 (`y`, `x`)")


def test_field_aliases_are_tried_in_declared_order() -> None:
    """The ambiguity names the writer fields in the order the reader declared its aliases."""
    writer = record(field("a", "int"), field("b", "int"))
    reader = record(field("c", "int", aliases=["b", "a"]))
    (b,) = read_breaks(reader, writer)
    assert b.symbols == ("b", "a")


@pytest.mark.parametrize(
    ("type_", "default", "reason"),
    [
        (record(field("a", "int"), name="In"), {}, "needs field `a`"),
        (["null", "string"], "text", "the first branch of a union"),
        (["string", "null"], None, "the first branch of a union"),
        ({"type": "array", "items": "int"}, ["one"], "is not an int"),
        ({"type": "map", "values": "long"}, {"k": 1.5}, "is not a long"),
        ("int", 2**40, "an int in range"),
        (enum(["a", "b"]), "c", "not a symbol"),
        ({"type": "fixed", "name": "F", "size": 2}, "abc", "3 characters where fixed"),
        (
            record(field("inner", record(field("a", "int"), name="Deep")), name="In"),
            {"inner": {}},
            "needs field `a`",
        ),
    ],
)
def test_defaults_must_be_valid_for_the_field_type(type_: Any, default: Any, reason: str) -> None:
    """A default is checked against its type recursively (a union's: its first branch)."""
    candidate = record(field("ok", "int"), field("x", type_, default=default))
    report = check(candidate, [("version 1", record(field("ok", "int")))], "NONE")
    assert not report.compatible
    (message,) = report.messages()
    assert message.startswith("field `x` has an invalid default")
    assert reason in message
    with pytest.raises(SchemaError, match="field `x` has an invalid default"):
        read_breaks(candidate, candidate)


def test_valid_defaults_pass() -> None:
    """Defaults of the right shape, including nested records filled from their own defaults."""
    inner = record(field("a", "int"), field("b", "string", default="z"), name="In")
    candidate = record(
        field("r", inner, default={"a": 1}),
        field("u", ["null", "string"], default=None),
        field("l", "long", default=2**40),
        field("d", "double", default=1),
        field("e", enum(["a", "b"]), default="b"),
        field("m", {"type": "map", "values": "int"}, default={"k": 1}),
    )
    assert check(candidate, [], "FULL_TRANSITIVE").compatible
    assert read_breaks(candidate, candidate) == []


@pytest.mark.parametrize(
    "union",
    [
        ["int", "int"],
        ["null", "string", {"type": "string", "logicalType": "uuid"}],
        [enum(["a"], name="E"), "E"],
        ["null", ["int", "string"]],
    ],
)
def test_unions_with_duplicate_types_are_invalid(union: list[Any]) -> None:
    """A union may hold each type (and each named type) once, and no union directly."""
    candidate = record(field("x", union))
    report = check(candidate, [], "NONE")
    assert not report.compatible
    (message,) = report.messages()
    assert message.startswith("field `x` ")
    assert "union" in message
    with pytest.raises(SchemaError, match="field `x`"):
        read_breaks(candidate, candidate)


def test_two_named_types_of_different_names_in_a_union_are_valid() -> None:
    """Named types are told apart by full name, so two enums may share a union."""
    candidate = record(field("x", [enum(["a"], name="E"), enum(["a"], name="F")]))
    assert check(candidate, [], "NONE").compatible


def test_bytes_read_as_string_is_refused_because_not_all_bytes_are_text() -> None:
    """fastavro cannot read non-UTF-8 bytes as a string: ours refuses what the spec allows."""
    assert kinds(read_breaks(one("string"), one("bytes"))) == [("x", "text")]
    assert kinds(read_breaks(one(["null", "string"]), one(["null", "bytes"]))) == [("x", "text")]
    assert read_breaks(one("bytes"), one("string")) == []
    (message,) = check(one("string"), [("version 1", one("bytes"))], "BACKWARD").messages()
    assert message.startswith("field `x` changed type bytes -> string")
    assert "bytes need not be UTF-8 text" in message


@pytest.mark.parametrize(
    ("new_symbols", "what"),
    [
        (["a", "new", "b", "other"], "inserted enum symbol(s) new before"),
        (["b", "a", "other"], "reordered enum symbols"),
    ],
)
def test_enum_symbols_are_append_only(new_symbols: list[str], what: str) -> None:
    """Avro resolves enums by name, but ordinals leak (generated code, stored ordinals): the
    gate enforces the README's rule, new symbols go at the end, the rest keeps its order."""
    old = one(enum(["a", "b", "other"], "other"))
    new = one(enum(new_symbols, "other"))
    assert check(new, [("v1", old)], "FULL", policy=False).compatible
    (problem,) = policy_breaks(old, new)
    assert problem.path == "x"
    assert what in problem.change
    assert policy_breaks(old, one(enum(["a", "b", "other", "new"], "other"))) == []


def test_an_enum_listing_a_symbol_twice_is_invalid() -> None:
    """Symbols are unique in an enum (Java Avro refuses the schema)."""
    (message,) = check(one(enum(["a", "b", "a"])), [], "NONE").messages()
    assert message.startswith("field `x` has enum E listing a twice")


def test_an_alias_naming_another_field_of_the_record_is_invalid() -> None:
    """Two reader fields must not claim one writer field (found by the differential test:
    Java's checker passes it, its readers and fastavro's then leave a field empty)."""
    candidate = record(field("a", "string", aliases=["b"]), field("b", "string"))
    (message,) = check(candidate, [], "NONE").messages()
    assert message.startswith("field `a` has the alias `b`, which field `b`")
    twice = record(field("a", "string", aliases=["z"]), field("b", "string", aliases=["z"]))
    (message,) = check(twice, [], "NONE").messages()
    assert message.startswith("field `b` has the alias `z`, which field `a`")
