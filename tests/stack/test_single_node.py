"""A real single-node stack of our own: idempotent ``up``, status, registry semantics, persistence,
pre-flight errors and a ``down`` that leaves no JVM behind."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from paykafka import StackError
from paykafka._cli import main
from paykafka._stack import Stack
from paykafka._stack._process import rss_bytes

from ._support import KAFKA_PORT, REGISTRY_PORT, jvms_of, running_stack, stack_config

pytestmark = pytest.mark.stack

AVRO_V1 = json.dumps(
    {
        "type": "record",
        "name": "Probe",
        "fields": [{"name": "id", "type": "string"}],
    }
)
AVRO_V2_BREAKING = json.dumps(
    {
        "type": "record",
        "name": "Probe",
        "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "int"}],
    }
)
SR_JSON = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One single-node stack for the module, on 19092 / 18081."""
    with running_stack(tmp_path_factory.mktemp("single")) as running:
        yield running


@pytest.fixture
def registry(stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP client on the stack's ccompat API."""
    with httpx.Client(base_url=stack.config.registry_url, headers=SR_JSON, timeout=10) as client:
        yield client


def register(registry: httpx.Client, subject: str, schema: str) -> httpx.Response:
    return registry.post(f"/subjects/{subject}/versions", json={"schema": schema})


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_second_up_is_harmless(stack: Stack) -> None:
    """``up`` on a running stack starts nothing and keeps the same JVMs."""
    before = (stack.node_pid(1), stack.registry_pid())
    assert stack.up() == ()
    assert (stack.node_pid(1), stack.registry_pid()) == before


def test_cli_up_says_already_up(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """``paykafka stack up`` again exits 0, says so and prints both endpoints."""
    code, out = cli(
        capsys,
        "stack",
        "up",
        "--state-dir",
        str(stack.config.state_dir),
        "--kafka-port",
        str(KAFKA_PORT),
        "--registry-port",
        str(REGISTRY_PORT),
    )
    assert code == 0
    assert "already up" in out
    assert f"localhost:{KAFKA_PORT}" in out
    assert stack.config.registry_url in out
    # Moved ports: clients would still talk to 9092/8081 without these two lines.
    assert f"export PAYKAFKA_BOOTSTRAP_SERVERS=localhost:{KAFKA_PORT}" in out
    assert f"export PAYKAFKA_REGISTRY_URL={stack.config.registry_url}" in out


def test_status_json_reports_pid_port_and_rss(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status --json`` lists both JVMs with the pids we control, their ports and RSS."""
    code, out = cli(capsys, "stack", "status", "--json", "--state-dir", str(stack.config.state_dir))
    assert code == 0
    data = json.loads(out)
    assert data["running"] is True
    assert data["bootstrap_servers"] == f"localhost:{KAFKA_PORT}"
    by_name = {c["name"]: c for c in data["components"]}
    assert by_name["kafka-1"]["pid"] == stack.node_pid(1)
    assert by_name["kafka-1"]["port"] == KAFKA_PORT
    assert by_name["registry"]["pid"] == stack.registry_pid()
    assert by_name["registry"]["port"] == REGISTRY_PORT
    assert all(c["rss_bytes"] > 0 for c in data["components"])


def test_single_node_stays_under_memory_budget(stack: Stack) -> None:
    """Broker and registry together stay under 1.5 GiB resident."""
    pids = [stack.node_pid(1), stack.registry_pid()]
    total = sum(rss_bytes(pid) or 0 for pid in pids if pid is not None)
    assert 0 < total < 1.5 * 2**30


def test_logs_go_to_files_in_the_state_dir(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both JVMs log into ``<state>/logs`` and ``stack logs`` shows them."""
    files = stack.log_files("all")
    assert [f.name for f in files] == ["kafka-1.log", "registry.log"]
    assert all(f.parent == stack.config.state_dir / "logs" and f.stat().st_size > 0 for f in files)
    code, out = cli(
        capsys, "stack", "logs", "kafka", "-n", "5", "--state-dir", str(stack.config.state_dir)
    )
    assert code == 0
    assert 0 < len(out.splitlines()) <= 5


def test_registry_defaults_to_backward_and_refuses_breaking_change(
    registry: httpx.Client,
) -> None:
    """The global rule is BACKWARD, so a new required field is refused with 409."""
    assert registry.get("/config").json()["compatibilityLevel"] == "BACKWARD"
    subject = f"stack-test-{uuid.uuid4().hex[:8]}"
    assert register(registry, subject, AVRO_V1).status_code == 200
    refused = register(registry, subject, AVRO_V2_BREAKING)
    assert refused.status_code == 409


def test_subjects_can_be_deleted(registry: httpx.Client) -> None:
    """Soft then permanent deletion through the ccompat API works (tests can clean up)."""
    subject = f"stack-test-{uuid.uuid4().hex[:8]}"
    assert register(registry, subject, AVRO_V1).status_code == 200
    assert registry.delete(f"/subjects/{subject}").json() == [1]
    assert registry.delete(f"/subjects/{subject}", params={"permanent": "true"}).json() == [1]
    assert subject not in registry.get("/subjects").json()


def test_same_schema_gets_same_id_under_every_subject(registry: httpx.Client) -> None:
    """ccompat ids are content ids, as in Confluent: one schema, one id, any subject."""
    first, second = (f"stack-test-{uuid.uuid4().hex[:8]}" for _ in range(2))
    id_a = register(registry, first, AVRO_V1).json()["id"]
    id_b = register(registry, second, AVRO_V1).json()["id"]
    assert id_a == id_b


def test_taken_port_gives_clear_error(stack: Stack, tmp_path: Path) -> None:
    """A second stack on the same ports fails before starting anything, naming port and pid."""
    other = Stack(stack_config(tmp_path / "other"))
    with pytest.raises(StackError) as caught:
        other.up()
    message = str(caught.value)
    assert f"port {KAFKA_PORT}" in message
    assert f"pid {stack.node_pid(1)}" in message
    assert "--kafka-port" in message
    assert jvms_of(tmp_path / "other") == []


def test_schemas_survive_down_and_up(stack: Stack, registry: httpx.Client) -> None:
    """A registered schema is still there after ``down`` and ``up``."""
    subject = f"stack-test-{uuid.uuid4().hex[:8]}"
    schema_id = register(registry, subject, AVRO_V1).json()["id"]

    assert set(stack.down(timeout=20.0)) == {"kafka-1", "registry"}
    assert stack.status().running is False
    assert set(stack.up()) == {"kafka-1", "registry"}

    latest = registry.get(f"/subjects/{subject}/versions/latest").json()
    assert latest["id"] == schema_id
    assert json.loads(latest["schema"]) == json.loads(AVRO_V1)


def test_down_leaves_no_jvm_behind(stack: Stack) -> None:
    """After ``down`` no recorded pid is a live JVM and no JVM mentions the state dir.

    Runs last in this module: the fixture's own ``down`` afterwards is then a no-op.
    """
    pids = {stack.node_pid(1), stack.registry_pid()}
    assert None not in pids
    assert set(jvms_of(stack.config.state_dir)) == pids

    assert set(stack.down(timeout=20.0)) == {"kafka-1", "registry"}

    assert stack.node_pid(1) is None
    assert stack.registry_pid() is None
    assert jvms_of(stack.config.state_dir) == []
    assert not any(c.running for c in stack.status().components)
