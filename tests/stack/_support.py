"""Helpers for tests that start stacks of their own.

Each stack runs in a pytest temp dir on ports no other suite uses: brokers from 19092
(controllers 20092...), registry on 18081 (management 19081). A file lock keyed on those ports
keeps two concurrent runs of these tests (two terminals, CI retries) from colliding, and every
stack is taken down, data included, however its tests end.
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paykafka._stack import Stack, StackConfig
from paykafka._stack._process import pids_mentioning

KAFKA_PORT = 19092
REGISTRY_PORT = 18081


def stack_config(state_dir: Path, *, brokers: int = 1) -> StackConfig:
    """Our test ports and ``state_dir``; the artifact cache stays the shared default."""
    return StackConfig.from_env(
        state_dir=state_dir,
        kafka_port=KAFKA_PORT,
        registry_port=REGISTRY_PORT,
        brokers=brokers,
        start_timeout=180.0,
    )


def jvms_of(state_dir: Path) -> list[int]:
    """Pids of live JVMs whose command line mentions ``state_dir``."""
    return pids_mentioning(f"{state_dir.resolve()}/")


@contextlib.contextmanager
def ports_held(wait: float = 600.0) -> Iterator[None]:
    """Hold our ports against a concurrent run of these tests by anyone on the host."""
    path = Path(tempfile.gettempdir()) / f"paykafka-stack-tests-{KAFKA_PORT}.lock"
    with path.open("w") as lock:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pytest.fail(f"{path} stayed locked for {wait:.0f}s", pytrace=False)
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def running_stack(state_dir: Path, *, brokers: int = 1) -> Iterator[Stack]:
    """A stack of our own, up for the block and always down (and purged) after it."""
    stack = Stack(stack_config(state_dir, brokers=brokers))
    with ports_held():
        try:
            stack.up()
            yield stack
        finally:
            stack.down(timeout=20.0, purge=True)
            assert jvms_of(state_dir) == []
