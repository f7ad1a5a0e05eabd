"""`paykafka describe` on a real 3-broker KRaft cluster: replicas, ISR, and a broker going away.

Starts its own stack (brokers on 29092-29094, controllers 30092-30094, registry on 28081 with
management on 29081) in a temporary state dir, and always takes it down again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from paykafka import Settings
from paykafka._cli import main
from paykafka._stack import Stack, StackConfig

pytestmark = pytest.mark.stack

KAFKA_PORT = 29092
REGISTRY_PORT = 28081
STOPPED = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A 3-broker cluster and registry of this module's own, torn down whatever happens."""
    config = StackConfig.from_env(
        state_dir=tmp_path_factory.mktemp("describe-cluster"),
        kafka_port=KAFKA_PORT,
        registry_port=REGISTRY_PORT,
        brokers=3,
        kafka_heap_mb=384,
        start_timeout=180.0,
    )
    stack = Stack(config)
    try:
        stack.up()
        yield stack
    finally:
        stack.down(timeout=20.0, purge=True)


def connection(stack: Stack) -> list[str]:
    return [
        "--bootstrap-servers",
        stack.config.bootstrap_servers,
        "--registry-url",
        stack.config.registry_url,
    ]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def describe_json(capsys: pytest.CaptureFixture[str], stack: Stack, topic: str) -> tuple[int, Any]:
    code, out, err = run(capsys, "describe", topic, "--json", *connection(stack))
    assert out, err
    return code, json.loads(out)


def independent_view(stack: Stack, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """(leader, replicas, sorted ISR) per partition, straight from a plain AdminClient."""
    settings = Settings(bootstrap_servers=stack.config.bootstrap_servers)
    meta = AdminClient(settings.admin_config()).list_topics(timeout=10).topics[topic]
    return {p.id: (p.leader, list(p.replicas), sorted(p.isrs)) for p in meta.partitions.values()}


def our_view(described: Any) -> dict[int, tuple[int, list[int], list[int]]]:
    return {
        p["partition"]: (p["leader"], p["replicas"], sorted(p["isr"]))
        for p in described["partitions"]
    }


def agreeing(
    capsys: pytest.CaptureFixture[str], stack: Stack, topic: str, timeout: float = 30.0
) -> tuple[int, Any]:
    """describe's answer once an independent client sees exactly the same partitions.

    Both ask the cluster afresh; right after a broker change the two requests may straddle the
    controller's update, so they are compared until they agree (and must within ``timeout``).
    """
    deadline = time.monotonic() + timeout
    while True:
        code, described = describe_json(capsys, stack, topic)
        theirs = independent_view(stack, topic)
        if our_view(described) == theirs:
            return code, described
        if time.monotonic() >= deadline:
            pytest.fail(f"describe says {our_view(described)}, the cluster says {theirs}")
        time.sleep(1.0)


def create_replicated_topic(capsys: pytest.CaptureFixture[str], stack: Stack) -> str:
    topic = f"payments-rf3-{uuid.uuid4().hex[:8]}"
    code, _, err = run(
        capsys,
        "create-topic",
        topic,
        "--partitions",
        "3",
        "--replication-factor",
        "3",
        *connection(stack),
    )
    assert code == 0, err
    return topic


def test_describe_shows_three_replicas_in_sync(
    cluster: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """On 3 brokers a replicated topic reads ReplicationFactor 3, Isr == Replicas, healthy."""
    topic = create_replicated_topic(capsys, cluster)
    code, out, err = run(
        capsys,
        "produce",
        "--topic",
        topic,
        "--user",
        "marek",
        "--amount",
        "249.99",
        "--currency",
        "PLN",
        "--method",
        "credit_card",
        "--count",
        "3",
        *connection(cluster),
    )
    assert code == 0, err
    code, described = agreeing(capsys, cluster, topic)
    assert code == 0
    assert described["replication_factor"] == 3
    assert described["health"] == "healthy"
    assert described["configs"]["min.insync.replicas"]["value"] == "2"
    for p in described["partitions"]:
        assert sorted(p["replicas"]) == [1, 2, 3]
        assert sorted(p["isr"]) == [1, 2, 3]
        assert p["leader"] in (1, 2, 3)
    assert described["registry"]["state"] == "registered"
    code, out, _ = run(capsys, "describe", topic, *connection(cluster))
    assert code == 0
    assert f"Topic: {topic}   PartitionCount: 3   ReplicationFactor: 3" in out
    assert "Health: healthy - Isr == Replicas on all 3 partition(s)." in out


def test_stopped_broker_shrinks_isr_and_describe_says_so(
    cluster: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """With broker 3 stopped: Isr < Replicas, named as lagging, exit 3; healthy once it returns."""
    topic = create_replicated_topic(capsys, cluster)
    agreeing(capsys, cluster, topic)
    cluster.stop_node(STOPPED, timeout=30.0)
    try:
        deadline = time.monotonic() + 60
        code, described = describe_json(capsys, cluster, topic)
        while described["health"] == "healthy" and time.monotonic() < deadline:
            time.sleep(1.0)
            code, described = describe_json(capsys, cluster, topic)
        code, described = agreeing(capsys, cluster, topic)
        assert code == 3
        assert described["health"] == "under-replicated"
        for p in described["partitions"]:
            assert STOPPED in p["replicas"]
            assert STOPPED not in p["isr"]
            assert p["out_of_sync"] == [STOPPED]
            assert p["leader"] != STOPPED
        assert described["unwritable_partitions"] == []  # ISR 2 >= min.insync.replicas 2
        code, out, _ = run(capsys, "describe", topic, *connection(cluster))
        assert code == 3
        assert f"UNDER-REPLICATED: broker {STOPPED} not in sync" in out
        assert f"broker {STOPPED} lagging or down" in out
        assert "Writes: still accepted" in out
    finally:
        cluster.start_node(STOPPED)
    deadline = time.monotonic() + 90
    code, described = describe_json(capsys, cluster, topic)
    while described["health"] != "healthy" and time.monotonic() < deadline:
        time.sleep(1.0)
        code, described = describe_json(capsys, cluster, topic)
    assert code == 0
    assert all(sorted(p["isr"]) == [1, 2, 3] for p in described["partitions"])
