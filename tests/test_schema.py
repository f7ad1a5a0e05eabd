"""The contract: schemas/payment.avsc, the packaged copy, and PaymentEvent in step."""

import itertools
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import attrs
import pytest

from paykafka import (
    PaymentEvent,
    PaymentMethod,
    PaymentProducer,
    PaymentTracker,
    SchemaError,
    Settings,
    load_schema,
)
from paykafka._compat import check
from paykafka._governance import load_history
from paykafka._schema import PaymentSchema, default_schema_path, disagreement, parse_schema_text

ROOT = Path(__file__).resolve().parent.parent


def test_default_schema_is_the_repository_file() -> None:
    """In a checkout the library reads the file users edit, not a stale copy."""
    assert default_schema_path() == ROOT / "schemas" / "payment.avsc"


def test_class_and_schema_agree_field_by_field() -> None:
    """PaymentEvent has exactly the schema's fields, in the same order."""
    schema = load_schema()
    assert tuple(f.name for f in attrs.fields(PaymentEvent)) == schema.field_names


def test_field_types_match_the_contract() -> None:
    """Each field's Avro type is the one PaymentEvent's converter expects."""
    schema = load_schema()
    assert schema.field("payment_id")["type"] == {"type": "string", "logicalType": "uuid"}
    assert schema.field("user")["type"] == "string"
    amount = schema.field("amount")["type"]
    assert (amount["type"], amount["logicalType"], amount["scale"]) == ("bytes", "decimal", 4)
    assert schema.field("currency")["type"] == "string"
    assert schema.field("timestamp")["type"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert schema.field("note")["type"] == ["null", "string"]
    assert schema.field("note")["default"] is None


def test_optional_fields_are_optional_in_the_class_too() -> None:
    """A schema field with a default is exactly a class field that defaults to that value."""
    raw = json.loads(load_schema().text)["fields"]
    schema_defaults = {f["name"]: f["default"] for f in raw if "default" in f}
    class_defaults = {
        a.name: a.default
        for a in attrs.fields(PaymentEvent)
        if a.default is not attrs.NOTHING and not isinstance(a.default, attrs.Factory)  # type: ignore[arg-type]
    }
    assert class_defaults == schema_defaults


def test_a_v1_record_reads_without_the_note() -> None:
    """A record decoded with the v1 reader has no note key: the event's note is None."""
    event = PaymentEvent(user="u", amount="1.00", currency="PLN", method="blik", note="rent")
    record = event.to_dict()
    assert record["note"] == "rent"
    assert PaymentEvent.from_dict(record).note == "rent"
    del record["note"]
    assert PaymentEvent.from_dict(record).note is None


def test_to_json_adds_the_note_after_the_tutorials_keys_only_when_set() -> None:
    """The tutorial's JSON line is unchanged without a note and ends with it when set."""
    plain = PaymentEvent(user="u", amount="1.00", currency="PLN", method="blik")
    assert list(json.loads(plain.to_json())) == [
        "payment_id",
        "user",
        "amount",
        "currency",
        "method",
        "timestamp",
    ]
    noted = attrs.evolve(plain, note="rent")
    assert list(json.loads(noted.to_json()))[-1] == "note"
    assert json.loads(noted.to_json())["note"] == "rent"


def test_method_enum_matches_payment_method() -> None:
    """The schema's enum symbols and PaymentMethod are the same list, with a default."""
    schema = load_schema()
    assert schema.method_symbols == tuple(m.value for m in PaymentMethod)
    assert schema.field("method")["type"]["default"] in schema.method_symbols


def test_history_is_a_chain_of_full_transitive_releases() -> None:
    """Each released version reads, and is read by, every earlier one (with paykafka's policy)."""
    history = load_history(ROOT / "schemas" / "history")
    assert [v.version for v in history] == list(range(1, len(history) + 1))
    for i, release in enumerate(history[1:], start=1):
        earlier = [(v.path.name, v.schema.text) for v in history[:i]]
        report = check(release.schema.text, earlier, "FULL_TRANSITIVE")
        assert report.compatible, (release.path.name, report.messages())


def test_the_contract_is_the_last_released_version() -> None:
    """schemas/payment.avsc changes only together with a new schemas/history/ file."""
    history = load_history(ROOT / "schemas" / "history")
    current = ROOT / "schemas" / "payment.avsc"
    assert history[-1].path.read_text() == current.read_text(), (
        f"copy schemas/payment.avsc to schemas/history/payment.v{len(history) + 1}.avsc "
        "when releasing a change (README: schema evolution)"
    )


def test_method_symbols_are_only_ever_appended() -> None:
    """Each release keeps every earlier method symbol, in place, and adds new ones at the end."""
    history = load_history(ROOT / "schemas" / "history")
    for before, after in itertools.pairwise(history):
        old = before.schema.method_symbols
        assert after.schema.method_symbols[: len(old)] == old, after.path.name


def test_every_field_is_documented() -> None:
    """The contract documents each field for the teams that read it."""
    raw = json.loads(load_schema().text)
    assert raw["doc"]
    assert all(f.get("doc") for f in raw["fields"])


def test_invalid_schema_text_is_a_schema_error() -> None:
    """Broken JSON, a non-record, or a missing field gives SchemaError saying which."""
    with pytest.raises(SchemaError, match="not valid JSON"):
        parse_schema_text("{", "x.avsc")
    with pytest.raises(SchemaError, match="record"):
        parse_schema_text('"string"', "x.avsc")
    with pytest.raises(SchemaError, match="lacks field"):
        parse_schema_text(
            '{"type":"record","name":"P","fields":[{"name":"user","type":"string"}]}', "x.avsc"
        )


def test_missing_schema_file_says_where_to_look(tmp_path: Path) -> None:
    """A wrong schema_path names the path and the setting to fix."""
    with pytest.raises(SchemaError, match="PAYKAFKA_SCHEMA_PATH"):
        load_schema(tmp_path / "nope.avsc")


def test_wheel_ships_and_finds_the_schema(tmp_path: Path) -> None:
    """A built wheel carries payment.avsc and the library finds it when run from the wheel."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("paykafka-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        packaged = zf.read("paykafka/_schemas/payment.avsc").decode()
    assert packaged == (ROOT / "schemas" / "payment.avsc").read_text()
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(unpacked)
    out = subprocess.run(
        [sys.executable, "-c", "import paykafka._schema as s; print(s.default_schema_path())"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == str(unpacked / "paykafka" / "_schemas" / "payment.avsc")


# -- the schema in use and the code agree, checked at start (issue 13 item 2) --------------------


def _edited_contract(edit: Any) -> PaymentSchema:
    raw = json.loads(load_schema().text)
    edit(raw)
    return parse_schema_text(json.dumps(raw), source="newer.avsc")


def _method_symbols(raw: dict[str, Any]) -> list[str]:
    symbols: list[str] = next(f for f in raw["fields"] if f["name"] == "method")["type"]["symbols"]
    return symbols


def test_the_contract_agrees_with_the_code() -> None:
    """The schema in the checkout, and every released version, work with this code."""
    assert disagreement(load_schema()) is None
    for release in load_history(ROOT / "schemas" / "history"):
        assert disagreement(release.schema) is None, release.path.name


def test_a_schema_field_the_class_lacks_is_a_disagreement() -> None:
    """Code older than its schema would silently drop the field: named in one line."""
    newer = _edited_contract(
        lambda raw: raw["fields"].append(
            {"name": "zz_unknown_to_the_code", "type": ["null", "string"], "default": None}
        )
    )
    why = disagreement(newer)
    assert why is not None
    assert why.startswith("newer.avsc has field(s) zz_unknown_to_the_code that PaymentEvent lacks")


def test_a_method_the_enum_lacks_is_a_disagreement() -> None:
    """Code older than its schema would dead-letter real payments: refused at start instead."""
    newer = _edited_contract(lambda raw: _method_symbols(raw).append("zz_unknown_method"))
    why = disagreement(newer)
    assert why is not None
    assert "payment method(s) zz_unknown_method that paykafka.PaymentMethod lacks" in why


def test_methods_in_another_order_are_a_disagreement() -> None:
    """PaymentMethod keeps the schema's order (ordinals leak into generated code and storage)."""
    newer = _edited_contract(lambda raw: _method_symbols(raw).reverse())
    why = disagreement(newer)
    assert why is not None
    assert "keep PaymentMethod in the schema's order" in why


@pytest.mark.parametrize("kind", ["producer", "tracker"])
def test_producer_and_tracker_refuse_to_start_on_a_disagreement(kind: str) -> None:
    """Before any connection: one line naming the difference (no broker or registry needed)."""
    newer = _edited_contract(lambda raw: _method_symbols(raw).append("zz_unknown_method"))
    settings = Settings(
        bootstrap_servers="127.0.0.1:9", registry_url="http://127.0.0.1:9/apis/ccompat/v7"
    )
    client: PaymentProducer | PaymentTracker = (
        PaymentProducer(settings, schema=newer)
        if kind == "producer"
        else PaymentTracker(settings, schema=newer)
    )
    with pytest.raises(SchemaError, match=r"refusing to start: newer\.avsc has payment method"):
        client.start()
