"""The benchmark suite runs: its serde part, tiny, through the same command users run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [
    sys.executable,
    "-m",
    "benchmarks",
    "--only",
    "serde",
    "--serde-n",
    "200",
    "--rounds",
    "2",
]


def run(*extra: str) -> str:
    done = subprocess.run(
        [*COMMAND, *extra], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_json_has_both_serde_rows_with_their_keys() -> None:
    """--json gives the environment and one row per serde direction, stock beside paykafka."""
    report = json.loads(run("--json"))
    assert {"environment", "quick", "seconds", "rows"} <= set(report)
    assert {"paykafka", "confluent_kafka", "fastavro", "python"} <= set(report["environment"])
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) == {"serialize PaymentEvent -> bytes", "deserialize bytes -> PaymentEvent"}
    for row in rows.values():
        assert {"group", "unit", "stock", "paykafka", "ratio", "target", "met", "detail"} <= set(
            row
        )
        assert row["group"] == "serde"
        assert row["unit"] == "events/s"
        assert row["stock"] > 0
        assert row["paykafka"] > 0
        assert row["detail"]["n"] == 200
        assert len(row["detail"]["paykafka_seconds"]) == 2


def test_table_lists_both_paths_and_the_ratio() -> None:
    """Without --json the output is a markdown table with stock, paykafka and ratio columns."""
    out = run()
    header = next(line for line in out.splitlines() if line.startswith("| benchmark"))
    assert "stock confluent-kafka" in header
    assert "paykafka" in header
    assert "ratio" in header
    assert "| serde: serialize PaymentEvent -> bytes |" in out
    assert "| serde: deserialize bytes -> PaymentEvent |" in out


def test_observability_per_event_split_runs_in_process() -> None:
    """The observability benchmark's in-process rows (SDK floor, paykafka, metrics) come out."""
    from benchmarks.observability import per_event_costs  # noqa: PLC0415 - needs the extras

    rows = per_event_costs(200, 1)
    assert [row.unit for row in rows] == ["µs/event"] * 3
    floor, sampled, metrics = rows
    assert floor.stock is not None
    assert floor.stock > 0
    assert floor.paykafka > 0
    assert sampled.paykafka > 0
    assert isinstance(metrics.paykafka, float)  # a difference of two timings: any sign at N=200
