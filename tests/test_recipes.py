"""The README's evolution recipes, applied to a throwaway copy of the project.

"Add an optional field" and "add a payment method" are applied exactly as README.md says (one
schema edit, one declaration each, a new history file), then the tests those changes touch run
in the copy (agreement, event, codec with its fast path, governance), the offline gate passes,
the new field is type-checked and settable from text, and the quick serde benchmark runs. No
stack is started: this proves the recipes are complete, not that Kafka works.
"""

from __future__ import annotations

import json
from pathlib import Path

from _recipes import add_optional_field, add_payment_method, copy_project, release, run_in

TOUCHED = [
    "tests/test_schema.py",
    "tests/test_event.py",
    "tests/test_codec.py",
    "tests/test_governance.py",
]


def test_add_a_field_and_a_method_as_the_readme_says(tmp_path: Path) -> None:
    """Both recipes in one release: the gate passes, the touched tests pass in the copy."""
    project = copy_project(tmp_path / "project")
    add_optional_field(project)
    add_payment_method(project)
    check = run_in(project, "-m", "paykafka", "schema", "check", "--offline")
    assert check.returncode == 0, check.stdout + check.stderr
    release(project)

    probe = run_in(
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
    refused = run_in(
        project,
        "-c",
        "import paykafka; paykafka.PaymentEvent(user='u', amount='1.00', currency='PLN', "
        "method='blik', channel=5)",
    )
    assert "invalid channel: must be a str or None, got int" in refused.stderr

    tests = run_in(project, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TOUCHED)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]

    # The quick serde benchmark still runs both directions there (ratios are its business).
    bench = run_in(
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
