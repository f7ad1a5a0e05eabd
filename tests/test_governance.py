"""SchemaGate and the offline check: pure logic against an in-memory registry that answers the
way Apicurio 3 does (checked on the real one: compatibility answers carry no reasons, a
subject's config falls back to the global level, 409 refuses an incompatible registration)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from paykafka import (
    IncompatibleSchemaError,
    RegistryClient,
    RegistryIncompatibleError,
    SchemaError,
    Settings,
)
from paykafka._cli import main
from paykafka._compat import join_labels
from paykafka._governance import SchemaGate, check_offline, load_history
from paykafka._schema import PaymentSchema, load_schema, parse_schema_text

ROOT = Path(__file__).resolve().parent.parent
HISTORY = ROOT / "schemas" / "history"
SUBJECT = "payments-value"


class FakeRegistry:
    """Just enough of the ccompat API; ``verdict`` scripts the compatibility answer."""

    def __init__(self, *, verdict: bool = True, refuse_register: bool = False) -> None:
        self.versions: list[tuple[int, str]] = []  # (id, schema) per version
        self.level: str | None = None
        self.global_level = "BACKWARD"
        self.verdict = verdict
        self.refuse_register = refuse_register
        self.calls: list[tuple[str, str]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path.removeprefix("/apis/ccompat/v7")
        self.calls.append((method, path))
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        exists = bool(self.versions)
        if path == f"/subjects/{SUBJECT}" and method == "POST":
            for number, (sid, text) in enumerate(self.versions, start=1):
                if json.loads(text) == json.loads(body["schema"]):
                    return httpx.Response(
                        200, json={"subject": SUBJECT, "version": number, "id": sid, "schema": text}
                    )
            code = 40403 if exists else 40401
            return httpx.Response(404, json={"error_code": code, "message": "not found"})
        if path == f"/subjects/{SUBJECT}/versions" and method == "GET":
            if not exists:
                return httpx.Response(404, json={"error_code": 40401, "message": "no subject"})
            return httpx.Response(200, json=list(range(1, len(self.versions) + 1)))
        if path == f"/subjects/{SUBJECT}/versions" and method == "POST":
            if self.refuse_register:
                return httpx.Response(409, json={"error_code": 409, "message": "Incompatible"})
            self.versions.append((100 + len(self.versions), body["schema"]))
            return httpx.Response(200, json={"id": self.versions[-1][0]})
        match = re.fullmatch(rf"/subjects/{SUBJECT}/versions/(\d+|latest)", path)
        if match:
            number = len(self.versions) if match[1] == "latest" else int(match[1])
            sid, text = self.versions[number - 1]
            return httpx.Response(
                200, json={"subject": SUBJECT, "version": number, "id": sid, "schema": text}
            )
        if path.startswith(f"/compatibility/subjects/{SUBJECT}/versions"):
            return httpx.Response(200, json={"is_compatible": self.verdict})
        if path == f"/config/{SUBJECT}":
            if method == "PUT":
                self.level = body["compatibility"]
                return httpx.Response(200, json={"compatibility": self.level})
            if self.level is None and not exists:
                return httpx.Response(404, json={"error_code": 40401, "message": "no subject"})
            return httpx.Response(200, json={"compatibilityLevel": self.level or self.global_level})
        if path == "/config":
            return httpx.Response(200, json={"compatibilityLevel": self.global_level})
        return httpx.Response(500, json={"message": f"fake has no {method} {path}"})

    def registered(self) -> int:
        return self.calls.count(("POST", f"/subjects/{SUBJECT}/versions"))


def gate(fake: FakeRegistry, **settings: Any) -> SchemaGate:
    s = Settings(registry_url="http://registry.test/apis/ccompat/v7", **settings)
    return SchemaGate(RegistryClient(s, transport=httpx.MockTransport(fake.handle)), s)


V1 = load_schema(HISTORY / "payment.v1.avsc")
V2 = load_schema(HISTORY / "payment.v2.avsc")


def edited(base: PaymentSchema, edit: Any, name: str = "edited.avsc") -> PaymentSchema:
    raw = json.loads(base.text)
    edit(raw)
    return parse_schema_text(json.dumps(raw), source=name)


def _amount_double(raw: dict[str, Any]) -> None:
    next(f for f in raw["fields"] if f["name"] == "amount")["type"] = "double"


def _drop_cash(raw: dict[str, Any]) -> None:
    method = next(f for f in raw["fields"] if f["name"] == "method")
    method["type"]["symbols"].remove("cash")


def test_first_registration_sets_the_configured_level() -> None:
    """A new subject gets FULL_TRANSITIVE (the default) before its first version."""
    fake = FakeRegistry()
    assert gate(fake).admit(V1) == 100
    assert fake.level == "FULL_TRANSITIVE"
    assert fake.calls.index(("PUT", f"/config/{SUBJECT}")) < fake.calls.index(
        ("POST", f"/subjects/{SUBJECT}/versions")
    )


def test_a_level_someone_set_is_never_lowered_and_a_weaker_one_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pre-set weaker level stays, and the gate says so in a warning."""
    fake = FakeRegistry()
    fake.level = "BACKWARD"
    with caplog.at_level(logging.WARNING, logger="paykafka._governance"):
        gate(fake).admit(V1)
    assert fake.level == "BACKWARD"
    assert ("PUT", f"/config/{SUBJECT}") not in fake.calls
    assert "weaker than the configured FULL_TRANSITIVE" in caplog.text


def test_a_registered_schema_is_admitted_without_registering_it_again() -> None:
    """An already registered version is looked up and judged on the versions before it."""
    fake = FakeRegistry()
    fake.versions.append((7, V1.text))
    fake.versions.append((8, V2.text))
    assert gate(fake).admit(V1) == 7
    assert gate(fake).admit(V2) == 8
    assert fake.registered() == 0
    assert not any(p.startswith("/compatibility") for _, p in fake.calls)


def test_a_registered_schema_that_check_refuses_is_refused_by_the_producer() -> None:
    """Being registered (e.g. by hand under NONE) is no pass: admit refuses what check refuses."""
    fake = FakeRegistry(verdict=True)
    bad = edited(V1, _drop_cash)
    fake.versions.append((7, V1.text))
    fake.versions.append((8, bad.text))
    verdict = gate(fake).check(bad)
    assert not verdict.compatible
    assert verdict.checked_against == ("version 1 (payment.v1.avsc)",)
    with pytest.raises(IncompatibleSchemaError, match="removed enum symbol") as caught:
        gate(fake).admit(bad)
    assert "nothing was produced" in str(caught.value)


def test_an_invalid_schema_is_refused_online_before_the_registry_is_asked() -> None:
    """A default that does not fit its type is refused by check, register and the producer."""

    def bad_default(raw: dict[str, Any]) -> None:
        next(f for f in raw["fields"] if f["name"] == "note")["default"] = "none"

    fake = FakeRegistry(verdict=True)
    fake.versions.append((7, V1.text))
    verdict = gate(fake).check(edited(V2, bad_default))
    assert not verdict.compatible
    assert verdict.problems[0].startswith('field `note` has an invalid default "none"')
    with pytest.raises(IncompatibleSchemaError, match="field `note` has an invalid default"):
        gate(fake).register(edited(V2, bad_default))
    assert fake.registered() == 0
    assert not any(p.startswith("/compatibility") for _, p in fake.calls)


def test_incompatible_schema_is_refused_with_field_level_reasons() -> None:
    """The registry's bare 'no' becomes an explanation naming the field; nothing is registered."""
    fake = FakeRegistry(verdict=False)
    fake.versions.append((7, V1.text))
    fake.level = "FULL_TRANSITIVE"
    with pytest.raises(IncompatibleSchemaError) as caught:
        gate(fake).admit(edited(V1, _amount_double))
    assert caught.value.problems == (
        (
            "field `amount` changed type bytes (decimal 18,4) -> double: the new schema cannot "
            "read events written with version 1 (payment.v1.avsc); readers of version 1 "
            "(payment.v1.avsc) cannot read events written with the new schema"
        ),
    )
    assert "nothing was produced" in str(caught.value)
    assert fake.registered() == 0


def test_policy_breaks_are_refused_even_when_the_registry_agrees() -> None:
    """Removing an enum symbol passes Avro (the enum has a default) but not the gate."""
    fake = FakeRegistry(verdict=True)
    fake.versions.append((7, V1.text))
    with pytest.raises(IncompatibleSchemaError, match="removed enum symbol"):
        gate(fake).admit(edited(V1, _drop_cash))
    assert fake.registered() == 0


def test_transitive_levels_ask_the_registry_about_every_version() -> None:
    """Under *_TRANSITIVE the check goes to /versions (all); otherwise to /versions/latest."""
    fake = FakeRegistry()
    fake.versions.append((7, V1.text))
    fake.level = "FULL_TRANSITIVE"
    gate(fake).check(V2)
    assert ("POST", f"/compatibility/subjects/{SUBJECT}/versions") in fake.calls
    fake.level = "FULL"
    gate(fake).check(V2)
    assert ("POST", f"/compatibility/subjects/{SUBJECT}/versions/latest") in fake.calls


def test_governed_mode_refuses_an_unregistered_schema() -> None:
    """With auto_register off only registered versions are admitted, and the error says how."""
    fake = FakeRegistry()
    fake.versions.append((7, V1.text))
    with pytest.raises(SchemaError, match="paykafka schema register"):
        gate(fake, auto_register=False).admit(V2)
    assert fake.registered() == 0


def test_a_409_on_register_is_explained_too() -> None:
    """If the registry refuses at registration (a race), the error still names the field."""
    fake = FakeRegistry(verdict=True, refuse_register=True)
    fake.versions.append((7, V1.text))
    with pytest.raises(RegistryIncompatibleError) as caught:
        gate(fake).admit(V2)
    assert caught.value.status == 409
    assert caught.value.problems  # the registry's own message, as nothing else applies


def test_registry_refusal_without_a_field_cause_says_so() -> None:
    """When only the registry objects, the verdict says it found no field-level cause."""
    fake = FakeRegistry(verdict=False)
    fake.versions.append((7, V1.text))
    verdict = gate(fake).check(V2)
    assert not verdict.compatible
    assert "found no field-level cause" in verdict.problems[0]


def test_what_our_checker_refuses_is_refused_online_even_if_the_registry_accepts() -> None:
    """Online refuses whatever offline refuses; a lenient registry only earns a note."""
    fake = FakeRegistry(verdict=True)
    fake.versions.append((7, V1.text))
    verdict = gate(fake).check(edited(V1, _amount_double))
    assert not verdict.compatible
    assert verdict.registry_compatible is True
    assert verdict.problems[0].startswith("field `amount` changed type")
    assert "the registry alone would accept it" in verdict.notes[0]


def test_registry_versions_are_named_with_their_history_file() -> None:
    """File numbers and registry versions need not line up: listings show both."""
    fake = FakeRegistry(verdict=True)
    fake.versions.append((7, V2.text))  # released as payment.v2.avsc, registered first
    verdict = gate(fake).check(edited(V2, _amount_double))
    assert verdict.checked_against == ("version 1 (payment.v2.avsc)",)
    assert "written with version 1 (payment.v2.avsc)" in verdict.problems[0]


def test_empty_subject_is_compatible_and_says_why() -> None:
    """Nothing registered yet: anything valid is accepted, and the note says the level to come."""
    verdict = gate(FakeRegistry()).check(V2)
    assert verdict.compatible
    assert verdict.checked_against == ()
    assert "FULL_TRANSITIVE" in verdict.notes[0]


# -- offline -------------------------------------------------------------------------------------


def test_offline_check_uses_the_repository_history() -> None:
    """The contract passes against every released version; a breaking edit does not."""
    ok = check_offline(load_schema(ROOT / "schemas" / "payment.avsc"), "FULL_TRANSITIVE")
    assert ok.compatible
    assert ok.mode == "offline"
    released = tuple(v.path.name for v in load_history(HISTORY))
    assert ok.checked_against == released
    bad = check_offline(edited(V2, _amount_double), "FULL_TRANSITIVE")
    assert not bad.compatible
    assert join_labels(released) in bad.problems[0]


def test_history_with_a_gap_is_refused(tmp_path: Path) -> None:
    """A missing release in the numbering is an error, not a silently skipped version."""
    shutil.copy(HISTORY / "payment.v1.avsc", tmp_path / "payment.v1.avsc")
    shutil.copy(HISTORY / "payment.v2.avsc", tmp_path / "payment.v3.avsc")
    with pytest.raises(SchemaError, match=r"lacks payment\.v2\.avsc"):
        load_history(tmp_path)
    with pytest.raises(SchemaError, match="no schema history folder"):
        load_history(tmp_path / "missing")


# -- the command line without a registry ---------------------------------------------------------


def write_schema(tmp_path: Path, schema: PaymentSchema) -> Path:
    path = tmp_path / "candidate.avsc"
    path.write_text(schema.text)
    return path


def test_cli_offline_check_exits_1_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`schema check --offline` on a breaking edit exits 1 and explains the field and rule."""
    path = write_schema(tmp_path, edited(V2, _amount_double))
    assert main(["schema", "check", "--offline", str(path)]) == 1
    out = capsys.readouterr().out
    assert "mode:            offline" in out
    assert "field `amount` changed type bytes (decimal 18,4) -> double" in out


def test_cli_check_exits_5_when_the_registry_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A CI gate cannot go green by accident: a mistyped registry URL is exit 5, not a pass."""
    code = main(["schema", "check", "--registry-url", "http://127.0.0.1:9/x"])
    err = capsys.readouterr().err
    assert code == 5
    assert "cannot reach the schema registry" in err
    assert "nothing was checked" in err
    assert "--offline" in err


def test_cli_check_falls_back_to_offline_only_when_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With --fallback-offline, no registry: the check runs against the history and says so."""
    code = main(
        [
            "schema",
            "check",
            "--registry-url",
            "http://127.0.0.1:9/x",
            "--fallback-offline",
            "--json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["mode"] == "offline"
    assert data["registry_unreachable"] is True
    assert "cannot reach the schema registry" in data["notes"][0]


def test_cli_registry_commands_exit_5_when_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    """Commands that need the registry exit 5 (unreachable) with the reason, not a traceback."""
    assert main(["schema", "versions", "--registry-url", "http://127.0.0.1:9/x"]) == 5
    assert "cannot reach the schema registry" in capsys.readouterr().err


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A version that is not a number, or a level that does not exist, is a usage error."""
    assert main(["schema", "show", "two", "--registry-url", "http://127.0.0.1:9/x"]) == 2
    assert "not a version" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["schema", "compat", "SOMETIMES"])
    assert caught.value.code == 2


def test_cli_offline_diff_of_history_files(capsys: pytest.CaptureFixture[str]) -> None:
    """`schema diff` of two files lists the v1 -> v2 changes and their compatibility."""
    assert (
        main(["schema", "diff", str(HISTORY / "payment.v1.avsc"), str(HISTORY / "payment.v2.avsc")])
        == 0
    )
    out = capsys.readouterr().out
    assert "method: enum symbol(s) added: gift_card" in out
    assert "note: added: [null, string], default null" in out
    assert "FULL compatible (each reads the other): yes" in out
