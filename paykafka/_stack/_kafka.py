"""Kafka in KRaft mode: node configs, one-time storage format, the JVM command, readiness.

Every node is a combined broker+controller with a static voter set, which keeps a 3-node
cluster to three JVMs and needs no separate quorum bootstrap. Each cluster size gets its own
data directory (``kafka/cluster-1``, ``kafka/cluster-3``) because a formatted log dir is bound to
its voter set: switching ``--brokers`` must not try to reuse the other cluster's metadata.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paykafka._errors import StackError

from . import _secure
from ._config import StackConfig
from ._java import JavaRuntime

__all__ = [
    "broker_ids_in_metadata",
    "cluster_dir",
    "format_storage",
    "kafka_command",
    "log_file",
    "node_dir",
    "node_ready",
    "output_file",
    "port_accepts",
    "write_node_config",
]

log = logging.getLogger(__name__)

_HOST = "127.0.0.1"
_ADVERTISED_HOST = "localhost"

# Small-machine tuning: Kafka's defaults (8 I/O threads, 50 offsets partitions...) are sized
# for servers, and cost startup time and memory on a 2-core laptop or CI runner.
_COMMON = {
    "num.network.threads": "2",
    "num.io.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "background.threads": "4",
    "log.cleaner.threads": "1",
    "offsets.topic.num.partitions": "5",
    # Its default of 50 partitions makes a processor's first init_transactions() wait seconds.
    "transaction.state.log.num.partitions": "5",
    "group.initial.rebalance.delay.ms": "0",
    # A crashed node is fenced, and its partitions get new leaders, after 6 s instead of 9 s.
    "broker.session.timeout.ms": "6000",
    "broker.heartbeat.interval.ms": "1000",
    "auto.create.topics.enable": "true",
    "num.partitions": "1",
}

_JVM_FLAGS = (
    "-XX:+UseSerialGC",
    "-XX:MaxMetaspaceSize=160m",
    "-XX:ReservedCodeCacheSize=96m",
    "-XX:MaxDirectMemorySize=128m",
    "-Xss512k",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def cluster_dir(config: StackConfig) -> Path:
    """Secured clusters keep their own logs: their metadata holds the users and ACLs."""
    prefix = "secure-" if config.secure else ""
    return config.state_dir / "kafka" / f"{prefix}cluster-{config.brokers}"


def node_dir(config: StackConfig, node_id: int) -> Path:
    return cluster_dir(config) / f"node-{node_id}"


def log_file(config: StackConfig, node_id: int) -> Path:
    return config.state_dir / "logs" / f"kafka-{node_id}.log"


def output_file(config: StackConfig, node_id: int) -> Path:
    """The JVM's own stdout/stderr: crashes and JVM warnings, not Kafka's log lines."""
    return config.state_dir / "logs" / f"kafka-{node_id}.out"


def write_node_config(config: StackConfig, node_id: int) -> Path:
    """(Re)write ``server.properties`` and ``log4j2.properties``; ports may change between runs."""
    directory = node_dir(config, node_id)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    n = config.brokers
    replication = str(min(n, 3))
    min_isr = str(2 if n >= 3 else 1)
    voters = ",".join(f"{i}@{_HOST}:{config.controller_port(i)}" for i in config.node_ids)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": (
            f"PLAINTEXT://{_HOST}:{config.broker_port(node_id)},"
            f"CONTROLLER://{_HOST}:{config.controller_port(node_id)}"
        ),
        "advertised.listeners": f"PLAINTEXT://{_ADVERTISED_HOST}:{config.broker_port(node_id)}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(directory / "data"),
        **_COMMON,
        "default.replication.factor": replication,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replication,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
    }
    if config.secure:
        props.update(_secure.broker_properties(config, node_id, _HOST, _ADVERTISED_HOST))
    server = directory / "server.properties"
    server.unlink(missing_ok=True)  # created owner-only: the secured one holds a password
    fd = os.open(server, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(
            "# Written by paykafka stack up; edits are overwritten.\n"
            + "".join(f"{k}={v}\n" for k, v in props.items())
        )
    (directory / "log4j2.properties").write_text(
        _log4j2_config(log_file(config, node_id)), encoding="utf-8"
    )
    return server


def format_storage(config: StackConfig, java: JavaRuntime, libs: Path) -> None:
    """Format each node's log dir once; later ``up``s find ``meta.properties`` and skip it."""
    pending = [
        n
        for n in config.node_ids
        if not (node_dir(config, n) / "data" / "meta.properties").exists()
    ]
    if not pending:
        return
    cluster_id = _cluster_id(cluster_dir(config))
    scram = _secure.scram_format_args(config) if config.secure else []
    procs = []
    for node_id in pending:
        directory = node_dir(config, node_id)
        tool = [
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(directory / "server.properties"),
            *scram,
        ]
        if scram:
            # SCRAM credentials go through an owner-only java @argfile, never into argv.
            argfile = directory / "format.args"
            _secure.write_private(argfile, "\n".join(_argfile_quote(a) for a in tool) + "\n")
            tool = [f"@{argfile}"]
        argv = [
            str(java.executable),
            "-Xmx256m",
            *java.quiet_flags(),
            *_log_flags(directory),
            *tool,
        ]
        log.info("formatting Kafka storage of node %d (cluster %s)", node_id, cluster_id)
        procs.append(
            (
                node_id,
                subprocess.Popen(  # noqa: S603 - our own argv, no shell
                    argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                ),
            )
        )
    for node_id, proc in procs:
        try:
            out, _ = proc.communicate(timeout=120)
        finally:
            (node_dir(config, node_id) / "format.args").unlink(missing_ok=True)
        if proc.returncode != 0:
            last = [line for line in out.splitlines() if line.strip()][-1:] or ["no output"]
            raise StackError(f"formatting Kafka storage of node {node_id} failed: {last[0]}")


def kafka_command(config: StackConfig, node_id: int, java: JavaRuntime, libs: Path) -> list[str]:
    directory = node_dir(config, node_id)
    return [
        str(java.executable),
        "-Xms128m",
        f"-Xmx{config.kafka_heap_mb}m",
        *_JVM_FLAGS,
        *java.quiet_flags(),
        *_log_flags(directory),
        "-cp",
        f"{libs}/*",
        "kafka.Kafka",
        str(directory / "server.properties"),
    ]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def node_ready(node_id: int, port: int, security: Mapping[str, str] | None = None) -> bool:
    """Whether node ``node_id`` serves clients: asked directly, it lists itself as a broker.

    Asking the node itself matters after a crash: the other nodes keep listing the dead
    incarnation until its session times out, while the restarted one only answers once it has
    caught up with the metadata log and been unfenced.
    """
    if not port_accepts(port):
        return False
    seen = broker_ids_in_metadata(f"localhost:{port}", timeout=2.0, security=security)
    return seen is not None and node_id in seen


def broker_ids_in_metadata(
    bootstrap: str, timeout: float = 3.0, security: Mapping[str, str] | None = None
) -> set[int] | None:
    """The broker ids the cluster reports, or None when no broker answered in time."""
    from confluent_kafka import KafkaException  # noqa: PLC0415 - heavy import, only when probing
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        # Connection-refused chatter while a broker starts is expected, not worth a line on
        # the terminal: only librdkafka emergencies reach our logger.
        "logger": logging.getLogger("paykafka._stack.librdkafka"),
        "log_level": 0,
        **(security or {}),
    }
    admin = AdminClient(conf)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return None
    return {int(b) for b in metadata.brokers}


def _cluster_id(directory: Path) -> str:
    """Reuse the id a half-formatted cluster already has, else make one as Kafka does."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cluster.id"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids ids a CLI would read as an option
            break
    path.write_text(text + "\n", encoding="utf-8")
    return text


def _argfile_quote(arg: str) -> str:
    """One argument of a java @argfile: quoted, with backslashes and quotes escaped."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _log_flags(directory: Path) -> list[str]:
    return [f"-Dlog4j2.configurationFile={directory / 'log4j2.properties'}"]


def _log4j2_config(path: Path) -> str:
    """One rolling file per node; the request and state-change chatter stays at WARN."""
    return f"""\
# Written by paykafka stack up; edits are overwritten.
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {path}
appender.file.filePattern = {path}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.zookeeper.name = org.apache.zookeeper
logger.zookeeper.level = WARN
"""
