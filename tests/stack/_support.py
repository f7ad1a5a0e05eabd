"""Helpers for tests that start stacks of their own.

Each stack runs in a pytest temp dir on ports no other suite uses: brokers from 19092
(controllers 20092...), registry on 18081 (management 19081). A file lock keyed on those ports
keeps two concurrent runs of these tests (two terminals, CI retries) from colliding, and every
stack is taken down, data included, however its tests end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from _locks import ports_lock

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
def running_stack(state_dir: Path, *, brokers: int = 1) -> Iterator[Stack]:
    """A stack of our own, up for the block and always down (and purged) after it."""
    stack = Stack(stack_config(state_dir, brokers=brokers))
    with ports_lock(f"paykafka-stack-tests-{KAFKA_PORT}", wait=600.0):
        try:
            stack.up()
            yield stack
        finally:
            stack.down(timeout=20.0, purge=True)
            assert jvms_of(state_dir) == []
