"""Fetching locked files from a Maven repository: in parallel, verified, resumable.

Each file is written to ``<name>.part`` beside its destination and renamed into place only once
its size and sha256 match the lock, so a file under its final name is always a whole, checked
one. An interrupted download (Ctrl-C, a dropped connection) leaves the ``.part`` behind; the next
fetch asks the server for the rest with an HTTP ``Range`` request, and starts over when the
server ignores the range or the finished file does not hash to the locked value.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Protocol

import attrs
import httpx

from paykafka._errors import StackError

from ._lockfile import LockedFile

__all__ = [
    "DEFAULT_MAVEN_URL",
    "Progress",
    "TerminalProgress",
    "fetch_files",
    "is_intact",
    "redact",
]

log = logging.getLogger(__name__)

DEFAULT_MAVEN_URL = "https://repo.maven.apache.org/maven2"

_WORKERS = 6
_TIMEOUT = httpx.Timeout(60.0, connect=15.0)


class Progress(Protocol):
    """What a fetch reports while it runs; called from several threads."""

    def start(self, files: int, total_bytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def file_done(self) -> None: ...

    def finish(self) -> None: ...


class TerminalProgress:
    """Files and megabytes on one self-rewriting line of ``stream``; silent unless a terminal.

    Logs and piped output stay free of carriage-return noise: the check is ``isatty()``.
    """

    def __init__(self, stream: IO[str] | None = None, *, interval: float = 0.2) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._enabled = self._stream.isatty()
        self._interval = interval
        self._lock = threading.Lock()
        self._files = self._files_done = self._total = self._done = 0
        self._shown = 0.0

    def start(self, files: int, total_bytes: int) -> None:
        with self._lock:
            self._files, self._total = files, total_bytes
            self._files_done = self._done = 0
        self._show(force=True)

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self._done += nbytes
        self._show()

    def file_done(self) -> None:
        with self._lock:
            self._files_done += 1
        self._show()

    def finish(self) -> None:
        self._show(force=True)
        if self._enabled:
            self._stream.write("\n")
            self._stream.flush()

    def _show(self, *, force: bool = False) -> None:
        if not self._enabled:
            return
        with self._lock:
            now = time.monotonic()
            if not force and now - self._shown < self._interval:
                return
            self._shown = now
            line = (
                f"\rpaykafka: downloading the stack: {self._files_done}/{self._files} files, "
                f"{self._done / 1e6:.1f}/{self._total / 1e6:.1f} MB"
            )
            self._stream.write(line)
            self._stream.flush()


def redact(url: str) -> str:
    """``url`` without a password, for messages and logs (mirrors may carry credentials)."""
    parsed = httpx.URL(url)
    if not parsed.password:
        return url
    return str(parsed.copy_with(username=parsed.username, password="***"))  # noqa: S106


def is_intact(entry: LockedFile, path: Path) -> bool:
    """True when ``path`` has the locked size and sha256 (the size is checked first: cheap)."""
    try:
        if path.stat().st_size != entry.size:
            return False
    except OSError:
        return False
    return _sha256(path) == entry.sha256


def fetch_files(
    wanted: Sequence[tuple[LockedFile, Path]],
    base_url: str,
    *,
    progress: Progress | None = None,
    client: httpx.Client | None = None,
    workers: int = _WORKERS,
) -> None:
    """Make each destination path hold its locked file, downloading what is missing or wrong.

    Files already in place are hashed, not trusted: a damaged one is fetched again. Raises
    :class:`StackError` (retriable for network failures, whose partial files are kept so the
    next call resumes) after the other downloads have stopped.
    """
    todo = [(entry, dest) for entry, dest in wanted if not is_intact(entry, dest)]
    if not todo:
        return
    for _entry, dest in todo:
        if dest.exists():
            log.warning(
                "%s is damaged (size or sha256 differ from the lock); fetching it again", dest
            )
    report = progress if progress is not None else TerminalProgress()
    report.start(len(todo), sum(entry.size for entry, _ in todo))
    own_client = client is None
    http = httpx.Client(timeout=_TIMEOUT, follow_redirects=True) if client is None else client
    job = _Job(http=http, base_url=base_url, report=report)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as pool:
            futures = [pool.submit(job.run, entry, dest) for entry, dest in todo]
            try:
                concurrent.futures.wait(futures)
            except BaseException:  # Ctrl-C: let the workers notice and return quickly
                job.stop.set()
                raise
    finally:
        if own_client:
            http.close()
        report.finish()
    if job.errors:
        real = [e for e in job.errors if not isinstance(e, _StoppedError)]
        raise real[0] if real else job.errors[0]


class _StoppedError(StackError):
    """Another download failed, so this one stopped early (its ``.part`` file is kept)."""


@attrs.define
class _Job:
    """One parallel fetch: the client, the progress, and a flag that stops every worker."""

    http: httpx.Client
    base_url: str
    report: Progress
    stop: threading.Event = attrs.Factory(threading.Event)
    errors: list[Exception] = attrs.Factory(list)

    def run(self, entry: LockedFile, dest: Path) -> None:
        """Fetch one file; a failure is kept for the caller and stops the other workers."""
        try:
            self._fetch(entry, dest)
            self.report.file_done()
        except Exception as exc:  # noqa: BLE001 - handed to the caller, re-raised there
            self.stop.set()  # the others stop at their next chunk, keeping their .part files
            self.errors.append(exc)

    def _fetch(self, entry: LockedFile, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        url = f"{self.base_url.rstrip('/')}/{entry.path}"
        for attempt in (1, 2):
            offset = part.stat().st_size if part.exists() else 0
            if offset > entry.size:
                part.unlink()
                offset = 0
            if offset < entry.size:
                offset = self._download(entry, part, url, offset)
            if _sha256(part) == entry.sha256:
                part.replace(dest)
                return
            part.unlink()
            if attempt == 1 and offset > 0:
                log.warning("resumed download of %s did not verify; fetching it whole", url)
                self.report.advance(-entry.size)
                continue
            break
        raise StackError(
            f"{entry.coordinates} from {redact(url)} does not match the lock file's sha256; "
            "the repository (or a mirror set with PAYKAFKA_MAVEN_URL) serves different bytes"
        )

    def _download(self, entry: LockedFile, part: Path, url: str, offset: int) -> int:
        """Append the rest of ``url`` to ``part`` from ``offset``; the offset it started at."""
        # Identity encoding: the bytes on the wire are the file's, so a range appends exactly.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        shown = redact(url)
        try:
            with self.http.stream("GET", url, headers=headers) as response:
                if response.status_code == 206 and offset:
                    mode = "ab"
                    self.report.advance(offset)
                    log.info("resuming %s at byte %d", shown, offset)
                elif response.status_code == 200:
                    mode, offset = "wb", 0  # no range support (or nothing to resume): whole
                else:
                    raise _http_error(entry, shown, response.status_code)
                with part.open(mode) as out:
                    for chunk in response.iter_raw():  # as it arrives: a cut keeps it all
                        if self.stop.is_set():
                            raise _StoppedError(f"download of {shown} stopped", retriable=True)
                        out.write(chunk)
                        self.report.advance(len(chunk))
        except httpx.HTTPError as exc:
            raise StackError(
                f"could not download {entry.coordinates} from {shown}: "
                f"{exc or type(exc).__name__}; check the network and run again: what was "
                "fetched is kept and the download resumes",
                retriable=True,
            ) from exc
        return offset


def _http_error(entry: LockedFile, shown: str, status: int) -> StackError:
    if status == 404:
        return StackError(
            f"{entry.coordinates} is not at {shown} (HTTP 404); check PAYKAFKA_MAVEN_URL"
        )
    return StackError(
        f"could not download {entry.coordinates} from {shown}: HTTP {status}; retry later or "
        "set PAYKAFKA_MAVEN_URL to a mirror",
        retriable=status >= 500 or status == 429,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
