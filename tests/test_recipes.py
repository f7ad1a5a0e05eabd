"""The README's evolution recipes, applied to a throwaway copy of the project.

"Add an optional field" and "add a payment method" are applied exactly as README.md says (one
schema edit, one declaration each, a new history file), then the tests those changes touch run
in the copy (agreement, event, codec with its fast path, governance), the offline gate passes,
the new field is type-checked and settable from text, and the quick serde benchmark runs. No
stack is started: this proves the recipes are complete, not that Kafka works.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOUCHED = [
    "tests/test_schema.py",
    "tests/test_event.py",
    "tests/test_codec.py",
    "tests/test_governance.py",
]


def _copy_project(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _add_optional_field(project: Path) -> None:
    """README "How to add a field", steps 1-3."""
    schema_path = project / "schemas" / "payment.avsc"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    schema["fields"].append(
        {
            "name": "channel",
            "type": ["null", "string"],
            "default": None,
            "doc": "Where the payment was made (web, app, pos), or null.",
        }
    )
    schema_path.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    event = project / "paykafka" / "_event.py"
    text = event.read_text(encoding="utf-8")
    anchor = "    note: str | None = attrs.field(default=None, converter=_to_note)\n"
    assert anchor in text
    event.write_text(
        text.replace(anchor, anchor + "    channel: str | None = extra(str)\n"), encoding="utf-8"
    )


def _add_payment_method(project: Path) -> None:
    """README "How to add a payment method", steps 1-2."""
    schema_path = project / "schemas" / "payment.avsc"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    method = next(f for f in schema["fields"] if f["name"] == "method")
    method["type"]["symbols"].append("bank_card_token")
    schema_path.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    event = project / "paykafka" / "_event.py"
    text = event.read_text(encoding="utf-8")
    members = text.index("class PaymentMethod")
    end = text.index("\n\n\n", members)
    event.write_text(
        text[:end] + '\n    BANK_CARD_TOKEN = "bank_card_token"' + text[end:], encoding="utf-8"
    )


def _release(project: Path) -> None:
    """Step 3: check offline, then copy the contract to the next history file."""
    history = project / "schemas" / "history"
    number = len(list(history.glob("payment.v*.avsc"))) + 1
    shutil.copy(project / "schemas" / "payment.avsc", history / f"payment.v{number}.avsc")


def _run(project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project)}
    env.pop("PAYKAFKA_SCHEMA_PATH", None)
    return subprocess.run(
        [sys.executable, *argv], cwd=project, env=env, capture_output=True, text=True, check=False
    )


def test_add_a_field_and_a_method_as_the_readme_says(tmp_path: Path) -> None:
    """Both recipes in one release: the gate passes, the touched tests pass in the copy."""
    project = _copy_project(tmp_path / "project")
    _add_optional_field(project)
    _add_payment_method(project)
    check = _run(project, "-m", "paykafka", "schema", "check", "--offline")
    assert check.returncode == 0, check.stdout + check.stderr
    _release(project)

    probe = _run(
        project,
        "-c",
        "import paykafka, json; e = paykafka.PaymentEvent(user='u', amount='1.00', "
        "currency='PLN', method='bank_card_token', **paykafka.optional_fields(['channel=web']));"
        "print(e.to_json()); print(paykafka.__file__)",
    )
    assert probe.returncode == 0, probe.stderr
    line, where = probe.stdout.splitlines()
    assert json.loads(line)["channel"] == "web"
    assert where.startswith(str(project))
    refused = _run(
        project,
        "-c",
        "import paykafka; paykafka.PaymentEvent(user='u', amount='1.00', currency='PLN', "
        "method='blik', channel=5)",
    )
    assert "invalid channel: must be a str or None, got int" in refused.stderr

    tests = _run(project, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TOUCHED)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]

    # The quick serde benchmark still runs both directions there (ratios are its business).
    bench = _run(
        project,
        "-m",
        "benchmarks",
        "--only",
        "serde",
        "--serde-n",
        "200",
        "--rounds",
        "2",
        "--json",
    )
    assert bench.returncode == 0, bench.stderr[-2000:]
    rows = json.loads(bench.stdout)["rows"]
    assert all(row["paykafka"] > 0 and row["ratio"] > 0 for row in rows)
