"""The operator's view of topics and offsets, and its CLI rendering (pure logic, no broker)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException
from confluent_kafka.admin import ConfigSource  # type: ignore[attr-defined]
from hypothesis import given
from hypothesis import strategies as st

from paykafka import (
    BrokerUnavailableError,
    ConfigError,
    DecodeError,
    DecodeReason,
    KafkaError,
    PaymentEvent,
    RegistryClient,
    Settings,
)
from paykafka._admin import (
    GroupLag,
    KafkaAdmin,
    PartitionInfo,
    PartitionLag,
    RecordView,
    SubjectStatus,
    TopicConfig,
    TopicDescription,
    TopicHealth,
    _source,
    _translate,
    describe_subject,
    min_insync_for,
    partition_health,
    replication_for,
)
from paykafka._cli import build_parser
from paykafka._cli._ops_cmd import (
    _description_text,
    _duration,
    _key_value,
    _lag_text,
    _Progress,
    record_line,
)

broker_ids = st.lists(st.integers(1, 9), min_size=1, max_size=5, unique=True)


def topic(*partitions: PartitionInfo, min_isr: str = "2") -> TopicDescription:
    return TopicDescription(
        name="payments",
        internal=False,
        partitions=partitions,
        configs=(TopicConfig("min.insync.replicas", min_isr, "topic"),),
    )


# -- health --------------------------------------------------------------------------------------


def test_isr_equal_to_replicas_is_healthy() -> None:
    """The tutorial's rule: Isr == Replicas (in any order) reads as healthy."""
    assert partition_health(1, (1, 2, 3), (3, 1, 2)) is TopicHealth.HEALTHY


def test_isr_smaller_than_replicas_is_under_replicated() -> None:
    """Isr < Replicas reads as under-replicated, naming the broker out of sync."""
    p = PartitionInfo(partition=0, leader=1, replicas=(1, 2, 3), isr=(1, 2))
    assert p.health is TopicHealth.UNDER_REPLICATED
    assert p.out_of_sync == (3,)


@pytest.mark.parametrize("leader", [None, -1])
def test_no_leader_is_offline(leader: int | None) -> None:
    """A partition without a leader is offline whatever its ISR says."""
    assert partition_health(leader, (1,), (1,)) is TopicHealth.OFFLINE


@given(replicas=broker_ids, data=st.data())
def test_health_is_healthy_exactly_when_no_replica_is_out_of_sync(
    replicas: list[int], data: st.DataObject
) -> None:
    """For any replica set and ISR subset, healthy <=> nothing out of sync."""
    isr = data.draw(st.lists(st.sampled_from(replicas), unique=True, min_size=1))
    p = PartitionInfo(partition=0, leader=isr[0], replicas=tuple(replicas), isr=tuple(isr))
    assert (p.health is TopicHealth.HEALTHY) == (p.out_of_sync == ())


def test_topic_health_is_its_worst_partition() -> None:
    """One offline partition makes the topic offline, one lagging makes it under-replicated."""
    good = PartitionInfo(0, 1, (1, 2, 3), (1, 2, 3))
    lagging = PartitionInfo(1, 2, (2, 3, 1), (2, 1))
    dead = PartitionInfo(2, None, (3,), ())
    assert topic(good).health is TopicHealth.HEALTHY
    assert topic(good, lagging).health is TopicHealth.UNDER_REPLICATED
    assert topic(lagging, dead, good).health is TopicHealth.OFFLINE


def test_unwritable_partitions_are_those_below_min_insync() -> None:
    """With min.insync.replicas=2 an ISR of one refuses acks=all writes; an ISR of two does not."""
    two = PartitionInfo(0, 1, (1, 2, 3), (1, 2))
    one = PartitionInfo(1, 1, (1, 2, 3), (1,))
    described = topic(two, one)
    assert described.min_insync_replicas == 2
    assert [p.partition for p in described.unwritable] == [1]


def test_replication_factor_and_partition_count() -> None:
    """ReplicationFactor is the size of the replica set, PartitionCount the partitions."""
    described = topic(PartitionInfo(0, 1, (1, 2), (1, 2)), PartitionInfo(1, 2, (2, 1), (2, 1)))
    assert (described.partition_count, described.replication_factor) == (2, 2)
    assert topic().replication_factor == 0


# -- creation defaults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "brokers", "expected"), [(3, 1, 1), (3, 3, 3), (3, 5, 3), (1, 3, 1), (2, 0, 1)]
)
def test_replication_is_capped_at_the_brokers_alive(
    wanted: int, brokers: int, expected: int
) -> None:
    """The default factor 3 still works on a one-broker stack, and never exceeds the wish."""
    assert replication_for(wanted, brokers) == expected


@pytest.mark.parametrize(("rf", "expected"), [(1, 1), (2, 1), (3, 2), (5, 4)])
def test_min_insync_survives_one_broker_loss(rf: int, expected: int) -> None:
    """min.insync.replicas leaves room for exactly one replica to be down."""
    assert min_insync_for(rf) == expected


def test_settings_carry_topic_creation_defaults() -> None:
    """create_topic, topic_partitions and topic_replication_factor come from PAYKAFKA_* too."""
    s = Settings.from_env(
        {
            "PAYKAFKA_CREATE_TOPIC": "false",
            "PAYKAFKA_TOPIC_PARTITIONS": "6",
            "PAYKAFKA_TOPIC_REPLICATION_FACTOR": "2",
        }
    )
    assert (s.create_topic, s.topic_partitions, s.topic_replication_factor) == (False, 6, 2)
    assert (Settings().create_topic, Settings().topic_partitions) == (True, 3)
    with pytest.raises(ConfigError, match="PAYKAFKA_TOPIC_PARTITIONS"):
        Settings.from_env({"PAYKAFKA_TOPIC_PARTITIONS": "many"})


# -- lag -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("committed", "start", "end", "lag"),
    [
        (10, 0, 15, 5),  # behind by five
        (15, 0, 15, 0),  # caught up
        (None, 3, 15, 12),  # never committed: starts at the oldest retained event
        (1, 5, 15, 10),  # committed offset already deleted by retention
    ],
)
def test_partition_lag(committed: int | None, start: int, end: int, lag: int) -> None:
    """Lag counts retained events the group has not read yet."""
    assert PartitionLag(0, committed, start, end).lag == lag


def test_group_lag_totals_and_commit_flag() -> None:
    """The total is the sum over partitions; a group with no commit at all says so."""
    lag = GroupLag("g", "t", (PartitionLag(0, 2, 0, 5), PartitionLag(1, None, 0, 4)))
    assert lag.total == 7
    assert lag.has_commits
    assert not GroupLag("g", "t", (PartitionLag(0, None, 0, 4),)).has_commits
    text = _lag_text(GroupLag("g", "t", (PartitionLag(0, None, 0, 4),)))
    assert "Total lag: 4" in text
    assert "committed nothing" in text


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [RdKafkaError._TRANSPORT, RdKafkaError._TIMED_OUT])
def test_no_answer_becomes_broker_unavailable_naming_the_address(code: int) -> None:
    """Transport failures and timeouts say which bootstrap address and suggest stack up."""
    settings = Settings(bootstrap_servers="broker.test:9999")
    error = _translate(settings, 5.0, KafkaException(RdKafkaError(code)), "listing topics")
    assert isinstance(error, BrokerUnavailableError)
    assert error.retriable
    assert "broker.test:9999" in str(error)
    assert "paykafka stack up" in str(error)


def test_broker_refusals_keep_their_code() -> None:
    """A refusal (not an outage) is a KafkaError carrying confluent's error name."""
    exc = KafkaException(RdKafkaError(RdKafkaError.TOPIC_AUTHORIZATION_FAILED))
    error = _translate(Settings(), 5.0, exc, "creating topic 'x'")
    assert type(error) is KafkaError
    assert error.code == "TOPIC_AUTHORIZATION_FAILED"
    assert "creating topic 'x'" in str(error)


def test_admin_timeout_must_be_positive() -> None:
    """A zero timeout is refused before any client is built."""
    with pytest.raises(ConfigError, match="timeout"):
        KafkaAdmin(Settings(), timeout=0)


def test_config_sources_read_plainly() -> None:
    """Config sources are shown as topic, broker or default, from an int or the enum."""
    assert _source(1) == "topic"
    assert _source(ConfigSource.DEFAULT_CONFIG) == "default"
    assert _source(4) == "broker"


# -- the registry section ------------------------------------------------------------------------


def registry(handler: Callable[[httpx.Request], httpx.Response]) -> RegistryClient:
    settings = Settings(registry_url="http://registry.test/apis/ccompat/v7")
    return RegistryClient(settings, transport=httpx.MockTransport(handler))


def test_subject_status_registered_with_global_compatibility() -> None:
    """Latest version and id are shown; with no subject level the global one is flagged."""

    def handler(req: httpx.Request) -> httpx.Response:
        path = req.url.path.removeprefix("/apis/ccompat/v7")
        if path == "/subjects/payments-value/versions/latest":
            body = {"subject": "payments-value", "version": 4, "id": 9, "schema": "{}"}
            return httpx.Response(200, json=body)
        if path == "/config/payments-value":
            return httpx.Response(404, json={"error_code": 40408, "message": "not set"})
        if path == "/config":
            return httpx.Response(200, json={"compatibilityLevel": "BACKWARD"})
        return httpx.Response(500)

    status = describe_subject(registry(handler), "payments-value")
    assert (status.state, status.version, status.schema_id) == ("registered", 4, 9)
    assert (status.compatibility, status.compatibility_is_global) == ("BACKWARD", True)


def test_subject_status_not_registered() -> None:
    """An unknown subject is a state, not an error."""
    answer = httpx.Response(404, json={"error_code": 40401, "message": "Subject not found"})
    status = describe_subject(registry(lambda _r: answer), "payments-value")
    assert status.state == "not_registered"


def test_unreachable_registry_is_reported_not_raised() -> None:
    """A registry outage leaves describe working, with the reason kept for display."""

    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    status = describe_subject(registry(handler), "payments-value")
    assert status.state == "unreachable"
    assert status.error is not None
    assert "registry.test" in status.error


# -- CLI rendering -------------------------------------------------------------------------------


def test_describe_text_shows_the_tutorial_fields_and_reading() -> None:
    """Human describe output has the tutorial's fields and says which broker is lagging."""
    described = topic(
        PartitionInfo(0, 1, (1, 2, 3), (1, 2, 3)), PartitionInfo(1, 2, (2, 3, 1), (2, 1))
    )
    text = _description_text(described, SubjectStatus("payments-value", "unreachable", error="x"))
    assert "PartitionCount: 2   ReplicationFactor: 3" in text
    assert "UNDER-REPLICATED: broker 3 not in sync" in text
    assert "broker 3 lagging or down" in text
    assert "Writes: still accepted" in text
    assert "registry unreachable" in text


def test_record_line_keeps_exact_amount_and_position() -> None:
    """A decoded record is one JSON line with partition, offset and the exact amount."""
    event = PaymentEvent(user="marek", amount=Decimal("249.99"), currency="PLN", method="blik")
    view = RecordView(2, 17, "marek", None, 5, event, None)
    line = record_line(view)
    data = json.loads(line)
    assert (data["partition"], data["offset"], data["schema_id"]) == (2, 17, 5)
    assert data["event"]["amount"] == "249.99"
    assert data["event"]["payment_id"] == str(event.payment_id)


def test_record_line_for_undecodable_record_names_the_reason() -> None:
    """An undecodable record is shown with its DecodeError reason instead of an event."""
    error = DecodeError(DecodeReason.NOT_CONFLUENT_FRAMING, "not Confluent wire format")
    data = json.loads(record_line(RecordView(0, 3, None, None, None, None, error)))
    assert data["error"] == {
        "reason": "not_confluent_framing",
        "message": "not Confluent wire format",
    }
    assert "event" not in data


def test_progress_draws_count_and_rate_then_clears() -> None:
    """On a terminal the replay progress is redrawn in place and erased before output."""
    stream = io.StringIO()
    progress = _Progress(stream, enabled=True, every=0.0)
    progress.update(1200)
    assert "\r1200 events, " in stream.getvalue()
    progress.clear()
    assert stream.getvalue().endswith("\r\x1b[K")
    quiet = io.StringIO()
    _Progress(quiet, enabled=False, every=0.0).update(5)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize(
    ("ms", "text"), [(604_800_000, "7d"), (3_600_000, "1h"), (-1, "forever"), (1500, "1500ms")]
)
def test_durations_read_plainly(ms: int, text: str) -> None:
    """retention.ms is shown in the largest whole unit."""
    assert _duration(ms) == text


def test_config_flag_needs_key_and_value() -> None:
    """--config takes KEY=VALUE; anything else is a usage error."""
    assert _key_value("retention.ms=1000") == ("retention.ms", "1000")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        _key_value("retention.ms")


def test_every_ops_command_documents_its_exit_codes() -> None:
    """Each operator command's --help lists the exit codes."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("topics", "describe", "create-topic", "events", "lag", "produce", "track"):
        help_text = sub.choices[name].format_help()  # type: ignore[index]
        assert "exit codes:" in help_text
        assert "5  no Kafka broker answered" in help_text
