"""Security settings reach every client, and secrets never reach repr, logs, errors or output."""

from __future__ import annotations

import http.server
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from paykafka import ConfigError, RegistryClient, RegistryError, RegistryUnavailableError, Settings

SASL_PASSWORD = "S3CRET-sasl-7f3a"
REGISTRY_PASSWORD = "S3CRET-reg-91bd"
REGISTRY_TOKEN = "S3CRET-tok-44c2"
KEY_PASSWORD = "S3CRET-key-0e1d"
SECRETS = (SASL_PASSWORD, REGISTRY_PASSWORD, REGISTRY_TOKEN, KEY_PASSWORD)
UNREACHABLE_BROKER = "127.0.0.1:1"
UNREACHABLE_REGISTRY = "http://127.0.0.1:1/apis/ccompat/v7"


def secure(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bootstrap_servers": UNREACHABLE_BROKER,
        "registry_url": UNREACHABLE_REGISTRY,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "alice",
        "sasl_password": SASL_PASSWORD,
        "ssl_ca_location": "/etc/ssl/certs/ca.pem",
        "registry_username": "registry-alice",
        "registry_password": REGISTRY_PASSWORD,
        "kafka_options": {"ssl.key.password": KEY_PASSWORD, "socket.timeout.ms": "3000"},
    }
    values.update(overrides)
    return Settings(**values)


def assert_no_secret(text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"secret(s) {leaked} leaked into: {text[:500]}"


def test_repr_hides_every_secret() -> None:
    """repr and str of Settings name the user but show no password, token or passthrough value."""
    settings = secure(registry_token=REGISTRY_TOKEN)
    for text in (repr(settings), str(settings)):
        assert_no_secret(text)
        assert "alice" in text


@pytest.mark.parametrize("method", ["producer_config", "consumer_config", "admin_config"])
def test_security_settings_reach_every_librdkafka_config(method: str) -> None:
    """SASL/SSL settings and kafka_options passthrough land in producer, consumer and admin."""
    conf = getattr(secure(), method)()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "alice"
    assert conf["sasl.password"] == SASL_PASSWORD
    assert conf["ssl.ca.location"] == "/etc/ssl/certs/ca.pem"
    assert conf["ssl.key.password"] == KEY_PASSWORD


def test_security_settings_come_from_the_environment() -> None:
    """Each security field has a PAYKAFKA_* variable, and kafka_options takes JSON."""
    settings = Settings.from_env(
        {
            "PAYKAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PAYKAFKA_SASL_MECHANISM": "PLAIN",
            "PAYKAFKA_SASL_USERNAME": "bob",
            "PAYKAFKA_SASL_PASSWORD": SASL_PASSWORD,
            "PAYKAFKA_SSL_CA_LOCATION": "/ca.pem",
            "PAYKAFKA_REGISTRY_USERNAME": "reg-bob",
            "PAYKAFKA_REGISTRY_PASSWORD": REGISTRY_PASSWORD,
            "PAYKAFKA_REGISTRY_TOKEN": REGISTRY_TOKEN,
            "PAYKAFKA_KAFKA_OPTIONS": json.dumps({"ssl.key.password": KEY_PASSWORD}),
        }
    )
    conf = settings.producer_config()
    assert (conf["security.protocol"], conf["sasl.mechanism"]) == ("SASL_PLAINTEXT", "PLAIN")
    assert (conf["sasl.username"], conf["sasl.password"]) == ("bob", SASL_PASSWORD)
    assert conf["ssl.ca.location"] == "/ca.pem"
    assert conf["ssl.key.password"] == KEY_PASSWORD
    assert (settings.registry_username, settings.registry_password) == (
        "reg-bob",
        REGISTRY_PASSWORD,
    )
    assert settings.registry_token == REGISTRY_TOKEN
    assert_no_secret(repr(settings))


def test_passthrough_may_not_weaken_delivery_and_the_error_shows_no_value() -> None:
    """kafka_options setting acks is refused, naming the key but not any option's value."""
    settings = secure(kafka_options={"acks": "1", "ssl.key.password": KEY_PASSWORD})
    with pytest.raises(ConfigError, match="acks") as info:
        settings.producer_config()
    assert_no_secret(str(info.value))


def test_unparseable_secret_variable_is_reported_hidden() -> None:
    """A broken PAYKAFKA_KAFKA_OPTIONS holding a password is refused without echoing it."""
    with pytest.raises(ConfigError, match="PAYKAFKA_KAFKA_OPTIONS") as info:
        Settings.from_env({"PAYKAFKA_KAFKA_OPTIONS": f'{{"ssl.key.password": "{KEY_PASSWORD}"'})
    assert_no_secret(str(info.value))
    assert "<hidden>" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"https://alice:{REGISTRY_PASSWORD}@registry.example.com/apis/ccompat/v7",
        f"alice:{REGISTRY_PASSWORD}@registry.example.com",
    ],
)
def test_registry_url_with_credentials_is_refused_without_echo(url: str) -> None:
    """Credentials in the registry URL are refused (they would show everywhere), unechoed."""
    with pytest.raises(ConfigError, match="PAYKAFKA_REGISTRY_PASSWORD") as info:
        Settings(registry_url=url)
    assert_no_secret(str(info.value))


class _Registry(http.server.BaseHTTPRequestHandler):
    """A registry stand-in: answers ``status`` and remembers each Authorization header."""

    status = 200
    seen: list[str | None]

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        body = (
            {"schema": '{"type": "string"}'}
            if self.status == 200
            else {"error_code": 40101, "message": "Unauthorized"}
        )
        data = json.dumps(body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def registry_server() -> Iterator[tuple[str, type[_Registry]]]:
    """A real HTTP server on a free port in a thread; yields its URL and handler class."""
    handler = type("Handler", (_Registry,), {"seen": [], "status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7", handler
    server.shutdown()
    server.server_close()


def test_registry_basic_auth_is_sent(registry_server: tuple[str, type[_Registry]]) -> None:
    """Registry username/password go out as HTTP basic auth."""
    url, handler = registry_server
    with RegistryClient(secure(registry_url=url)) as registry:
        registry.schema_by_id(1)
    (auth,) = handler.seen
    assert auth is not None
    assert auth.startswith("Basic ")


def test_registry_bearer_token_wins_over_basic_auth(
    registry_server: tuple[str, type[_Registry]],
) -> None:
    """A registry token goes out as a bearer token (and basic auth is then not sent)."""
    url, handler = registry_server
    with RegistryClient(secure(registry_url=url, registry_token=REGISTRY_TOKEN)) as registry:
        registry.schema_by_id(1)
    assert handler.seen == [f"Bearer {REGISTRY_TOKEN}"]


@pytest.mark.parametrize("token", [None, REGISTRY_TOKEN])
def test_refused_registry_credentials_show_no_secret(
    registry_server: tuple[str, type[_Registry]],
    caplog: pytest.LogCaptureFixture,
    token: str | None,
) -> None:
    """A 401 is a RegistryError naming the variables to fix, with no secret in it or the logs."""
    url, handler = registry_server
    handler.status = 401
    caplog.set_level(logging.DEBUG)
    with (
        RegistryClient(secure(registry_url=url, registry_token=token)) as registry,
        pytest.raises(RegistryError) as info,
    ):
        registry.schema_by_id(1)
    assert info.value.status == 401
    assert "PAYKAFKA_REGISTRY_PASSWORD" in str(info.value)
    assert_no_secret(str(info.value))
    assert_no_secret(repr(info.value))
    assert_no_secret(caplog.text)


def test_unreachable_registry_error_shows_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    """An unreachable registry is retriable and its message carries no credentials."""
    caplog.set_level(logging.DEBUG)
    with (
        RegistryClient(secure(registry_token=REGISTRY_TOKEN)) as registry,
        pytest.raises(RegistryUnavailableError) as info,
    ):
        registry.subjects()
    assert info.value.retriable
    assert_no_secret(str(info.value))
    assert_no_secret(caplog.text)


def test_librdkafka_debug_logs_show_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    """Even librdkafka's debug output (config dump included), routed to logging, hides secrets."""
    caplog.set_level(logging.DEBUG)
    settings = secure(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        kafka_options={"ssl.key.password": KEY_PASSWORD, "debug": "conf,security,broker"},
    )
    producer = Producer(settings.producer_config())
    producer.produce("payments", b"x")
    assert producer.flush(2) == 1  # nobody there: the record stays queued
    rdkafka = [r for r in caplog.records if r.name == "paykafka.librdkafka"]
    assert rdkafka, "librdkafka logged nothing: this test would prove nothing"
    assert_no_secret(caplog.text)


CLI_COMMANDS = [
    ["dlq", "list", "--timeout", "2"],
    ["dlq", "replay", "--dry-run", "--timeout", "2"],
    ["topics", "--timeout", "2"],
    ["lag", "--timeout", "2"],
    ["schema", "versions"],
]


def _cli(argv: list[str], registry_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYKAFKA_")}
    env.update(
        {
            "PAYKAFKA_BOOTSTRAP_SERVERS": UNREACHABLE_BROKER,
            "PAYKAFKA_REGISTRY_URL": registry_url,
            "PAYKAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PAYKAFKA_SASL_MECHANISM": "PLAIN",
            "PAYKAFKA_SASL_USERNAME": "alice",
            "PAYKAFKA_SASL_PASSWORD": SASL_PASSWORD,
            "PAYKAFKA_REGISTRY_USERNAME": "registry-alice",
            "PAYKAFKA_REGISTRY_PASSWORD": REGISTRY_PASSWORD,
            "PAYKAFKA_REGISTRY_TOKEN": REGISTRY_TOKEN,
            "PAYKAFKA_KAFKA_OPTIONS": json.dumps({"ssl.key.password": KEY_PASSWORD}),
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "paykafka", "-vv", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("argv", CLI_COMMANDS, ids=" ".join)
def test_cli_failing_on_refused_credentials_prints_no_secret(
    argv: list[str], registry_server: tuple[str, type[_Registry]]
) -> None:
    """With secrets in the environment and -vv debug logs, a failing command prints none."""
    url, handler = registry_server
    handler.status = 401
    done = _cli(argv, url)
    assert done.returncode != 0, done.stdout
    assert done.stderr.strip(), "the failure was not explained"
    assert_no_secret(done.stdout)
    assert_no_secret(done.stderr)
