"""A pytest plugin: test your payment handlers against a real Kafka and Schema Registry.

Installing paykafka registers it (entry point ``pytest11``), so any project's tests can ask for:

``paykafka_stack`` (session)
    The stack every test talks to. By default the plugin starts the real local stack
    (:mod:`paykafka._stack`, no Docker) on ports of its own (Kafka 24850, registry 24851), so it
    never clashes with a developer's ``paykafka stack up`` on 9092/8081, or reuses it when it is
    already running. The last session to finish stops a stack the plugin started, unless
    ``--paykafka-keep-stack``; a stack someone else started is never stopped.
``paykafka_settings``
    :class:`~paykafka.Settings` on a fresh topic, subject, consumer group and DLQ of the test's
    own, deleted afterwards: tests can run in parallel and never see each other's records.
``paykafka_producer``
    A started :class:`~paykafka.PaymentProducer` on that topic, closed (flushed) afterwards.
``paykafka_records``
    A :class:`RecordWaiter`: ``paykafka_records.wait(3)`` returns the first three records of the
    test's topic, or fails the test when they do not arrive in time.

Where the stack comes from, first match wins: ``--paykafka-bootstrap-servers`` and
``--paykafka-registry-url`` (or the ini keys of the same names) name an existing one;
``--paykafka-stack=env`` (ini ``paykafka_stack = env``) uses whatever ``PAYKAFKA_*`` variables
describe (paykafka's own suite does this); otherwise the managed stack, whose ports come from
``--paykafka-kafka-port`` / ``PAYKAFKA_TEST_KAFKA_PORT`` and ``--paykafka-registry-port`` /
``PAYKAFKA_TEST_REGISTRY_PORT``. A stack that cannot be reached fails the tests; it never skips
them. Details: ``docs/testing.md``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import attrs
import pytest

from paykafka._errors import PayKafkaError
from paykafka._event import PaymentEvent
from paykafka._producer import PaymentProducer
from paykafka._registry import RegistryClient
from paykafka._settings import Settings
from paykafka._tracking import PaymentTracker, TrackedEvent

if TYPE_CHECKING:
    from paykafka._stack import Stack

__all__ = ["DEFAULT_KAFKA_PORT", "DEFAULT_REGISTRY_PORT", "RecordWaiter", "TestStack"]

log = logging.getLogger(__name__)

DEFAULT_KAFKA_PORT = 24850
"""The managed stack's first broker (controller on +1000); far from 9092 and below the
ephemeral port range, so no outgoing connection can hold it."""
DEFAULT_REGISTRY_PORT = 24851
"""The managed stack's registry (management on +1000)."""

_STARTED_MARKER = "pytest-started"
_USERS_LOCK = "pytest-users.lock"


@attrs.frozen
class TestStack:
    """The stack a test session uses."""

    __test__ = False  # not a test class, whatever its name

    settings: Settings
    """Base settings: the stack's bootstrap servers and registry URL."""
    managed: bool
    """True when this plugin runs the stack (started it or found it running on its ports)."""
    state_dir: Path | None = None
    """The managed stack's pids, data and logs (``paykafka stack logs --state-dir``)."""


@attrs.define
class RecordWaiter:
    """Reads a test's topic from the beginning, with a consumer group of its own per call."""

    settings: Settings

    def wait(self, count: int, *, timeout: float = 30.0) -> list[TrackedEvent]:
        """The first ``count`` records of the topic, in partition order; fails the test when
        fewer arrive within ``timeout`` seconds."""
        probe = attrs.evolve(self.settings, group_id=f"{self.settings.group_id}-wait-{_short()}")
        got: list[TrackedEvent] = []
        deadline = time.monotonic() + timeout
        with PaymentTracker(probe, from_beginning=True, dead_letters=False) as tracker:
            while len(got) < count and time.monotonic() < deadline:
                record = tracker.poll(0.5)
                if record is not None:
                    got.append(record)
        if len(got) < count:
            pytest.fail(
                f"expected {count} payment(s) on topic {self.settings.topic} within {timeout:g}s, "
                f"got {len(got)}",
                pytrace=False,
            )
        return got

    def events(self, count: int, *, timeout: float = 30.0) -> list[PaymentEvent]:
        """Like :meth:`wait`, the events alone."""
        return [r.event for r in self.wait(count, timeout=timeout)]


# -- options ------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("paykafka", "paykafka: a real Kafka and registry for tests")
    group.addoption(
        "--paykafka-stack",
        choices=("managed", "env"),
        default=None,
        help="managed: start (or reuse) the local stack on the plugin's ports (default); "
        "env: use the stack the PAYKAFKA_* variables describe",
    )
    group.addoption(
        "--paykafka-bootstrap-servers", default=None, help="use this existing Kafka instead"
    )
    group.addoption(
        "--paykafka-registry-url", default=None, help="use this existing registry instead"
    )
    group.addoption(
        "--paykafka-kafka-port",
        type=int,
        default=None,
        help=f"managed stack's Kafka port (env PAYKAFKA_TEST_KAFKA_PORT; {DEFAULT_KAFKA_PORT})",
    )
    group.addoption(
        "--paykafka-registry-port",
        type=int,
        default=None,
        help="managed stack's registry port (env PAYKAFKA_TEST_REGISTRY_PORT; "
        f"{DEFAULT_REGISTRY_PORT})",
    )
    group.addoption(
        "--paykafka-state-dir",
        default=None,
        help="managed stack's state (default ~/.cache/paykafka/pytest-stack-<kafka port>)",
    )
    group.addoption(
        "--paykafka-keep-stack",
        action="store_true",
        default=False,
        help="leave the managed stack running after the session, for the next run to reuse",
    )
    for name, what in (
        ("paykafka_stack", "managed or env (see --paykafka-stack)"),
        ("paykafka_bootstrap_servers", "an existing Kafka to test against"),
        ("paykafka_registry_url", "an existing registry to test against"),
        ("paykafka_kafka_port", "the managed stack's Kafka port"),
        ("paykafka_registry_port", "the managed stack's registry port"),
    ):
        parser.addini(name, what, default=None)


def _setting(config: pytest.Config, name: str, env: str | None = None) -> str | None:
    """Command line, then environment variable, then ini file."""
    value = config.getoption(name)
    if value is None and env is not None:
        value = os.environ.get(env) or None
    if value is None:
        value = config.getini(name) or None
    return None if value is None else str(value)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def paykafka_stack(pytestconfig: pytest.Config) -> Iterator[TestStack]:
    """The stack of this test session (see the module docstring for where it comes from)."""
    bootstrap = _setting(pytestconfig, "paykafka_bootstrap_servers")
    registry = _setting(pytestconfig, "paykafka_registry_url")
    mode = _setting(pytestconfig, "paykafka_stack") or "managed"
    if mode not in ("managed", "env"):
        pytest.fail(f"paykafka_stack must be managed or env, got {mode!r}", pytrace=False)
    if bootstrap or registry or mode == "env":
        settings = Settings.from_env(None, bootstrap_servers=bootstrap, registry_url=registry)
        _check_reachable(settings)
        yield TestStack(settings=settings, managed=False)
        return
    with _managed_stack(pytestconfig) as stack:
        yield stack


@pytest.fixture
def paykafka_settings(
    paykafka_stack: TestStack, request: pytest.FixtureRequest
) -> Iterator[Settings]:
    """Settings on a topic, subject, group and DLQ of this test's own, deleted afterwards."""
    name = f"pk-{_slug(request.node.name)}-{_short()}"
    settings = attrs.evolve(
        paykafka_stack.settings, topic=name, group_id=f"{name}-group", dlq_topic=f"{name}.dlq"
    )
    _create_topic(settings, name, partitions=3)
    yield settings
    _delete(settings)


@pytest.fixture
def paykafka_producer(paykafka_settings: Settings) -> Iterator[PaymentProducer]:
    """A started producer on the test's topic; leaving the test flushes and closes it."""
    with PaymentProducer(paykafka_settings) as producer:
        yield producer


@pytest.fixture
def paykafka_records(paykafka_settings: Settings) -> RecordWaiter:
    """Waits for records on the test's topic: ``paykafka_records.wait(n)``."""
    return RecordWaiter(paykafka_settings)


# -- machinery ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _managed_stack(config: pytest.Config) -> Iterator[TestStack]:
    """Start or reuse the stack on the plugin's ports; the last session out stops it.

    Every session holds a shared lock on the state dir's users file while it runs; one that
    ends takes it exclusively (without waiting) to learn it is the last, and only then stops a
    stack a plugin session started. A stack started by hand has no marker and is left alone.
    """
    from paykafka._stack import Stack, StackConfig  # noqa: PLC0415 - only for a managed stack

    kafka_port = int(
        _setting(config, "paykafka_kafka_port", "PAYKAFKA_TEST_KAFKA_PORT") or DEFAULT_KAFKA_PORT
    )
    registry_port = int(
        _setting(config, "paykafka_registry_port", "PAYKAFKA_TEST_REGISTRY_PORT")
        or DEFAULT_REGISTRY_PORT
    )
    state_dir = config.getoption("paykafka_state_dir")
    stack_config = StackConfig.from_env(
        state_dir=Path(state_dir) if state_dir else None,
        kafka_port=kafka_port,
        registry_port=registry_port,
        brokers=1,
        start_timeout=300.0,
    )
    if not state_dir:
        default = stack_config.cache_dir.parent / f"pytest-stack-{kafka_port}"
        stack_config = attrs.evolve(stack_config, state_dir=default)
    stack = Stack(stack_config)
    state = stack_config.state_dir
    state.mkdir(parents=True, exist_ok=True)
    with (state / _USERS_LOCK).open("a") as users:
        fcntl.flock(users, fcntl.LOCK_SH)
        try:
            if stack.status().running:
                log.info("reusing the paykafka stack in %s", state)
            else:
                try:
                    stack.up()
                except PayKafkaError as exc:
                    pytest.fail(f"could not start the paykafka test stack: {exc}", pytrace=False)
                (state / _STARTED_MARKER).touch()
                log.info("started the paykafka test stack in %s", state)
            # paykafka's defaults, not PAYKAFKA_*: a developer's variables (credentials for a
            # shared cluster, say) must not leak into tests of a stack they do not describe.
            settings = Settings(
                bootstrap_servers=stack_config.bootstrap_servers,
                registry_url=stack_config.registry_url,
            )
            yield TestStack(settings=settings, managed=True, state_dir=state)
        finally:
            _leave(users, stack, state, keep=bool(config.getoption("paykafka_keep_stack")))


def _leave(users: IO[str], stack: Stack, state: Path, *, keep: bool) -> None:
    fcntl.flock(users, fcntl.LOCK_UN)
    if keep or not (state / _STARTED_MARKER).exists():
        return
    try:
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another session still uses it; the last one out stops it
    try:
        stack.down(purge=True)
        (state / _STARTED_MARKER).unlink(missing_ok=True)
        log.info("stopped the paykafka test stack in %s", state)
    finally:
        fcntl.flock(users, fcntl.LOCK_UN)


def _check_reachable(settings: Settings) -> None:
    """Fail (never skip) the tests when the broker or the registry does not answer."""
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    admin = AdminClient(settings.admin_config())
    try:
        admin.list_topics(timeout=15)
    except Exception as exc:  # noqa: BLE001 - any failure here means "no broker"
        pytest.fail(
            f"no Kafka broker at {settings.bootstrap_servers} ({exc}); start the stack with "
            "`paykafka stack up`",
            pytrace=False,
        )
    with RegistryClient(settings) as registry:
        try:
            registry.subjects()
        except PayKafkaError as exc:
            pytest.fail(f"{exc}", pytrace=False)


def _create_topic(settings: Settings, topic: str, *, partitions: int) -> None:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # noqa: PLC0415
        AdminClient,
        NewTopic,
    )

    admin = AdminClient(settings.admin_config())
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)])
    futures[topic].result(timeout=30)


def _delete(settings: Settings) -> None:
    """Best effort: the DLQ may never have been created, and names are unique anyway."""
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    admin = AdminClient(settings.admin_config())
    for future in admin.delete_topics([settings.topic, settings.dlq_topic]).values():
        with contextlib.suppress(Exception):
            future.result(timeout=30)
    with RegistryClient(settings) as registry, contextlib.suppress(Exception):
        registry.delete_subject(settings.subject, permanent=True)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(name: str) -> str:
    """A test's name as a topic-safe fragment (Kafka allows ``[A-Za-z0-9._-]``)."""
    return _UNSAFE.sub("-", name).strip("-.")[:40] or "test"


def _short() -> str:
    return uuid.uuid4().hex[:8]
