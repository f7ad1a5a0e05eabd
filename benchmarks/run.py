"""Run the benchmark suite and print one table (or JSON with ``--json``).

.venv/bin/python -m benchmarks            # full run: needs `paykafka stack up`
.venv/bin/python -m benchmarks --quick    # smaller N, fewer rounds
.venv/bin/python -m benchmarks --only serde --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import confluent_kafka

from benchmarks import aio, memory, observability, pipeline, serde
from benchmarks._common import Row, render
from paykafka import Settings

PARTS = ("serde", "e2e", "latency", "memory", "aio", "observability")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small N and few rounds (~1 min)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="run only this part (repeatable)"
    )
    parser.add_argument("--serde-n", type=int, help="events per serde run (default 50,000)")
    parser.add_argument("--e2e-n", type=int, help="events per end-to-end run (default 200,000)")
    parser.add_argument(
        "--rounds", type=int, help="alternating runs per side (default: serde 7, e2e 2, latency 3)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen parts; the exit status is 0 even when a target is missed."""
    args = _parser().parse_args(argv)
    parts = args.only or list(PARTS)
    quick = args.quick
    rows: list[Row] = []
    started = time.time()
    if "serde" in parts:
        n = args.serde_n or (10_000 if quick else 50_000)
        _progress(f"serde, {n:,} events")
        rows += serde.run(n, args.rounds or (3 if quick else 7))
    settings = Settings.from_env()
    if "e2e" in parts:
        n = args.e2e_n or (20_000 if quick else 200_000)
        _progress(f"end to end, {n:,} events")
        rows += pipeline.end_to_end(settings, n, args.rounds or (1 if quick else 2))
    if "latency" in parts:
        _progress("latency at 1k and 10k events/s")
        rows += pipeline.latency(
            settings, [1_000, 10_000], 2.0 if quick else 5.0, args.rounds or (1 if quick else 3)
        )
    if "memory" in parts:
        sizes = [25_000, 50_000, 100_000] if quick else [250_000, 500_000, 1_000_000]
        _progress(f"memory at N = {', '.join(f'{n:,}' for n in sizes)}")
        rows += memory.run(settings, sizes)
    if "aio" in parts:
        _progress("async and concurrency: 5 ms handlers, async produce, loop lag")
        rows += aio.concurrency(
            settings,
            {"sequential": 150, "stock": 100, "async": 3_000, "threads": 2_000}
            if quick
            else {"sequential": 400, "stock": 300, "async": 15_000, "threads": 8_000},
        )
        rows += aio.produce(
            settings, 10_000 if quick else 50_000, args.rounds or (1 if quick else 2)
        )
        rows += aio.lag(settings, 20_000 if quick else 100_000)
    if "observability" in parts:
        n = args.e2e_n or (20_000 if quick else 100_000)
        _progress(f"observability costs, {n:,} events per configuration")
        rows += observability.run(settings, n, args.rounds or (1 if quick else 2))
    report = {
        "environment": _environment(settings),
        "quick": quick,
        "seconds": round(time.time() - started, 1),
        "rows": [r.as_json() for r in rows],
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        env = report["environment"]
        print(
            f"paykafka {env['paykafka']} vs confluent-kafka {env['confluent_kafka']} "
            f"(librdkafka {env['librdkafka']}), fastavro {env['fastavro']}, "
            f"Python {env['python']}, {env['cpus']} CPUs (load {env['load_average'][0]}), "
            f"consumers {env['isolation_level']}; {report['seconds']} s\n"
        )
        print(render(rows))
    return 0


def _progress(what: str) -> None:
    print(f"running: {what}", file=sys.stderr, flush=True)


def _environment(settings: Settings) -> dict[str, Any]:
    return {
        "paykafka": metadata.version("paykafka"),
        "confluent_kafka": metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "fastavro": metadata.version("fastavro"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        # Rates of CPU-bound paths fall when others load the machine: say how loaded it was.
        "load_average": [round(x, 1) for x in os.getloadavg()],
        # Both pipelines' consumers read at this level (Settings.consumer_config).
        "isolation_level": settings.isolation_level,
        "bootstrap_servers": settings.bootstrap_servers,
        "registry_url": settings.registry_url,
        "argv": sys.argv[1:],
    }
