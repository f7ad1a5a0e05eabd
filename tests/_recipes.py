"""The README's evolution recipes as code, applied to a throwaway copy of the project.

Shared by tests/test_recipes.py (the touched tests, in the copy) and
tests/integration/test_recipes_examples.py (the copy's examples on the running stack).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_project(target: Path) -> Path:
    """The project's sources, tests, schemas, examples and benchmarks: no venv, caches or VCS."""
    shutil.copytree(
        ROOT,
        target,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "*_cache",
            ".hypothesis",
            "__pycache__",
            ".paykafka",
            "dist",
            "build",
        ),
    )
    return target


def add_optional_field(project: Path) -> None:
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


def add_payment_method(project: Path) -> None:
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


def release(project: Path) -> None:
    """Step 3: check offline, then copy the contract to the next history file."""
    history = project / "schemas" / "history"
    number = len(list(history.glob("payment.v*.avsc"))) + 1
    shutil.copy(project / "schemas" / "payment.avsc", history / f"payment.v{number}.avsc")


def run_in(
    project: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python argv...`` in the copy, importing the copy's paykafka."""
    env = {**(env or os.environ), "PYTHONPATH": str(project)}
    env.pop("PAYKAFKA_SCHEMA_PATH", None)
    return subprocess.run(
        [sys.executable, *argv], cwd=project, env=env, capture_output=True, text=True, check=False
    )
