"""Cold and warm ``stack up``: the lock-file fetcher against the Maven path it replaced.

Run ``python -m benchmarks.stack_fetch`` (needs ``mvn`` and the network; downloads about 200 MB
per cold run, so it is not part of ``python -m benchmarks``). In one run, on one machine:

- **maven cold**: the Maven path as it was at ``--baseline-rev`` (its ``_artifacts.py`` loaded
  from git), an empty cache and an empty Maven local repository (``-Dmaven.repo.local``);
- **fetcher cold**: today's fetcher with an empty cache;
- **maven warm** / **fetcher warm**: ``up`` again on the filled cache (the stack was down).

Each ``up`` is the whole command: fetching, then starting Kafka and the registry and waiting
until both answer; the artifact step alone is timed too, since JVM start-up on a shared machine
varies by more than the warm difference. Download volume is what landed on disk: the Maven
local repository (jars, poms, Maven's own plugins) against the lock file's total. Ports 24870/24871.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from paykafka._stack import Stack, StackConfig
from paykafka._stack import _artifacts as artifacts
from paykafka._stack._lockfile import load_lock

ROOT = Path(__file__).resolve().parent.parent


def _maven_module(rev: str, where: Path) -> types.ModuleType:
    """The Maven-based ``_artifacts.py`` of ``rev``, importable beside today's modules."""
    source = subprocess.run(  # noqa: S603 - our own argv, no shell
        ["git", "show", f"{rev}:paykafka/_stack/_artifacts.py"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = where / "_artifacts_maven.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("paykafka._stack._artifacts_maven", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def _fetching(module: types.ModuleType | None, spent: list[float]) -> Iterator[None]:
    """Time the artifact step of ``up``; with ``module``, through the old Maven code."""
    current = artifacts.ensure_artifacts

    def ensure_artifacts(
        cache_dir: Path, *, kafka: bool, registry: bool, **kwargs: Any
    ) -> tuple[Path | None, Path | None]:
        started = time.perf_counter()
        try:
            if module is None:
                return current(cache_dir, kafka=kafka, registry=registry, **kwargs)
            libs = module.ensure_kafka(cache_dir) if kafka else None
            app = module.ensure_apicurio(cache_dir) if registry else None
            return libs, app
        finally:
            spent.append(time.perf_counter() - started)

    with mock.patch.object(artifacts, "ensure_artifacts", ensure_artifacts):
        yield


def _timed_up(config: StackConfig, module: types.ModuleType | None) -> tuple[float, float]:
    """Seconds of the whole ``up`` and of its artifact step; the stack is purged after."""
    stack = Stack(config)
    spent: list[float] = []
    with _fetching(module, spent):
        started = time.perf_counter()
        try:
            stack.up()
            return time.perf_counter() - started, sum(spent)
        finally:
            stack.down(purge=True)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rev", default="3a64260", help="last commit with Maven")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="paykafka-fetch-bench-"))
    maven = _maven_module(args.baseline_rev, work)
    repo = work / "m2"
    os.environ["MAVEN_OPTS"] = f"{os.environ.get('MAVEN_OPTS', '')} -Dmaven.repo.local={repo}"

    def config(name: str) -> StackConfig:
        return StackConfig.from_env(
            state_dir=work / f"state-{name}",
            cache_dir=work / f"cache-{name}",
            kafka_port=24870,
            registry_port=24871,
            brokers=1,
            start_timeout=300.0,
        )

    rows: list[dict[str, Any]] = []
    try:
        for label in ("cold", "warm"):
            for path, module in (("maven", maven), ("fetcher", None)):
                up, fetch = _timed_up(config(path), module)
                row = {"path": path, "up": label, "seconds": round(up, 2), "fetch": round(fetch, 3)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
        volume = {
            "maven_local_repo_mb": round(_du(repo) / 1e6, 1),
            "fetcher_lock_mb": round((load_lock().kafka.size + load_lock().apicurio.size) / 1e6, 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"runs": rows, "download": volume}))
    else:
        for row in rows:
            print(
                f"{row['path']:8} {row['up']:5} up: {row['seconds']:6.1f} s "
                f"(of which artifacts {row['fetch']:.3f} s)"
            )
        print(
            f"downloaded: Maven {volume['maven_local_repo_mb']} MB (local repository), "
            f"fetcher {volume['fetcher_lock_mb']} MB (the locked files)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
