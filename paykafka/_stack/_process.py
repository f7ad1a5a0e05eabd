"""Starting, watching and stopping the stack's JVMs, and finding who holds a port.

The JVMs must outlive the ``paykafka stack up`` command that starts them, so each one is started
through a throw-away ``sh`` that backgrounds it and exits: the JVM is then nobody's child here
(no zombies in long-lived callers such as pytest), runs in its own session and process group
(a terminal's Ctrl-C never reaches it, and ``killpg`` reaches any helper it forks), and is
recorded in a small JSON file with its pid, process group and kernel start time. The start time
guards every signal we send: a pid the kernel has since handed to another process is never
touched.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import attrs

from paykafka._errors import StackError

__all__ = [
    "ProcessRecord",
    "find_port_holder",
    "is_running",
    "pids_mentioning",
    "port_is_free",
    "rss_bytes",
    "send_signal",
    "spawn",
    "terminate",
]

log = logging.getLogger(__name__)

# $1 is the log file, the rest is the command; the JVM's pid is the only thing printed.
_SPAWN_SCRIPT = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


@attrs.frozen
class ProcessRecord:
    """What we need to recognise and stop one JVM later, from any process."""

    name: str
    pid: int
    pgid: int
    start_ticks: int
    """Field 22 of ``/proc/<pid>/stat``: tells the JVM apart from a later process reusing pid."""
    ports: tuple[int, ...]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(attrs.asdict(self)), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> ProcessRecord | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                name=str(data["name"]),
                pid=int(data["pid"]),
                pgid=int(data["pgid"]),
                start_ticks=int(data["start_ticks"]),
                ports=tuple(int(p) for p in data["ports"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    cwd: Path,
    output: Path,
    env: Mapping[str, str],
    ports: Sequence[int],
) -> ProcessRecord:
    """Start ``argv`` detached in a new session, stdout and stderr appended to ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        starter = subprocess.run(  # noqa: S603 - fixed script, argv passed as "$@"
            ["/bin/sh", "-c", _SPAWN_SCRIPT, "paykafka-spawn", str(output), *argv],
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            start_new_session=True,
        )
        pid = int(starter.stdout.strip())
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise StackError(f"could not start {name} ({argv[0]}): {exc}") from exc
    ticks = _start_ticks(pid)
    if ticks is None:
        raise StackError(f"{name} exited at once; see {output}")
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError as exc:
        raise StackError(f"{name} exited at once; see {output}") from exc
    record = ProcessRecord(name=name, pid=pid, pgid=pgid, start_ticks=ticks, ports=tuple(ports))
    log.info("started %s as pid %d", name, pid)
    return record


def is_running(record: ProcessRecord) -> bool:
    """True while the recorded process itself (not a pid reuse, not a zombie) is alive."""
    return _start_ticks(record.pid) == record.start_ticks


def send_signal(record: ProcessRecord, sig: signal.Signals) -> bool:
    """Signal the record's process group; False when the process is already gone."""
    if not is_running(record):
        return False
    try:
        os.killpg(record.pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise StackError(f"not allowed to signal {record.name} (pid {record.pid}): {exc}") from exc
    return True


def terminate(record: ProcessRecord, *, timeout: float) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; True if SIGKILL was needed."""
    if not send_signal(record, signal.SIGTERM):
        return False
    send_signal(record, signal.SIGCONT)  # a paused JVM cannot act on SIGTERM
    if wait_gone(record, timeout):
        return False
    log.warning(
        "%s (pid %d) ignored SIGTERM for %.0fs; killing it", record.name, record.pid, timeout
    )
    send_signal(record, signal.SIGKILL)
    if not wait_gone(record, 10.0):
        raise StackError(f"{record.name} (pid {record.pid}) survived SIGKILL")
    return True


def wait_gone(record: ProcessRecord, timeout: float) -> bool:
    """Wait until the process and all its threads have exited, so its ports are free again."""
    deadline = time.monotonic() + timeout
    while not _threads_gone(record):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def rss_bytes(pid: int) -> int | None:
    """Resident set size from ``/proc/<pid>/status``; None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether we could listen on ``host:port`` now (a wildcard listener also makes it busy)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR, as the JVMs set it, so a socket lingering in TIME_WAIT does not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_port_holder(port: int) -> str | None:
    """``"pid 123 (java -cp ...)"`` for the process listening on ``port``, when we may see it."""
    inodes = set(_listening_inodes(port))
    if not inodes:
        return None
    for pid_dir in _proc_pids():
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:  # not ours to inspect, or gone
            continue
        for fd in fds:
            try:
                target = str(fd.readlink())
            except OSError:  # closed since it was listed: the others still count
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                return f"pid {pid_dir.name} ({_short_cmdline(pid_dir)})"
    return "a process we cannot inspect (or one still exiting)"


def pids_mentioning(text: str) -> list[int]:
    """Pids of live JVMs whose command line contains ``text`` (our state dir, in tests)."""
    found = []
    for pid_dir in _proc_pids():
        try:
            raw = (pid_dir / "cmdline").read_bytes()
        except OSError:
            continue
        argv = raw.split(b"\0")
        if (
            argv[0].endswith(b"java")
            and text.encode() in raw
            and _start_ticks(int(pid_dir.name)) is not None
        ):
            found.append(int(pid_dir.name))
    return found


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _threads_gone(record: ProcessRecord) -> bool:
    """True once no thread of the recorded process is left but, at most, a zombie leader.

    A JVM's main thread turns zombie while its other threads are still exiting and still hold
    its sockets open; a port is only free again once the last thread is gone.
    """
    ticks = _start_ticks(record.pid)
    if ticks is not None:
        return ticks != record.start_ticks  # alive: ours, or a stranger reusing the pid
    try:
        tasks = list(Path(f"/proc/{record.pid}/task").iterdir())
    except OSError:
        return True
    return len(tasks) <= 1


def _listening_inodes(port: int) -> Iterator[int]:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="utf-8").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                yield int(inode)


def _proc_pids() -> Iterator[Path]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield entry


def _short_cmdline(pid_dir: Path) -> str:
    """The command, with a JVM's flags dropped so its main class or jar shows."""
    try:
        argv = [
            a for a in (pid_dir / "cmdline").read_bytes().decode(errors="replace").split("\0") if a
        ]
    except OSError:
        return "?"
    if argv and Path(argv[0]).name == "java":
        argv = ["java", *_java_main(argv[1:])]
    text = " ".join(argv)
    return text if len(text) <= 120 else text[:117] + "..."


def _java_main(args: Sequence[str]) -> list[str]:
    """``-jar app.jar ...`` or ``some.Main ...``: what a JVM runs, without its options."""
    takes_value = {"-cp", "-classpath", "--class-path", "-p", "--module-path"}
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg == "-jar":
            return list(args[i:])
        elif arg in takes_value:
            skip = True
        elif not arg.startswith("-"):
            return list(args[i:])
    return list(args)
