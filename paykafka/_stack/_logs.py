"""Reading the stack's log files: the last lines, and new lines as they arrive.

Kept apart from printing so the CLI decides how lines look and tests can read logs directly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["follow", "tail"]

_BLOCK = 64 * 1024


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path`` (fewer if it is shorter, none if it is missing)."""
    if lines <= 0:
        return []
    try:
        with path.open("rb") as fh:
            end = fh.seek(0, 2)
            data = b""
            pos = end
            while pos > 0 and data.count(b"\n") <= lines:
                step = min(_BLOCK, pos)
                pos -= step
                fh.seek(pos)
                data = fh.read(step) + data
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


def follow(
    paths: Sequence[Path], *, poll: float = 0.5, stop_after: float | None = None
) -> Iterator[tuple[Path, str]]:
    """Yield ``(path, line)`` for every line appended to ``paths`` from this call on.

    Rotation is noticed when a file shrinks or is replaced, and reading restarts at its top.
    ``stop_after`` (seconds) bounds the wait, for tests; ``None`` follows until interrupted.
    """
    # Measured now, not at the first next(): lines written in between must not be lost.
    start = {p: (_inode(p), _size(p)) for p in paths}
    deadline = None if stop_after is None else time.monotonic() + stop_after
    return _follow(paths, start, poll, deadline)


def _follow(
    paths: Sequence[Path],
    start: dict[Path, tuple[int | None, int]],
    poll: float,
    deadline: float | None,
) -> Iterator[tuple[Path, str]]:
    inodes = {p: start[p][0] for p in paths}
    offsets = {p: start[p][1] for p in paths}
    pending = dict.fromkeys(paths, b"")
    while deadline is None or time.monotonic() < deadline:
        for path in paths:
            inode, size = _inode(path), _size(path)
            if inode != inodes[path] or size < offsets[path]:
                inodes[path], offsets[path], pending[path] = inode, 0, b""
            if size <= offsets[path]:
                continue
            try:
                with path.open("rb") as fh:
                    fh.seek(offsets[path])
                    chunk = fh.read(size - offsets[path])
            except OSError:
                continue
            offsets[path] += len(chunk)
            *complete, pending[path] = (pending[path] + chunk).split(b"\n")
            for raw in complete:
                yield path, raw.decode("utf-8", errors="replace")
        time.sleep(poll)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None
