"""The pytest plugin, proven on a tiny sample project run by pytester in subprocesses.

The sample project has no conftest: its fixtures come from paykafka's ``pytest11`` entry point
alone, as in any user's project.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _locks import ports_lock

from paykafka._stack import Stack, StackConfig

SAMPLE = """
from decimal import Decimal

from paykafka import PaymentEvent


def send_three(producer, user):
    events = [PaymentEvent(user=user, amount=Decimal("1.%02d" % i), currency="EUR",
                           method="blik") for i in range(3)]
    for event in events:
        producer.send(event)
    producer.flush()
    return {event.payment_id for event in events}


def test_alice(paykafka_producer, paykafka_records, paykafka_settings):
    sent = send_three(paykafka_producer, "alice")
    got = paykafka_records.wait(3)
    assert {r.event.payment_id for r in got} == sent
    assert {r.topic for r in got} == {paykafka_settings.topic}
    assert paykafka_records.events(3)[0].user == "alice"


def test_bob(paykafka_producer, paykafka_records, paykafka_settings):
    sent = send_three(paykafka_producer, "bob")
    got = paykafka_records.wait(3)
    assert {r.event.payment_id for r in got} == sent
    assert {r.event.user for r in got} == {"bob"}
"""


def _pytest(path: Path, *args: str) -> subprocess.Popen[str]:
    """The sample project's pytest in a process of its own (a second session)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=path,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


@pytest.mark.integration
def test_two_tests_in_parallel_see_only_their_own_records(pytester: pytest.Pytester) -> None:
    """Two sessions at once on one stack: each test sees exactly the records it sent."""
    pytester.makepyfile(test_sample=SAMPLE)
    alice = _pytest(pytester.path, "--paykafka-stack=env", "-k", "alice")
    bob = _pytest(pytester.path, "--paykafka-stack=env", "-k", "bob")
    for code, out in (_finish(alice), _finish(bob)):
        assert code == 0, out
        assert "1 passed" in out, out


@pytest.mark.integration
def test_unreachable_stack_fails_never_skips(pytester: pytest.Pytester) -> None:
    """A broker nobody listens on is an error naming it, not a skip."""
    pytester.makepyfile(test_sample=SAMPLE)
    code, out = _finish(
        _pytest(pytester.path, "--paykafka-bootstrap-servers=localhost:1", "-k", "alice")
    )
    assert code == 1, out
    assert "no Kafka broker at localhost:1" in out
    assert "skipped" not in out


LOGS = ("-o", "log_cli=true", "--log-cli-level=INFO")
KAFKA_PORT = 24860
REGISTRY_PORT = 24861


@pytest.mark.stack
def test_managed_stack_is_started_kept_reused_and_stopped(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """With no stack named, the plugin starts one on its own ports; --paykafka-keep-stack leaves
    it for the next run, which reuses it and, as the last session out, stops it."""
    pytester.makepyfile(test_sample=SAMPLE)
    state = tmp_path / "stack"
    flags = [
        f"--paykafka-kafka-port={KAFKA_PORT}",
        f"--paykafka-registry-port={REGISTRY_PORT}",
        f"--paykafka-state-dir={state}",
    ]
    stack = Stack(
        StackConfig.from_env(
            state_dir=state, kafka_port=KAFKA_PORT, registry_port=REGISTRY_PORT, brokers=1
        )
    )
    with ports_lock(f"paykafka-stack-tests-{KAFKA_PORT}", wait=600.0):
        try:
            code, out = _finish(_pytest(pytester.path, *flags, *LOGS, "--paykafka-keep-stack"))
            assert code == 0, out
            assert "2 passed" in out
            assert f"started the paykafka test stack in {state}" in out
            pids = {c.name: c.pid for c in stack.status().components}
            assert all(pids.values()), "--paykafka-keep-stack left it running"
            code, out = _finish(_pytest(pytester.path, *flags, *LOGS))
            assert code == 0, out
            assert f"reusing the paykafka stack in {state}" in out
            assert f"stopped the paykafka test stack in {state}" in out
            assert not stack.status().running
        finally:
            stack.down(purge=True)
