"""The operator CLI (topics, describe, create-topic, events, lag, produce, track), for real."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from paykafka import PaymentEvent, PaymentProducer, RegistryClient, Settings

from ._cli import connection_flags, run_cli

PAYKAFKA = str(Path(sys.executable).with_name("paykafka"))


def send(settings: Settings, n: int, user: str = "marek") -> list[PaymentEvent]:
    sent = [
        PaymentEvent(
            user=f"{user}-{i % 3}", amount=Decimal(f"{i + 1}.25"), currency="PLN", method="blik"
        )
        for i in range(n)
    ]
    with PaymentProducer(settings) as producer:
        for e in sent:
            producer.send(e)
    return sent


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def fresh_topic(live_settings: Settings) -> Iterator[Settings]:
    """Settings on a topic name nobody created yet; the topic and subject are removed after."""
    name = f"payments-ops-{uuid.uuid4().hex[:10]}"
    settings = attrs.evolve(live_settings, topic=name, group_id=f"{name}-group")
    yield settings
    admin = AdminClient(settings.admin_config())
    for f in admin.delete_topics([name]).values():
        with contextlib.suppress(Exception):
            f.result(timeout=30)
    with RegistryClient(settings) as registry, contextlib.suppress(Exception):
        registry.delete_subject(settings.subject, permanent=True)


# -- topics --------------------------------------------------------------------------------------


def test_topics_lists_new_topic_and_marks_internal(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`topics` lists a fresh topic with its partitions, and __consumer_offsets as internal."""
    send(topic_settings, 1)
    # A group that committed guarantees Kafka's internal __consumer_offsets topic exists.
    code, _, _ = run_cli(
        capsys, "track", "--from-beginning", "--until-end", *connection_flags(topic_settings)
    )
    assert code == 0
    code, out, _ = run_cli(capsys, "topics", "--json", *connection_flags(topic_settings))
    assert code == 0
    by_name = {t["topic"]: t for t in json.loads(out)}
    assert by_name[topic_settings.topic]["partitions"] == 3
    assert by_name[topic_settings.topic]["internal"] is False
    code, out, _ = run_cli(capsys, "topics", *connection_flags(topic_settings))
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith(topic_settings.topic + " "))
    assert "internal" not in line
    assert by_name["__consumer_offsets"]["internal"] is True
    offsets_line = next(ln for ln in out.splitlines() if ln.startswith("__consumer_offsets"))
    assert offsets_line.rstrip().endswith("internal")


# -- describe ------------------------------------------------------------------------------------


def test_describe_agrees_with_an_independent_client(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """describe's partitions, leaders, replicas, ISR and configs equal AdminClient's own view."""
    send(topic_settings, 3)
    code, out, _ = run_cli(capsys, "describe", "--json", *connection_flags(topic_settings))
    assert code == 0
    described = json.loads(out)
    admin = AdminClient(topic_settings.admin_config())
    meta = admin.list_topics(timeout=10).topics[topic_settings.topic]
    assert described["partition_count"] == len(meta.partitions)
    assert described["replication_factor"] == max(len(p.replicas) for p in meta.partitions.values())
    for p in described["partitions"]:
        theirs = meta.partitions[p["partition"]]
        assert p["leader"] == theirs.leader
        assert p["replicas"] == list(theirs.replicas)
        assert sorted(p["isr"]) == sorted(theirs.isrs)
        assert p["health"] == "healthy"
    resource = ConfigResource(ResourceType.TOPIC, topic_settings.topic)
    configs = next(iter(admin.describe_configs([resource]).values())).result(timeout=10)
    for name in ("retention.ms", "min.insync.replicas", "cleanup.policy"):
        assert described["configs"][name]["value"] == configs[name].value
    assert described["registry"]["subject"] == f"{topic_settings.topic}-value"
    assert described["registry"]["state"] == "registered"
    with RegistryClient(topic_settings) as registry:
        latest = registry.version(topic_settings.subject)
    assert described["registry"]["schema_id"] == latest.schema_id
    assert described["registry"]["version"] == latest.version


def test_describe_human_output_reads_like_the_tutorial(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The human view has PartitionCount, ReplicationFactor, Leader/Replicas/Isr and health."""
    send(topic_settings, 1)
    code, out, _ = run_cli(
        capsys, "describe", topic_settings.topic, *connection_flags(topic_settings)[:4]
    )
    assert code == 0
    assert f"Topic: {topic_settings.topic}   PartitionCount: 3   ReplicationFactor: 1" in out
    assert "Partition  Leader  Replicas  Isr  Health" in out
    assert "retention.ms=" in out
    assert "min.insync.replicas=" in out
    assert "cleanup.policy=delete" in out
    assert "Health: healthy - Isr == Replicas on all 3 partition(s)." in out
    assert f"Registry: subject {topic_settings.topic}-value   latest version" in out


def test_describe_survives_an_unreachable_registry(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the registry down, describe still shows the topic and says the registry is away."""
    dead_registry = "http://127.0.0.1:1/apis/ccompat/v7"
    code, out, _ = run_cli(
        capsys,
        "describe",
        topic_settings.topic,
        "--bootstrap-servers",
        topic_settings.bootstrap_servers,
        "--registry-url",
        dead_registry,
    )
    assert code == 0
    assert "PartitionCount: 3" in out
    assert "registry unreachable" in out


def test_describe_missing_topic_exits_4(
    live_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A topic that does not exist is exit code 4 with one line saying how to create it."""
    name = f"missing-{uuid.uuid4().hex[:8]}"
    code, out, err = run_cli(capsys, "describe", name)
    assert code == 4
    assert out == ""
    assert err.count("\n") == 1
    assert f"paykafka create-topic {name}" in err


def test_unreachable_broker_is_one_line_exit_5_without_librdkafka_noise() -> None:
    """No broker: exit 5 within the timeout, one stderr line naming the address, no log spam."""
    started = time.monotonic()
    proc = subprocess.run(
        [PAYKAFKA, "topics", "--bootstrap-servers", "127.0.0.1:1", "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 5
    assert time.monotonic() - started < 20
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "127.0.0.1:1" in proc.stderr
    assert "paykafka stack up" in proc.stderr


# -- create-topic and ensure_topic ---------------------------------------------------------------


def test_create_topic_then_refuse_duplicate(
    fresh_topic: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """create-topic creates with the asked partitions; again is exit 4 unless --if-not-exists."""
    base = ["create-topic", fresh_topic.topic, "--bootstrap-servers", fresh_topic.bootstrap_servers]
    code, out, _ = run_cli(capsys, *base, "--partitions", "2", "--config", "retention.ms=3600000")
    assert code == 0, out
    assert "Created topic" in out
    meta = AdminClient(fresh_topic.admin_config()).list_topics(timeout=10)
    assert len(meta.topics[fresh_topic.topic].partitions) == 2
    code, _, err = run_cli(capsys, *base, "--partitions", "2")
    assert code == 4
    assert "already exists" in err
    code, out, _ = run_cli(capsys, *base, "--if-not-exists")
    assert code == 0
    code, out, _ = run_cli(capsys, "describe", "--json", *connection_flags(fresh_topic))
    assert json.loads(out)["configs"]["retention.ms"]["value"] == "3600000"


def test_create_topic_refuses_more_replicas_than_brokers(
    fresh_topic: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A replication factor above the brokers alive is a usage error (2), not a broker error."""
    brokers = len(AdminClient(fresh_topic.admin_config()).list_topics(timeout=10).brokers)
    code, _, err = run_cli(
        capsys,
        "create-topic",
        fresh_topic.topic,
        "--bootstrap-servers",
        fresh_topic.bootstrap_servers,
        "--replication-factor",
        str(brokers + 1),
    )
    assert code == 2
    assert f"has {brokers} alive" in err


def test_producer_creates_its_missing_topic_with_settings_defaults(fresh_topic: Settings) -> None:
    """PaymentProducer.start() creates the topic: topic_partitions, replication capped."""
    settings = attrs.evolve(fresh_topic, topic_partitions=2, topic_replication_factor=3)
    with PaymentProducer(settings):
        pass
    meta = AdminClient(settings.admin_config()).list_topics(timeout=10)
    topic = meta.topics[settings.topic]
    assert len(topic.partitions) == 2
    expected_rf = min(3, len(meta.brokers))
    assert all(len(p.replicas) == expected_rf for p in topic.partitions.values())


def test_producer_leaves_topics_alone_when_told(fresh_topic: Settings) -> None:
    """With create_topic=False, starting a producer creates nothing."""
    settings = attrs.evolve(fresh_topic, create_topic=False)
    PaymentProducer(settings).start().close()
    meta = AdminClient(settings.admin_config()).list_topics(timeout=10)
    assert settings.topic not in meta.topics


# -- produce, events, track, lag -----------------------------------------------------------------


def test_produce_then_replay_decoded_with_positions(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`produce --count 4` then `events --from-beginning --until-end` shows those 4, decoded."""
    code, out, _ = run_cli(
        capsys,
        "produce",
        "--json",
        *connection_flags(topic_settings, group=False),
        "--user",
        "ola",
        "--amount",
        "19.99",
        "--currency",
        "EUR",
        "--method",
        "paypal",
        "--count",
        "4",
    )
    assert code == 0
    delivered = json_lines(out)
    assert len(delivered) == 4
    code, out, err = run_cli(
        capsys, "events", "--from-beginning", "--until-end", *connection_flags(topic_settings)
    )
    assert code == 0
    lines = out.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4
    assert {(r["partition"], r["offset"]) for r in records} == {
        (d["partition"], d["offset"]) for d in delivered
    }
    assert {r["event"]["payment_id"] for r in records} == {
        d["event"]["payment_id"] for d in delivered
    }
    assert all(r["event"]["amount"] == "19.99" for r in records)
    assert all(r["key"] == "ola" for r in records)
    assert "Processed a total of 4 messages" in err
    # Looking never commits: no consumer group was left behind on the broker.
    groups = AdminClient(topic_settings.admin_config()).list_consumer_groups().result(timeout=10)
    assert not [g.group_id for g in groups.valid if g.group_id.startswith("paykafka-events-")]


def test_events_shows_undecodable_records_and_exits_3(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record that is not Avro is printed with its DecodeError reason; replay goes on."""
    send(topic_settings, 2, user="same")
    raw = Producer(topic_settings.producer_config())
    raw.produce(topic_settings.topic, b"not avro at all", b"same-0")
    raw.flush(10)
    send(topic_settings, 1, user="same")
    code, out, err = run_cli(
        capsys, "events", "--from-beginning", "--until-end", *connection_flags(topic_settings)
    )
    assert code == 3
    records = json_lines(out)
    assert len(records) == 4
    bad = [r for r in records if "error" in r]
    assert len(bad) == 1
    assert bad[0]["error"]["reason"] == "not_confluent_framing"
    assert "1 could not be decoded" in err


def test_events_from_partition_and_offset(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """--partition P --offset O starts exactly there and reads only that partition."""
    send(topic_settings, 9, user="one")  # users one-0..2 spread over partitions
    code, out, _ = run_cli(
        capsys, "events", "--from-beginning", "--until-end", *connection_flags(topic_settings)
    )
    everything = json_lines(out)
    partition = int(everything[0]["partition"])
    mine = [r for r in everything if r["partition"] == partition]
    code, out, _ = run_cli(
        capsys,
        "events",
        "--until-end",
        "--partition",
        str(partition),
        "--offset",
        "1",
        *connection_flags(topic_settings),
    )
    assert code == 0
    got = json_lines(out)
    assert [r["offset"] for r in got] == [r["offset"] for r in mine if r["offset"] >= 1]
    code, _, err = run_cli(
        capsys,
        "events",
        "--partition",
        str(partition),
        "--offset",
        "999",
        *connection_flags(topic_settings),
    )
    assert code == 2
    assert "outside partition" in err


def test_events_max_messages_stops_following(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --until-end, --max-messages alone ends the replay after N records."""
    send(topic_settings, 5)
    code, out, _ = run_cli(
        capsys,
        "events",
        "--from-beginning",
        "--max-messages",
        "2",
        *connection_flags(topic_settings),
    )
    assert code == 0
    assert len(out.splitlines()) == 2


def test_events_follows_new_events_until_ctrl_c(topic_settings: Settings) -> None:
    """Like the console consumer, `events` waits for new events and Ctrl+C ends it cleanly."""
    env = {
        **os.environ,
        "PAYKAFKA_BOOTSTRAP_SERVERS": topic_settings.bootstrap_servers,
        "PAYKAFKA_REGISTRY_URL": topic_settings.registry_url,
    }
    proc = subprocess.Popen(
        [PAYKAFKA, "events", "--topic", topic_settings.topic],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        line = ""
        deadline = time.monotonic() + 60
        with PaymentProducer(topic_settings) as producer:
            while not line and time.monotonic() < deadline:
                producer.send(
                    PaymentEvent(user="live", amount="1.00", currency="PLN", method="cash")
                )
                producer.flush(10)
                ready, _, _ = select.select([proc.stdout], [], [], 1.0)
                if ready:
                    line = proc.stdout.readline()
        assert json.loads(line)["event"]["user"] == "live"
        assert proc.poll() is None  # still following
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "Processed a total of" in err


def test_lag_counts_unread_then_track_catches_up(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """lag shows every event unread for a new group; after `track --until-end` it is 0."""
    send(topic_settings, 6)
    code, out, _ = run_cli(capsys, "lag", "--json", *connection_flags(topic_settings))
    assert code == 0
    before = json.loads(out)
    assert before["total_lag"] == 6
    assert before["has_commits"] is False
    assert sum(p["end"] for p in before["partitions"]) == 6
    code, out, err = run_cli(
        capsys, "track", "--from-beginning", "--until-end", *connection_flags(topic_settings)
    )
    assert code == 0
    assert len([ln for ln in out.splitlines() if ln.startswith("Payment: ")]) == 6
    assert "Tracked 6 events" in err
    code, out, _ = run_cli(capsys, "lag", *connection_flags(topic_settings))
    assert code == 0
    assert "Total lag: 0" in out
    code, out, _ = run_cli(capsys, "lag", "--json", *connection_flags(topic_settings))
    after = json.loads(out)
    assert all(p["committed"] == p["end"] for p in after["partitions"] if p["end"] > 0)


def test_track_json_lines_carry_positions(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`track --json` prints one decoded JSON line per event, with partition and offset."""
    sent = send(topic_settings, 3)
    code, out, _ = run_cli(
        capsys,
        "track",
        "--json",
        "--from-beginning",
        "--until-end",
        *connection_flags(topic_settings),
    )
    assert code == 0
    got = json_lines(out)
    assert {r["event"]["payment_id"] for r in got} == {str(e.payment_id) for e in sent}
    assert all(isinstance(r["offset"], int) for r in got)


def test_produce_rejects_an_invalid_amount_with_exit_2(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """An amount with too many decimals for its currency is a usage error naming the field."""
    code, out, err = run_cli(
        capsys,
        "produce",
        *connection_flags(topic_settings, group=False),
        "--user",
        "ola",
        "--amount",
        "1.001",
        "--currency",
        "PLN",
        "--method",
        "blik",
    )
    assert code == 2
    assert out == ""
    assert "invalid amount" in err
