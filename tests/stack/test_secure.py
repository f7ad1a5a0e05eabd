"""The secured stack (`paykafka stack up --secure`), for real: SASL_SSL with SCRAM-SHA-512, ACLs
and an HTTPS registry. Each user can do exactly what its ACLs say; every refusal, wrong password,
wrong CA and plaintext client is the right PayKafkaError within 10 s; no secret reaches a log
line, an error or the terminal, even at -vv."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from _events import make_events
from _locks import ports_lock

from paykafka import (
    AuthenticationError,
    AuthorizationError,
    KafkaAdmin,
    PayKafkaError,
    PaymentProducer,
    PaymentTracker,
    RegistryAuthenticationError,
    RegistryAuthorizationError,
    RegistryClient,
    Settings,
    TlsError,
)
from paykafka._cli import main
from paykafka._cli._common import EXIT_SECURITY
from paykafka._dlq import DeadLetterWriter
from paykafka._stack import Stack, StackConfig, _secure

from ._support import jvms_of

pytestmark = pytest.mark.stack

KAFKA_PORT = 24710
REGISTRY_PORT = 24760
REFUSED_WITHIN = 10.0
ROOT = Path(__file__).resolve().parents[2]
CLI_ENV_DROP = ("PAYKAFKA_", "JAVA_TOOL", "_JAVA")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One secured single-node stack for the module, on 24710 / 24760."""
    state_dir = tmp_path_factory.mktemp("secure")
    config = StackConfig.from_env(
        state_dir=state_dir,
        kafka_port=KAFKA_PORT,
        registry_port=REGISTRY_PORT,
        secure=True,
        start_timeout=180.0,
    )
    running = Stack(config)
    with ports_lock(f"paykafka-secure-tests-{KAFKA_PORT}", wait=600.0):
        try:
            running.up()
            yield running
        finally:
            running.down(timeout=20.0, purge=True)
            assert jvms_of(state_dir) == []


def as_user(stack: Stack, user: str, **overrides: Any) -> Settings:
    settings: Settings = _secure.user_settings(stack.config, user, **overrides)
    return settings


def secrets_of(stack: Stack) -> list[str]:
    return list(_secure.passwords(stack.config).values())


def assert_no_secret(stack: Stack, *texts: str) -> None:
    for text in texts:
        leaked = [s for s in secrets_of(stack) if s in text]
        assert not leaked, f"a password leaked into: {text[:300]}"


def refused(call: Callable[[], object], error: type[PayKafkaError]) -> PayKafkaError:
    """Run ``call``; it must raise ``error`` within REFUSED_WITHIN seconds."""
    started = time.monotonic()
    with pytest.raises(error) as info:
        call()
    elapsed = time.monotonic() - started
    assert elapsed < REFUSED_WITHIN, f"{error.__name__} took {elapsed:.1f}s"
    return info.value


def produce(settings: Settings, n: int = 1, registry: RegistryClient | None = None) -> list[str]:
    events = make_events(n, prefix=f"secure-{uuid.uuid4().hex[:6]}")
    with PaymentProducer(settings, flush_timeout=20.0, registry=registry) as producer:
        for event in events:
            producer.send(event)
    return [str(e.payment_id) for e in events]


def track(settings: Settings, wanted: set[str] | None = None, timeout: float = 20.0) -> set[str]:
    """Payment ids the tracker reads until it saw ``wanted`` (without: one event), or
    ``timeout`` passed."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    with PaymentTracker(settings, from_beginning=True) as tracker:
        while time.monotonic() < deadline:
            record = tracker.poll(1.0)
            if record is not None:
                seen.add(str(record.event.payment_id))
            if seen and (wanted is None or wanted <= seen):
                break
    return seen


def cli_env(stack: Stack, user: str, **changes: str | None) -> dict[str, str]:
    """The process environment with exactly ``user``'s printed settings (and ``changes``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLI_ENV_DROP)}
    env.update(_secure.user_env(stack.config, user))
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(
    argv: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


# -- up --------------------------------------------------------------------------------------------


def test_up_prints_settings_but_no_password(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """`up --secure` prints each user's settings file and the shared settings, no password;
    the files are owner-only and hold everything a user needs."""
    code = main(
        [
            "stack",
            "up",
            "--secure",
            "--state-dir",
            str(stack.config.state_dir),
            "--kafka-port",
            str(KAFKA_PORT),
            "--registry-port",
            str(REGISTRY_PORT),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "PAYKAFKA_SECURITY_PROTOCOL=SASL_SSL" in out
    assert f"PAYKAFKA_SSL_CA_LOCATION={_secure.ca_file(stack.config)}" in out
    assert_no_secret(stack, out)
    for user in _secure.USERS:
        path = _secure.user_file(stack.config, user)
        assert str(path) in out
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        assert f"PAYKAFKA_SASL_USERNAME={user}\n" in text
        assert f"PAYKAFKA_SASL_PASSWORD={_secure.passwords(stack.config)[user]}\n" in text


def test_no_password_in_any_log_or_command_line(stack: Stack) -> None:
    """The brokers' and registry's logs and the JVMs' command lines hold no password."""
    for path in (stack.config.state_dir / "logs").iterdir():
        assert_no_secret(stack, path.read_text(errors="replace"))
    for pid in jvms_of(stack.config.state_dir):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert_no_secret(stack, cmdline)


def producer_registry(stack: Stack) -> RegistryClient:
    """A registry client logged in as payments-producer, who may register the schema: so a
    test reaches the broker's ACLs instead of stopping at the registry's."""
    return RegistryClient(as_user(stack, _secure.PRODUCER))


# -- each user does what its ACLs allow, end to end ---------------------------------------------


def test_producer_and_tracker_as_their_own_users(stack: Stack) -> None:
    """payments-producer sends, payments-tracker reads them back (group payment-tracker)."""
    sent = set(produce(as_user(stack, _secure.PRODUCER), 5))
    assert sent <= track(as_user(stack, _secure.TRACKER), sent)


def test_tracker_user_cannot_produce(stack: Stack) -> None:
    """WRITE on payments is refused to payments-tracker, naming the topic and the operation."""
    tracker = as_user(stack, _secure.TRACKER)
    with producer_registry(stack) as registry:
        error = refused(lambda: produce(tracker, registry=registry), AuthorizationError)
    assert isinstance(error, AuthorizationError)
    assert (error.resource_type, error.resource, error.operation) == ("topic", "payments", "WRITE")
    assert len(error.undelivered) == 1
    assert "payments-tracker" in str(error)


def test_producer_user_cannot_read(stack: Stack) -> None:
    """payments-producer may not consume: the group (or topic) READ is refused."""
    error = refused(lambda: track(as_user(stack, _secure.PRODUCER)), AuthorizationError)
    assert isinstance(error, AuthorizationError)
    assert error.operation == "READ"
    assert (error.resource_type, error.resource) in {
        ("group", "payment-tracker"),
        ("topic", "payments"),
    }


@pytest.mark.parametrize(
    ("what", "call", "resource", "operation"),
    [
        ("register the schema", produce, ("registry path", None), "POST"),
        (
            "produce",
            lambda s, r: produce(s, registry=r),
            ("topic", "payments"),
            "CREATE",
        ),
        (
            "produce without creating",
            lambda s, r: produce(attrs.evolve(s, create_topic=False), registry=r),
            ("topic", "payments"),
            "WRITE",
        ),
        ("consume", lambda s, r: track(s), ("group", "payment-tracker"), "READ"),
        (
            "create a topic",
            lambda s, r: KafkaAdmin(s).create_topic(
                "nobody-made", partitions=1, replication_factor=1
            ),
            ("topic", "nobody-made"),
            "CREATE",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_nobody_can_do_nothing(
    stack: Stack,
    what: str,
    call: Callable[..., object],
    resource: tuple[str, str | None],
    operation: str,
) -> None:
    """The user `nobody` logs in but every action is an AuthorizationError naming the
    resource and the operation: at the registry, and at the broker."""
    del what
    registry = producer_registry(stack)
    nobody = as_user(stack, _secure.NOBODY)
    if call is produce:
        error = refused(lambda: produce(nobody), AuthorizationError)
    else:
        error = refused(lambda: call(nobody, registry), AuthorizationError)
    registry.close()
    assert isinstance(error, AuthorizationError)
    assert error.resource_type == resource[0]
    assert resource[1] is None or error.resource == resource[1]
    assert error.operation == operation


def test_tracker_user_may_read_but_not_change_the_registry(stack: Stack) -> None:
    """payments-tracker reads schemas from the registry, but registering one is a
    RegistryAuthorizationError (HTTP 403), also an AuthorizationError."""
    with RegistryClient(as_user(stack, _secure.TRACKER)) as registry:
        registry.subjects()
        error = refused(
            lambda: registry.register("tracker-made-value", '"string"'),
            RegistryAuthorizationError,
        )
    assert isinstance(error, AuthorizationError)
    assert isinstance(error, RegistryAuthorizationError)
    assert error.status == 403


class _Record:
    """The parts of a consumed message a dead-letter write reads."""

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def topic(self) -> str:
        return "payments"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"not avro"


def test_dead_letters_only_where_the_acl_allows(stack: Stack) -> None:
    """payments-tracker may write payments.dlq, and nothing else: another DLQ is refused."""
    allowed = DeadLetterWriter(as_user(stack, _secure.TRACKER), timeout=10.0)
    allowed.write(_Record(), reason="test", message="allowed")
    denied = DeadLetterWriter(
        as_user(stack, _secure.TRACKER, dlq_topic="payments.dlq-elsewhere"), timeout=10.0
    )
    error = refused(
        lambda: denied.write(_Record(), reason="test", message="denied"), AuthorizationError
    )
    assert isinstance(error, AuthorizationError)
    assert (error.resource, error.operation) == ("payments.dlq-elsewhere", "WRITE")


# -- wrong credentials, wrong CA, plaintext ------------------------------------------------------


@pytest.mark.parametrize("role", ["producer", "tracker"])
@pytest.mark.parametrize(
    ("case", "changes", "error"),
    [
        ("wrong password", {"sasl_password": "not-the-password"}, AuthenticationError),
        ("unknown user", {"sasl_username": "mallory"}, AuthenticationError),
        ("wrong CA", {"ssl_ca_location": "/etc/ssl/certs/ca-certificates.crt"}, TlsError),
        ("plaintext", {"security_protocol": "PLAINTEXT", "sasl_mechanism": None}, TlsError),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_connection_settings_fail_fast_and_quietly(
    stack: Stack,
    caplog: pytest.LogCaptureFixture,
    role: str,
    case: str,
    changes: dict[str, Any],
    error: type[PayKafkaError],
) -> None:
    """Each mistake is its own error within 10 s, with no secret in it or any debug log line."""
    del case
    caplog.set_level(logging.DEBUG)
    user = _secure.PRODUCER if role == "producer" else _secure.TRACKER
    base = as_user(stack, user)
    settings = attrs.evolve(base, **changes)
    if changes.get("sasl_mechanism", "") is None:
        settings = attrs.evolve(settings, sasl_username=None, sasl_password=None)
    call = (lambda: produce(settings)) if role == "producer" else (lambda: track(settings))
    found = refused(call, error)
    if isinstance(found, TlsError) and "ssl_ca_location" in changes:
        assert "/etc/ssl/certs/ca-certificates.crt" in str(found)
    assert not found.retriable
    assert_no_secret(stack, str(found), repr(found), caplog.text)
    assert caplog.records, "nothing was logged: the scan would prove nothing"


def test_registry_refuses_wrong_password_and_untrusted_ca(stack: Stack) -> None:
    """The registry is HTTPS-only with basic auth: a wrong password is a
    RegistryAuthenticationError, the system CAs a TlsError, plain http a TlsError."""
    producer = as_user(stack, _secure.PRODUCER)
    error = refused(
        lambda: produce(attrs.evolve(producer, registry_password="nope")),
        RegistryAuthenticationError,
    )
    assert isinstance(error, AuthenticationError)
    refused(lambda: produce(attrs.evolve(producer, registry_ca_location=None)), TlsError)
    http = producer.registry_url.replace("https://", "http://")
    refused(lambda: produce(attrs.evolve(producer, registry_url=http)), TlsError)


# -- the CLI and the examples with the printed settings ---------------------------------------


def test_every_command_works_with_the_printed_settings(stack: Stack) -> None:
    """As admin (settings from the printed file), the operator commands all succeed."""
    produce(as_user(stack, _secure.PRODUCER), 2)
    env = cli_env(stack, _secure.ADMIN)
    for argv in (
        ["topics"],
        ["describe", "payments"],
        ["lag"],
        ["events", "--from-beginning", "--until-end"],
        ["schema", "versions"],
        ["dlq", "list"],
        ["create-topic", f"admin-made-{uuid.uuid4().hex[:6]}", "--partitions", "1"],
    ):
        done = run(["-m", "paykafka", *argv], env)
        assert done.returncode == 0, (argv, done.stderr)
        assert_no_secret(stack, done.stdout, done.stderr)


def test_examples_run_as_their_users(stack: Stack) -> None:
    """examples/producer.py as payments-producer, examples/tracker.py as payments-tracker."""
    sent = run(["examples/producer.py", "--count", "2"], cli_env(stack, _secure.PRODUCER))
    assert sent.returncode == 0, sent.stderr
    tracked = run(["examples/tracker.py", "--until-end"], cli_env(stack, _secure.TRACKER))
    assert tracked.returncode == 0, tracked.stderr
    assert_no_secret(stack, sent.stdout, sent.stderr, tracked.stdout, tracked.stderr)


@pytest.mark.parametrize(
    ("case", "user", "changes"),
    [
        ("wrong password", _secure.PRODUCER, {"PAYKAFKA_SASL_PASSWORD": "nope"}),
        ("no ACL", _secure.NOBODY, {}),
        (
            "wrong CA",
            _secure.PRODUCER,
            {"PAYKAFKA_SSL_CA_LOCATION": "/etc/ssl/certs/ca-certificates.crt"},
        ),
        (
            "plaintext",
            _secure.PRODUCER,
            {"PAYKAFKA_SECURITY_PROTOCOL": None, "PAYKAFKA_SASL_MECHANISM": None},
        ),
    ],
    ids=["wrong password", "no ACL", "wrong CA", "plaintext"],
)
def test_cli_refusal_is_one_line_and_one_exit_code(
    stack: Stack, case: str, user: str, changes: dict[str, str | None]
) -> None:
    """`paykafka -vv produce` refused: exit code 6, one `paykafka: error:` line, no secret
    anywhere in the -vv output."""
    del case
    started = time.monotonic()
    argv = ["produce", "--user", "u1", "--amount", "1.00", "--currency", "PLN", "--method", "blik"]
    done = run(["-m", "paykafka", "-vv", *argv], cli_env(stack, user, **changes))
    assert time.monotonic() - started < REFUSED_WITHIN + 5  # python start-up included
    assert done.returncode == EXIT_SECURITY, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("paykafka: error:")]
    assert len(errors) == 1, done.stderr
    assert_no_secret(stack, done.stdout, done.stderr)


def test_librdkafka_debug_logs_hide_the_real_password(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """tests/test_security.py's debug-log check, on the real secured broker: librdkafka's
    conf/security/broker debug output of a successful SCRAM login shows no password."""
    caplog.set_level(logging.DEBUG)
    settings = as_user(stack, _secure.PRODUCER, kafka_options={"debug": "conf,security,broker"})
    produce(settings)
    assert any(r.name == "paykafka.librdkafka" for r in caplog.records)
    assert_no_secret(stack, caplog.text)
    assert_no_secret(stack, repr(settings), str(settings))


def test_security_cli_commands_show_no_secret(stack: Stack) -> None:
    """tests/test_security.py's CLI commands, against this stack with a wrong password and at
    -vv: each fails, and prints no secret (the real passwords included)."""
    from test_security import CLI_COMMANDS  # noqa: PLC0415 - shares the list, not a fixture

    env = cli_env(stack, _secure.TRACKER, PAYKAFKA_SASL_PASSWORD="wrong-" + uuid.uuid4().hex)
    for argv in CLI_COMMANDS:
        done = run(["-m", "paykafka", "-vv", *argv], env)
        assert done.returncode == EXIT_SECURITY or argv[0] == "schema", (argv, done.stderr)
        assert_no_secret(stack, done.stdout, done.stderr)
        assert env["PAYKAFKA_SASL_PASSWORD"] not in done.stdout + done.stderr


def test_settings_from_the_printed_file_parse(stack: Stack) -> None:
    """A user file is plain KEY=VALUE lines that Settings.from_env reads as is."""
    lines = _secure.user_file(stack.config, _secure.TRACKER).read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    settings = Settings.from_env(env)
    assert settings.sasl_username == _secure.TRACKER
    assert settings.registry_url.startswith("https://")
    assert json.dumps(env)  # only strings
