"""Settings: defaults match the local stack, env loading, secrets hidden, librdkafka keys."""

import logging

import attrs
import pytest

from paykafka import DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_REGISTRY_URL, ConfigError, Settings


def test_defaults_point_at_the_local_stack() -> None:
    """With nothing set, settings target `paykafka stack up` / docker-compose."""
    s = Settings()
    assert s.bootstrap_servers == DEFAULT_BOOTSTRAP_SERVERS == "localhost:9092"
    assert s.registry_url == DEFAULT_REGISTRY_URL == "http://localhost:8081/apis/ccompat/v7"
    assert (s.topic, s.group_id, s.subject) == ("payments", "payment-tracker", "payments-value")


def test_from_env_reads_each_variable() -> None:
    """Every field is read from its PAYKAFKA_* variable, typed."""
    env = {
        "PAYKAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        "PAYKAFKA_REGISTRY_URL": "https://sr.example/",
        "PAYKAFKA_TOPIC": "orders",
        "PAYKAFKA_AUTO_REGISTER": "false",
        "PAYKAFKA_REGISTRY_TIMEOUT": "2.5",
        "PAYKAFKA_COMPATIBILITY": "backward",
        "PAYKAFKA_KAFKA_OPTIONS": '{"socket.timeout.ms": 5000}',
    }
    s = Settings.from_env(env)
    assert s.bootstrap_servers == "k1:9092,k2:9092"
    assert s.registry_url == "https://sr.example"
    assert s.subject == "orders-value"
    assert s.auto_register is False
    assert s.registry_timeout == 2.5
    assert s.compatibility == "BACKWARD"
    assert s.kafka_options == {"socket.timeout.ms": "5000"}


def test_arguments_override_environment() -> None:
    """Keyword overrides win over the environment, which wins over defaults."""
    s = Settings.from_env({"PAYKAFKA_TOPIC": "env-topic"}, topic="arg-topic")
    assert s.topic == "arg-topic"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PAYKAFKA_AUTO_REGISTER": "maybe"}, "PAYKAFKA_AUTO_REGISTER='maybe' is not valid"),
        ({"PAYKAFKA_REGISTRY_TIMEOUT": "soon"}, "PAYKAFKA_REGISTRY_TIMEOUT"),
        ({"PAYKAFKA_REGISTRY_TIMEOUT": "0"}, "must be > 0"),
        ({"PAYKAFKA_REGISTRY_URL": "localhost:8081"}, "must start with http"),
        ({"PAYKAFKA_COMPATIBILITY": "LOOSE"}, "compatibility must be one of"),
        ({"PAYKAFKA_KAFKA_OPTIONS": "[1]"}, "JSON object"),
        ({"PAYKAFKA_TOPIC": " "}, "topic must not be empty"),
    ],
)
def test_bad_values_name_the_variable_or_field(env: dict[str, str], needle: str) -> None:
    """Unparseable or invalid settings raise ConfigError saying what to fix."""
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env)


def test_secrets_never_in_repr_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    """Passwords, tokens and passthrough options stay out of repr and error messages."""
    s = Settings(
        registry_username="svc",
        registry_password="pw-registry-123",
        registry_token="tok-456",
        sasl_password="pw-sasl-789",
        kafka_options={"ssl.key.password": "pw-key-000"},
    )
    text = repr(s)
    for secret in ("pw-registry-123", "tok-456", "pw-sasl-789", "pw-key-000"):
        assert secret not in text
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"PAYKAFKA_KAFKA_OPTIONS": "{not json pw-key-000"})
    assert "pw-key-000" not in str(info.value)
    assert "<hidden>" in str(info.value)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after construction; evolve() makes a new one."""
    s = Settings()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s.topic = "x"  # type: ignore[misc]
    assert attrs.evolve(s, topic="x").topic == "x"


def test_producer_config_has_safe_defaults_and_security() -> None:
    """The producer gets acks=all, idempotence, compression and the security options."""
    conf = Settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="p",
        kafka_options={"linger.ms": "20"},
    ).producer_config()
    assert conf["acks"] == "all"
    assert conf["enable.idempotence"] is True
    assert conf["compression.type"] == "zstd"
    assert conf["linger.ms"] == "20"
    assert (conf["security.protocol"], conf["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (conf["sasl.username"], conf["sasl.password"]) == ("u", "p")


def test_consumer_config_stores_offsets_manually() -> None:
    """Trackers store offsets themselves after handling (at-least-once)."""
    conf = Settings(group_id="g").consumer_config()
    assert conf["group.id"] == "g"
    assert conf["enable.auto.offset.store"] is False


@pytest.mark.parametrize(
    "key",
    [
        "enable.idempotence",
        "acks",
        "request.required.acks",
        "topic.acks",
        "topic.request.required.acks",
        "delivery.report.only.error",
    ],
)
def test_passthrough_cannot_weaken_delivery(key: str) -> None:
    """kafka_options may not override the keys that carry the delivery guarantee."""
    with pytest.raises(ConfigError, match=key):
        Settings(kafka_options={key: "0"}).producer_config()


@pytest.mark.parametrize(
    "options", [{"enable.auto.commit": "true"}, {"auto.commit.enable": "true"}]
)
def test_overrides_cannot_weaken_tracking_either(options: dict[str, str]) -> None:
    """The consumer's protected keys are refused from kafka_options and from overrides."""
    with pytest.raises(ConfigError, match="kafka_options"):
        Settings(kafka_options=options).consumer_config()
    with pytest.raises(ConfigError, match="the client's own kafka_options"):
        Settings().consumer_config(options)


def test_no_secret_logged_when_building_configs(caplog: pytest.LogCaptureFixture) -> None:
    """Building client configs logs nothing that contains a secret."""
    caplog.set_level(logging.DEBUG)
    s = Settings(sasl_password="pw-sasl-789")
    s.producer_config()
    s.consumer_config()
    assert "pw-sasl-789" not in caplog.text


def test_an_option_librdkafka_refuses_ends_a_command_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """PAYKAFKA_KAFKA_OPTIONS with a key librdkafka does not know: exit 2, one line, no trace."""
    from paykafka._cli import main  # noqa: PLC0415 - only this test needs the CLI

    monkeypatch.setenv("PAYKAFKA_KAFKA_OPTIONS", '{"no.such.option": "1"}')
    assert main(["topics"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "librdkafka refused" in err
    assert "no.such.option" in err
