"""`paykafka schema ...` on the real registry: register, versions, show, diff, compat, check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paykafka import RegistryClient, Settings
from paykafka._cli import main

from ._cli import connection_flags

ROOT = Path(__file__).resolve().parents[2]
V1 = ROOT / "schemas" / "history" / "payment.v1.avsc"
V2 = ROOT / "schemas" / "history" / "payment.v2.avsc"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_register_versions_show_and_diff(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Register v1 then v2, list them with ids, show one, and diff them by version number."""
    f = connection_flags(topic_settings)
    code, first = run_json(capsys, "schema", "register", str(V1), *f)
    assert code == 0
    assert first == {
        "registered": True,
        "subject": topic_settings.subject,
        "version": 1,
        "id": first["id"],
        "level": "FULL_TRANSITIVE",
    }
    code, second = run_json(capsys, "schema", "register", str(V2), *f)
    assert (code, second["version"]) == (0, 2)
    code, again = run_json(capsys, "schema", "register", str(V2), *f)
    assert (code, again["version"]) == (0, 2)

    code, listed = run_json(capsys, "schema", "versions", *f)
    assert code == 0
    rows = listed["versions"]
    assert [(r["version"], r["id"]) for r in rows] == [(1, first["id"]), (2, second["id"])]
    assert "method: enum symbol(s) added: gift_card" in rows[1]["changes"]

    code, shown = run_json(capsys, "schema", "show", "1", *f)
    assert code == 0
    assert shown["schema"] == json.loads(V1.read_text())

    code, diffed = run_json(capsys, "schema", "diff", "1", "latest", *f)
    assert code == 0
    assert [c["path"] for c in diffed["changes"]] == ["method", "note"]
    assert diffed["full_compatible"] is True

    capsys.readouterr()
    assert main(["schema", "show", "9", *f]) == 2
    assert "has no version 9 (registered: 1, 2)" in capsys.readouterr().err


def test_compat_reads_sets_and_never_silently_lowers(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The level reads back; lowering it needs --force; raising it does not."""
    f = connection_flags(topic_settings)
    assert main(["schema", "register", str(V1), *f]) == 0
    code, level = run_json(capsys, "schema", "compat", *f)
    assert (code, level["level"], level["own"]) == (0, "FULL_TRANSITIVE", True)
    capsys.readouterr()
    assert main(["schema", "compat", "BACKWARD", *f]) == 1
    assert "weaker than" in capsys.readouterr().err
    assert main(["schema", "compat", "BACKWARD", "--force", *f]) == 0
    assert main(["schema", "compat", "BACKWARD_TRANSITIVE", *f]) == 0
    with RegistryClient(topic_settings) as registry:
        assert registry.compatibility(topic_settings.subject) == "BACKWARD_TRANSITIVE"


def test_check_online_names_the_field_and_the_mode(
    topic_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A breaking file is checked against the registry, which Apicurio answers without reasons;
    the output still names the field, and says it used the registry."""
    f = connection_flags(topic_settings)
    assert main(["schema", "register", str(V1), *f]) == 0
    raw = json.loads(V2.read_text())
    next(x for x in raw["fields"] if x["name"] == "amount")["type"] = "double"
    broken = tmp_path / "broken.avsc"
    broken.write_text(json.dumps(raw))
    code, verdict = run_json(capsys, "schema", "check", str(broken), *f)
    assert code == 1
    assert verdict["mode"] == "registry"
    assert verdict["registry_compatible"] is False
    assert verdict["checked_against"] == ["version 1 (payment.v1.avsc)"]
    assert verdict["problems"][0].startswith(
        "field `amount` changed type bytes (decimal 18,4) -> double"
    )
    code, ok = run_json(capsys, "schema", "check", str(V2), *f)
    assert (code, ok["compatible"]) == (0, True)


def test_exit_codes_from_a_real_process(topic_settings: Settings, tmp_path: Path) -> None:
    """The installed command exits 0 for a compatible file, 1 for a breaking one, 3 for a dead
    registry on commands that need it, and lists the codes in --help."""
    exe = [sys.executable, "-m", "paykafka"]
    f = connection_flags(topic_settings)
    assert subprocess.run([*exe, "schema", "register", str(V1), *f], check=False).returncode == 0
    raw = json.loads(V2.read_text())
    raw["fields"].append({"name": "merchant", "type": "string"})
    broken = tmp_path / "broken.avsc"
    broken.write_text(json.dumps(raw))
    bad = subprocess.run(
        [*exe, "schema", "check", str(broken), *f], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1
    assert "field `merchant` was added without a default" in bad.stdout
    dead = subprocess.run(
        [*exe, "schema", "versions", "--registry-url", "http://127.0.0.1:9/x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert dead.returncode == 5
    helptext = subprocess.run(
        [*exe, "schema", "check", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "5  schema registry unreachable" in helptext
