"""The stack as a whole: bring it up, take it down, say what runs, and control single nodes.

State directory layout (one per stack; tests use their own)::

    stack.json                  layout of the last ``up`` (brokers, ports, versions)
    run/kafka-<n>.json          pid record of each Kafka node, run/registry.json of the registry
    kafka/cluster-<N>/node-<n>/ server.properties, log4j2.properties, data/ (formatted once)
    registry/h2/                the registry's H2 database (schemas survive down/up)
    logs/                       kafka-<n>.log, registry.log, and *.out for each JVM's stdout

Every state-changing call takes an exclusive lock on ``.lock`` in the state dir, so two
``up``s racing (two terminals, parallel tests) cannot start the same JVM twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from paykafka._errors import StackError

from . import _artifacts, _kafka, _logs, _process, _registry, _secure
from ._config import StackConfig
from ._java import default_roots, find_java
from ._process import ProcessRecord
from ._versions import APICURIO_MIN_JAVA, APICURIO_VERSION, KAFKA_MIN_JAVA, KAFKA_VERSION

__all__ = ["ComponentStatus", "LogTarget", "Stack", "StackStatus"]

log = logging.getLogger(__name__)

REGISTRY = "registry"
LogTarget = Literal["kafka", "registry", "all"]


@attrs.frozen
class ComponentStatus:
    """One JVM of the stack as ``status`` sees it."""

    name: str
    """``kafka-1`` ... ``kafka-N`` or ``registry``."""
    running: bool
    pid: int | None
    port: int
    """The port clients use: the broker's, or the registry's HTTP port."""
    endpoint: str
    rss_bytes: int | None
    log_file: Path

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["log_file"] = str(self.log_file)
        return data


@attrs.frozen
class StackStatus:
    """Everything ``paykafka stack status`` reports."""

    state_dir: Path
    components: tuple[ComponentStatus, ...]
    bootstrap_servers: str
    registry_url: str

    @property
    def running(self) -> bool:
        """True when every component runs; a stack missing one is not usable."""
        return bool(self.components) and all(c.running for c in self.components)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "running": self.running,
            "bootstrap_servers": self.bootstrap_servers,
            "registry_url": self.registry_url,
            "components": [c.to_dict() for c in self.components],
        }


class Stack:
    """One local Kafka + Apicurio stack, described by a :class:`StackConfig`.

    Node ids are 1-based: node ``n`` serves clients on ``config.broker_port(n)``.
    """

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config if config is not None else StackConfig.from_env()

    # -- whole stack ------------------------------------------------------------------------

    def up(self) -> tuple[str, ...]:
        """Start whatever is not running and wait until clients can use it.

        Returns the names of the components this call started; empty when everything was
        already up (``up`` is idempotent).
        """
        with self._locked():
            self._check_layout()
            missing = [n for n in self._component_names() if not self._is_running(n)]
            if missing:
                try:
                    self._start(missing)  # stops what it started when it fails
                except OSError as exc:  # a full disk, a read-only or vanished state dir
                    raise StackError(_os_error_message(exc, self.config.state_dir)) from None
            else:
                self._wait_ready([], time.monotonic() + self.config.start_timeout)
            if self.config.secure:  # idempotent: also repairs an `up` cut short before it
                _secure.setup_cluster(self.config)
                _secure.write_user_files(self.config)
            return tuple(missing)

    def down(self, *, timeout: float = 30.0, purge: bool = False) -> tuple[str, ...]:
        """Stop every JVM of this state dir (SIGTERM, then SIGKILL after ``timeout``).

        ``purge`` also deletes Kafka's logs and the registry's database. Returns the names of
        the components that were running.
        """
        with self._locked():
            records = [r for r in self._records() if _process.is_running(r)]
            for record in records:  # all at once: a KRaft quorum shuts down together
                _process.send_signal(record, signal.SIGTERM)
                _process.send_signal(record, signal.SIGCONT)
            for record in records:
                _process.terminate(record, timeout=timeout)
            self._sweep_orphans(timeout)
            for path in self._run_dir().glob("*.json"):
                path.unlink(missing_ok=True)
            if purge:
                for path in (
                    self.config.state_dir / "kafka",
                    _registry.registry_dir(self.config),
                    _secure.secure_dir(self.config),
                ):
                    shutil.rmtree(path, ignore_errors=True)
                (self.config.state_dir / "stack.json").unlink(missing_ok=True)
            stopped = tuple(r.name for r in records)
            log.info("stopped %s", ", ".join(stopped) or "nothing")
            return stopped

    def status(self) -> StackStatus:
        """What runs now; reads the recorded layout, so it works without the ``up`` options."""
        records = {r.name: r for r in self._records()}
        layout = self._saved_layout()
        config = self.config
        if layout:
            config = attrs.evolve(
                config,
                brokers=layout["brokers"],
                kafka_port=layout["kafka_port"],
                registry_port=layout["registry_port"],
                secure=bool(layout["secure"]),
            )
        names = [f"kafka-{n}" for n in config.node_ids] + [REGISTRY]
        names += sorted(set(records) - set(names))
        components = []
        for name in names:
            record = records.get(name)
            running = record is not None and _process.is_running(record)
            pid = record.pid if record is not None and running else None
            port = self._client_port(config, name, record)
            components.append(
                ComponentStatus(
                    name=name,
                    running=running,
                    pid=pid,
                    port=port,
                    endpoint=config.registry_url if name == REGISTRY else f"localhost:{port}",
                    rss_bytes=_process.rss_bytes(pid) if pid is not None else None,
                    log_file=self._log_file(config, name),
                )
            )
        return StackStatus(
            state_dir=config.state_dir,
            components=tuple(components),
            bootstrap_servers=config.bootstrap_servers,
            registry_url=config.registry_url,
        )

    def log_files(self, target: LogTarget = "all") -> list[Path]:
        """The log files of ``target`` that exist, Kafka nodes first."""
        logs = self.config.state_dir / "logs"
        kafka = sorted(logs.glob("kafka-*.log"), key=lambda p: _node_number(p.stem))
        registry = [_registry.log_file(self.config)]
        chosen = {"kafka": kafka, "registry": registry, "all": kafka + registry}[target]
        return [p for p in chosen if p.exists()]

    tail = staticmethod(_logs.tail)
    follow = staticmethod(_logs.follow)

    # -- single nodes, for fault tests --------------------------------------------------------

    def node_pid(self, node_id: int) -> int | None:
        """Pid of Kafka node ``node_id`` while it runs, else None."""
        return self._pid(self._node_name(node_id))

    def registry_pid(self) -> int | None:
        return self._pid(REGISTRY)

    def stop_node(self, node_id: int, *, timeout: float = 30.0) -> None:
        """Shut a broker down cleanly (SIGTERM: controlled shutdown, leaders move away)."""
        self._stop(self._node_name(node_id), timeout)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL a broker: a crash, with no controlled shutdown and no flush."""
        self._kill(self._node_name(node_id))

    def pause_node(self, node_id: int) -> None:
        """SIGSTOP a broker: alive to the kernel, silent to the cluster (a hung JVM)."""
        self._signal(self._node_name(node_id), signal.SIGSTOP)

    def resume_node(self, node_id: int) -> None:
        self._signal(self._node_name(node_id), signal.SIGCONT)

    def start_node(self, node_id: int, *, wait: bool = True) -> None:
        """Start one stopped broker again; with ``wait``, until metadata lists it."""
        name = self._node_name(node_id)
        with self._locked():
            if not self._is_running(name):
                self._start([name], wait=wait)

    def stop_registry(self, *, timeout: float = 30.0) -> None:
        self._stop(REGISTRY, timeout)

    def kill_registry(self) -> None:
        """SIGKILL the registry; its H2 database keeps what was committed."""
        self._kill(REGISTRY)

    def start_registry(self, *, wait: bool = True) -> None:
        with self._locked():
            if not self._is_running(REGISTRY):
                self._start([REGISTRY], wait=wait)

    # -- starting ------------------------------------------------------------------------------

    def _start(self, names: Sequence[str], *, wait: bool = True) -> None:
        nodes = [_node_number(n) for n in names if n != REGISTRY]
        java_home = self.config.java_home
        roots = default_roots(self.config.java_roots)
        kafka_java = (
            find_java(
                KAFKA_MIN_JAVA, purpose=f"Kafka {KAFKA_VERSION}", java_home=java_home, roots=roots
            )
            if nodes
            else None
        )
        registry_java = (
            find_java(
                APICURIO_MIN_JAVA,
                purpose=f"Apicurio Registry {APICURIO_VERSION}",
                java_home=java_home,
                roots=roots,
            )
            if REGISTRY in names
            else None
        )
        self._check_ports(names)
        if self.config.secure:
            _secure.ensure_material(self.config)
        libs, app = _artifacts.ensure_artifacts(
            self.config.cache_dir,
            kafka=bool(nodes),
            registry=registry_java is not None,
            maven_url=self.config.maven_url,
        )
        self._save_layout()

        started: list[ProcessRecord] = []
        try:
            if registry_java is not None and app is not None:  # slowest to start: first
                started.append(
                    self._spawn(
                        REGISTRY,
                        _registry.registry_command(self.config, registry_java, app),
                        _registry.output_file(self.config),
                        (self.config.registry_port, self.config.management_port),
                    )
                )
            if kafka_java is not None and libs is not None:
                for node_id in nodes:
                    _kafka.write_node_config(self.config, node_id)
                _kafka.format_storage(self.config, kafka_java, libs)
                for node_id in nodes:
                    started.append(
                        self._spawn(
                            f"kafka-{node_id}",
                            _kafka.kafka_command(self.config, node_id, kafka_java, libs),
                            _kafka.output_file(self.config, node_id),
                            (
                                self.config.broker_port(node_id),
                                self.config.controller_port(node_id),
                            ),
                        )
                    )
            if wait:
                self._wait_ready(started, time.monotonic() + self.config.start_timeout)
        except BaseException:
            for record in started:  # never leave a half-started stack behind
                _process.terminate(record, timeout=10.0)
                self._record_path(record.name).unlink(missing_ok=True)
            raise

    def _spawn(
        self, name: str, argv: list[str], output: Path, ports: tuple[int, int]
    ) -> ProcessRecord:
        # JAVA_TOOL_OPTIONS / _JAVA_OPTIONS would silently override our heap and GC flags.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JAVA_TOOL", "_JAVA"))}
        record = _process.spawn(
            name, argv, cwd=self.config.state_dir, output=output, env=env, ports=ports
        )
        try:
            record.save(self._record_path(name))
        except OSError as exc:
            # A JVM nobody has a record of would hold its ports with `status` saying stopped.
            _process.terminate(record, timeout=10.0)
            raise StackError(
                f"{name} was stopped again: {_os_error_message(exc, self.config.state_dir)}"
            ) from None
        return record

    def _wait_ready(self, started: Sequence[ProcessRecord], deadline: float) -> None:
        """Poll until Kafka lists every broker and the registry answers, or raise."""
        checks: list[tuple[str, Callable[[], bool]]] = []
        for node_id in self.config.node_ids:
            if self._is_running(f"kafka-{node_id}"):
                port = self.config.broker_port(node_id)
                security = _secure.admin_client_config(self.config) if self.config.secure else None
                checks.append(
                    (
                        f"Kafka node {node_id} at localhost:{port}",
                        functools.partial(_kafka.node_ready, node_id, port, security),
                    )
                )
        if self._is_running(REGISTRY):
            port = self.config.registry_port
            checks.append(
                (
                    f"the registry at {self.config.registry_url}",
                    functools.partial(_registry.registry_answers, port, config=self.config),
                )
            )
        pending = list(checks)
        while pending:
            for record in started:
                if not _process.is_running(record):
                    raise StackError(self._crash_message(record))
            pending = [(what, check) for what, check in pending if not check()]
            if not pending:
                return
            if time.monotonic() >= deadline:
                names = " and ".join(what for what, _ in pending)
                raise StackError(
                    f"{names} did not answer within {self.config.start_timeout:.0f}s; "
                    f"see the logs in {self.config.state_dir / 'logs'}",
                    retriable=True,
                )
            time.sleep(0.3)

    def _crash_message(self, record: ProcessRecord) -> str:
        if record.name == REGISTRY:
            files = [_registry.output_file(self.config), _registry.log_file(self.config)]
        else:
            node = _node_number(record.name)
            files = [_kafka.output_file(self.config, node), _kafka.log_file(self.config, node)]
        lines = [line for f in files for line in _logs.tail(f, 200)]
        errors = [
            line for line in lines if "ERROR" in line or "Exception" in line or "Error:" in line
        ]
        detail = (errors or lines or ["no output"])[-1].strip()
        return (
            f"{record.name} (pid {record.pid}) exited during start-up: {detail[:300]}; "
            f"see {files[1]}"
        )

    # -- pre-flight ----------------------------------------------------------------------------

    def _check_layout(self) -> None:
        """Refuse to mix layouts: a running 1-broker stack cannot become a 3-broker one."""
        running = [r for r in self._records() if _process.is_running(r)]
        if not running:
            return
        wanted = set(self._component_names())
        extra = sorted(r.name for r in running if r.name not in wanted)
        layout = self._saved_layout()
        current = {
            "brokers": self.config.brokers,
            "kafka_port": self.config.kafka_port,
            "registry_port": self.config.registry_port,
            "secure": int(self.config.secure),
        }
        if extra or (layout and layout != current):
            raise StackError(
                f"the stack in {self.config.state_dir} already runs with a different layout "
                f"({_describe_layout(layout)}); run `paykafka stack down` first"
            )

    def _check_ports(self, names: Sequence[str]) -> None:
        for name in names:
            if name == REGISTRY:
                ports = [
                    (
                        self.config.registry_port,
                        "registry HTTP",
                        "--registry-port",
                        "PAYKAFKA_STACK_REGISTRY_PORT",
                    ),
                    (
                        self.config.management_port,
                        "registry management",
                        "--registry-port",
                        "PAYKAFKA_STACK_REGISTRY_PORT",
                    ),
                ]
            else:
                node = _node_number(name)
                ports = [
                    (
                        self.config.broker_port(node),
                        f"{name} broker",
                        "--kafka-port",
                        "PAYKAFKA_STACK_KAFKA_PORT",
                    ),
                    (
                        self.config.controller_port(node),
                        f"{name} controller",
                        "--kafka-port",
                        "PAYKAFKA_STACK_KAFKA_PORT",
                    ),
                ]
            for port, role, option, variable in ports:
                if not _process.port_is_free(port):
                    holder = _process.find_port_holder(port) or "another process"
                    raise StackError(
                        f"port {port} ({role}) is already in use by {holder}; stop it or "
                        f"choose other ports with {option} / {variable}"
                    )

    # -- records and layout --------------------------------------------------------------------

    def _component_names(self) -> list[str]:
        return [f"kafka-{n}" for n in self.config.node_ids] + [REGISTRY]

    def _node_name(self, node_id: int) -> str:
        if node_id not in self.config.node_ids:
            raise StackError(
                f"no Kafka node {node_id}: this stack has nodes 1..{self.config.brokers}"
            )
        return f"kafka-{node_id}"

    def _run_dir(self) -> Path:
        return self.config.state_dir / "run"

    def _record_path(self, name: str) -> Path:
        return self._run_dir() / f"{name}.json"

    def _record(self, name: str) -> ProcessRecord | None:
        return ProcessRecord.load(self._record_path(name))

    def _records(self) -> list[ProcessRecord]:
        paths = sorted(self._run_dir().glob("*.json"))
        return [r for r in (ProcessRecord.load(p) for p in paths) if r is not None]

    def _is_running(self, name: str) -> bool:
        record = self._record(name)
        return record is not None and _process.is_running(record)

    def _pid(self, name: str) -> int | None:
        record = self._record(name)
        return record.pid if record is not None and _process.is_running(record) else None

    def _stop(self, name: str, timeout: float) -> None:
        with self._locked():
            record = self._record(name)
            if record is not None:
                _process.terminate(record, timeout=timeout)
            self._record_path(name).unlink(missing_ok=True)

    def _kill(self, name: str) -> None:
        with self._locked():
            record = self._record(name)
            if record is not None and _process.send_signal(record, signal.SIGKILL):
                _process.wait_gone(record, 10.0)
            self._record_path(name).unlink(missing_ok=True)

    def _signal(self, name: str, sig: signal.Signals) -> None:
        record = self._record(name)
        if record is None or not _process.send_signal(record, sig):
            raise StackError(f"{name} is not running")

    def _sweep_orphans(self, timeout: float) -> None:
        """Stop JVMs started from this state dir whose pid record was lost."""
        marker = f"{self.config.state_dir}/"
        for pid in _process.pids_mentioning(marker):
            log.warning("stopping pid %d: a JVM of %s without a pid record", pid, marker)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid in _process.pids_mentioning(marker) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                if pid in _process.pids_mentioning(marker):
                    os.kill(pid, signal.SIGKILL)

    def _saved_layout(self) -> dict[str, int]:
        try:
            data = json.loads((self.config.state_dir / "stack.json").read_text(encoding="utf-8"))
            layout = {k: int(data[k]) for k in ("brokers", "kafka_port", "registry_port")}
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        layout["secure"] = int(bool(data.get("secure", False)))
        return layout

    def _save_layout(self) -> None:
        data = {
            "brokers": self.config.brokers,
            "kafka_port": self.config.kafka_port,
            "registry_port": self.config.registry_port,
            "secure": self.config.secure,
            "kafka_version": KAFKA_VERSION,
            "apicurio_version": APICURIO_VERSION,
        }
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        (self.config.state_dir / "stack.json").write_text(
            json.dumps(data, indent=2) + "\n", encoding="utf-8"
        )

    @staticmethod
    def _client_port(config: StackConfig, name: str, record: ProcessRecord | None) -> int:
        if record is not None and record.ports:
            return record.ports[0]
        return config.registry_port if name == REGISTRY else config.broker_port(_node_number(name))

    @staticmethod
    def _log_file(config: StackConfig, name: str) -> Path:
        if name == REGISTRY:
            return _registry.log_file(config)
        return _kafka.log_file(config, _node_number(name))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config.state_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _node_number(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def _describe_layout(layout: dict[str, int]) -> str:
    if not layout:
        return "unknown"
    secured = ", secured" if layout.get("secure") else ""
    return (
        f"{layout['brokers']} broker(s) from port {layout['kafka_port']}, "
        f"registry on {layout['registry_port']}{secured}"
    )


def _os_error_message(exc: OSError, state_dir: Path) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return (
        f"cannot write the stack's files in {state_dir}: {exc.strerror or exc}{where}; free "
        "space there or choose another directory with --state-dir / PAYKAFKA_STACK_DIR"
    )
