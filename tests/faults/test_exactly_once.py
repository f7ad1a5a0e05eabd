"""Exactly once through ``examples/router.py`` (a PaymentProcessor) while things crash.

The router runs as a real subprocess with a fixed transactional id, as a supervised service
would. Three faults: the router SIGKILLed mid-transaction and restarted, a frozen router (a
zombie) fenced by its replacement, and the leader of the input partition SIGKILLed on a
3-broker cluster. After each, a read_committed reader of both outputs must see every input's
output exactly once; a read_uncommitted reader shows what the aborted transactions wrote, so
the test can tell a crash that hid duplicates from one that never made any.

These run on stacks of their own (24600 / 24610 single, 24620-24622 / 24630 cluster; their
controllers and registry management ports sit 1000 above), under the same host lock as the
other fault suites.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from _events import make_events
from _outputs import read_ids
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from paykafka import PaymentEvent, PaymentProducer, Settings
from paykafka._admin import KafkaAdmin
from paykafka._stack import Stack

from ._support import KilledNode, Report, fresh_settings, member_env, stack_settings
from .conftest import own_stack_fixture

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "router.py"
SLOW_ROUTER = Path(__file__).resolve().parent / "_router.py"
SINGLE_KAFKA_PORT, SINGLE_REGISTRY_PORT = 24600, 24610
CLUSTER_KAFKA_PORT, CLUSTER_REGISTRY_PORT = 24620, 24630
#: The issue asks 50,000; kept while the whole test stays under ~90 s on a 2-core machine.
KILL_INPUTS = 50_000


eo_single = own_stack_fixture(
    "eo-single", brokers=1, kafka_port=SINGLE_KAFKA_PORT, registry_port=SINGLE_REGISTRY_PORT
)
eo_cluster = own_stack_fixture(
    "eo-cluster", brokers=3, kafka_port=CLUSTER_KAFKA_PORT, registry_port=CLUSTER_REGISTRY_PORT
)


class Router:
    """``examples/router.py`` as a subprocess on ``settings``' topic, group and a fixed id."""

    def __init__(
        self, settings: Settings, log: Path, *, script: Path = EXAMPLE, **kafka_options: str
    ) -> None:
        self.env = {
            **member_env(settings),
            "PAYKAFKA_TRANSACTIONAL_ID": f"{settings.group_id}-router",
            # The crashed member leaves the group after 6 s instead of 45: restarts are quick.
            "PAYKAFKA_KAFKA_OPTIONS": json.dumps({"session.timeout.ms": "6000", **kafka_options}),
        }
        self.script = script
        self.group = settings.group_id
        self.outputs = outputs(settings)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Router:
        self.starts += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(self.script), *self._args()],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def _args(self) -> list[str]:
        review, cleared = self.outputs
        if self.script == EXAMPLE:
            return ["--group", self.group, "--review", review, "--cleared", cleared]
        return [self.group, review, cleared]

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.running:
            self.signal(signal.SIGTERM)
            try:
                self.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def outputs(settings: Settings) -> list[str]:
    """The router's two output topics for ``settings``' input."""
    return [f"{settings.topic}.review", f"{settings.topic}.cleared"]


def _setup(stack: Stack, replication: int = 1) -> Settings:
    """A fresh input topic and the router's two outputs (3 partitions each)."""
    if replication > 1:
        _wait_for_brokers(stack, replication)
    configs = {"min.insync.replicas": "2"} if replication == 3 else None
    settings = fresh_settings(stack, partitions=3, replication_factor=replication, configs=configs)
    admin = KafkaAdmin(settings, timeout=30.0)
    for topic in outputs(settings):
        admin.create_topic(topic, partitions=3, replication_factor=replication, configs=configs)
    return settings


def _wait_for_brokers(stack: Stack, count: int, timeout: float = 60.0) -> None:
    """Until the cluster's metadata lists ``count`` brokers: a broker that answers (what
    ``stack up`` and a restart wait for) can take a moment more to be listed by the others,
    and creating a topic with replicas on every broker before then fails (seen once here)."""
    admin = KafkaAdmin(stack_settings(stack), timeout=10.0)
    deadline = time.monotonic() + timeout
    while len(brokers := admin.brokers()) < count:
        assert time.monotonic() < deadline, f"only brokers {brokers} listed after {timeout:g} s"
        time.sleep(0.5)


def _send(settings: Settings, events: list[PaymentEvent]) -> None:
    with PaymentProducer(settings, flush_timeout=120) as producer:
        for event in events:
            producer.send(event)


_WATCHERS: dict[str, Consumer] = {}


def _committed(settings: Settings) -> int:
    """Inputs the router's group has committed so far.

    Read with a consumer's ``committed()`` under the group's id (it never subscribes, so the
    group does not see it), one per test topic. Not with ``AdminClient``: its
    ``list_consumer_group_offsets`` crashed the interpreter (SIGSEGV) while a coordinator was
    moving (confluent-kafka-python#1982, #2118).
    """
    watcher = _WATCHERS.get(settings.topic)
    if watcher is None:
        conf = settings.consumer_config(**{"enable.auto.commit": False})
        watcher = _WATCHERS[settings.topic] = Consumer(conf)
    try:
        parts = watcher.committed([TopicPartition(settings.topic, p) for p in range(3)], 5.0)
    except KafkaException:  # a broker may be down mid-fault: no progress known yet
        return -1
    return sum(tp.offset for tp in parts if tp.offset >= 0)


def _wait_for(settings: Settings, inputs: int, router: Router, timeout: float) -> int:
    """Wait until ``inputs`` are committed; returns the count reached."""
    deadline = time.monotonic() + timeout
    done = _committed(settings)
    while done < inputs and time.monotonic() < deadline:
        assert router.running, router.log.read_text()[-3000:]
        time.sleep(0.2)
        done = _committed(settings)
    return done


def _exactly_once(
    settings: Settings, sent: list[PaymentEvent], report: Report, **figures: object
) -> None:
    committed = read_ids(settings, outputs(settings), isolation="read_committed", timeout=120)
    uncommitted = read_ids(settings, outputs(settings), isolation="read_uncommitted", timeout=120)
    ids = {e.payment_id for e in sent}
    result = {
        "inputs": len(sent),
        "missing": len(ids - committed.keys()),
        "duplicated_committed": sum(n - 1 for n in committed.values()),
        "unexpected": len(committed.keys() - ids),
        "aborted_duplicates_uncommitted": sum(uncommitted.values()) - sum(committed.values()),
        **figures,
    }
    report(**result)
    assert result["missing"] == 0, result
    assert result["duplicated_committed"] == 0, result
    assert result["unexpected"] == 0, result


@pytest.mark.timeout(300)
def test_router_sigkilled_three_times_mid_transaction_outputs_each_input_once(
    eo_single: Stack, report: Report, tmp_path: Path
) -> None:
    """50,000 inputs, router SIGKILLed at 20/45/70 %: 0 missing, 0 duplicated committed."""
    settings = _setup(eo_single)
    sent = make_events(KILL_INPUTS, prefix=f"kill-{uuid.uuid4().hex[:6]}")
    began = time.monotonic()
    _send(settings, sent)
    router = Router(settings, tmp_path / "router.log", script=SLOW_ROUTER).start()
    kills = []
    try:
        for share in (0.20, 0.45, 0.70):
            reached = _wait_for(settings, int(KILL_INPUTS * share), router, timeout=120)
            router.kill()
            kills.append(reached)
            router.start()
        done = _wait_for(settings, KILL_INPUTS, router, timeout=120)
    finally:
        router.stop()
    assert done == KILL_INPUTS, router.log.read_text()[-3000:]
    seconds = round(time.monotonic() - began, 1)
    _exactly_once(settings, sent, report, committed_at_kills=kills, seconds=seconds)
    uncommitted = read_ids(settings, outputs(settings), isolation="read_uncommitted")
    assert sum(uncommitted.values()) > KILL_INPUTS, "no kill hit an open transaction"


@pytest.mark.timeout(240)
def test_a_frozen_router_is_fenced_by_its_replacement(
    eo_single: Stack, report: Report, tmp_path: Path
) -> None:
    """SIGSTOP a router mid-stream, start another with the same id, SIGCONT the first:
    the zombie stops with FencedError and nothing is written twice."""
    settings = _setup(eo_single)
    sent = make_events(20_000, prefix=f"zombie-{uuid.uuid4().hex[:6]}")
    late = make_events(1_000, prefix=f"late-{uuid.uuid4().hex[:6]}")
    _send(settings, sent)
    zombie = Router(settings, tmp_path / "zombie.log").start()
    heir = Router(settings, tmp_path / "heir.log")
    try:
        frozen_at = _wait_for(settings, 5_000, zombie, timeout=60)
        zombie.signal(signal.SIGSTOP)
        heir.start()
        _wait_for(settings, len(sent), heir, timeout=120)
        zombie.signal(signal.SIGCONT)
        # More input, so the zombie (which may rejoin the group) certainly tries a transaction.
        _send(settings, late)
        done = _wait_for(settings, len(sent) + len(late), heir, timeout=120)
        zombie_exit = zombie.wait(60)
    finally:
        zombie.signal(signal.SIGCONT)
        zombie.stop()
        heir.stop()
    sent += late
    assert done == len(sent)
    zombie_log = zombie.log.read_text()
    assert zombie_exit != 0, zombie_log[-3000:]
    assert "fenced" in zombie_log, zombie_log[-3000:]
    _exactly_once(settings, sent, report, committed_when_frozen=frozen_at)


def _group_coordinator(settings: Settings) -> int:
    """The broker that coordinates the router's group (where its offsets are committed)."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    futures = admin.describe_consumer_groups([settings.group_id], request_timeout=10)
    coordinator: int = futures[settings.group_id].result(timeout=15).coordinator.id
    return coordinator


def _kill_while_routing(
    stack: Stack,
    report: Report,
    tmp_path: Path,
    prefix: str,
    victim: Callable[[Settings], int],
    *,
    down_for: float,
) -> None:
    """Route 12,000 inputs, SIGKILL ``victim``'s broker after 4,000, restart it ``down_for``
    seconds later; a read_committed reader must then see each input's output exactly once."""
    settings = _setup(stack, replication=3)
    sent = make_events(12_000, prefix=f"{prefix}-{uuid.uuid4().hex[:6]}")
    _send(settings, sent)
    # The slowed router: the inputs left at the kill take longer than the election (6 s).
    router = Router(settings, tmp_path / "router.log", script=SLOW_ROUTER).start()
    restarts = 0
    try:
        killed_at = _wait_for(settings, 4_000, router, timeout=90)
        broker = victim(settings)
        node: KilledNode | None = KilledNode(stack, broker).kill()
        killed = time.monotonic()
        deadline = killed + 240
        done = _committed(settings)
        while done < len(sent) and time.monotonic() < deadline:
            if node is not None and time.monotonic() - killed > down_for:
                node.restart()  # after the cluster has moved on without it for a while
                node = None
            if not router.running:  # a supervisor restarts a router that gave up
                restarts += 1
                router.start()
            time.sleep(0.2)
            done = _committed(settings)
        finished_after_kill = round(time.monotonic() - killed, 1)
        if node is not None:
            node.restart()
    finally:
        router.stop()
    assert done == len(sent), router.log.read_text()[-6000:]
    _exactly_once(
        settings,
        sent,
        report,
        killed_broker=broker,
        committed_at_kill=killed_at,
        seconds_from_kill_to_last_commit=finished_after_kill,
        router_restarts=restarts,
    )


@pytest.mark.timeout(420)
def test_leader_sigkill_on_three_brokers_keeps_exactly_once(
    eo_cluster: Stack, report: Report, tmp_path: Path
) -> None:
    """SIGKILL of the input partition 0 leader while routing: still 0 missing, 0 duplicated."""

    def leader(settings: Settings) -> int:
        found = KafkaAdmin(settings, timeout=10.0).describe_topic(settings.topic, configs=False)
        assert found.partitions[0].leader is not None
        return found.partitions[0].leader

    _kill_while_routing(eo_cluster, report, tmp_path, "leader", leader, down_for=10)


@pytest.mark.timeout(420)
def test_group_coordinator_sigkill_does_not_hang_the_router(
    eo_cluster: Stack, report: Report, tmp_path: Path
) -> None:
    """SIGKILL of the group's coordinator, kept down until the cluster drops it from its
    metadata: librdkafka's ``send_offsets_to_transaction`` then never returns (librdkafka#5511);
    the processor must replace its producer and go on, exactly once."""
    _kill_while_routing(
        eo_cluster, report, tmp_path, "coordinator", _group_coordinator, down_for=30
    )
