"""A host-wide lock for test suites that start their own stacks on fixed ports."""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def ports_lock(name: str, wait: float) -> Iterator[None]:
    """Hold ``/tmp/<name>.lock`` so two runs of the same suite queue instead of colliding."""
    path = Path(tempfile.gettempdir()) / f"{name}.lock"
    with path.open("w") as lock:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pytest.fail(
                        f"another test run kept {path} locked for {wait:.0f}s; wait for it to end",
                        pytrace=False,
                    )
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
