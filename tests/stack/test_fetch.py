"""Fetching locked files: verified, resumed after an interruption, refetched when damaged.

A real HTTP server in a thread serves made-up files (with HTTP ``Range`` support that a test can
switch off, and a connection that a test can cut mid-file), so no test needs the network.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs
import pytest

from paykafka import ConfigError, StackError
from paykafka._stack import StackConfig
from paykafka._stack._artifacts import ensure_artifacts
from paykafka._stack._fetch import TerminalProgress, fetch_files, redact
from paykafka._stack._lockfile import LOCK_PATH, Component, Lock, LockedFile, load_lock
from paykafka._stack._versions import APICURIO_VERSION, KAFKA_VERSION


@attrs.define
class Repo:
    """What the server serves and what it was asked for."""

    files: dict[str, bytes] = attrs.Factory(dict)
    ranges: bool = True
    cut_after: int | None = None
    """Send this many bytes of the next GET, then drop the connection (once)."""
    requests: list[tuple[str, str | None]] = attrs.Factory(list)
    url: str = ""

    def add(self, path: str, body: bytes) -> LockedFile:
        self.files[path] = body
        return LockedFile(
            coordinates=f"test:{Path(path).stem}:1:jar",
            path=path,
            size=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
        )


@pytest.fixture
def repo() -> Iterator[Repo]:
    """A Maven-like repository on 127.0.0.1, stopped after the test."""
    state = Repo()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.removeprefix("/maven2/")
            header = self.headers.get("Range")
            state.requests.append((path, header))
            body = state.files.get(path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if header and state.ranges:
                start = int(header.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            payload = body[start:]
            if state.cut_after is not None:
                payload, state.cut_after = payload[: state.cut_after], None
                self.wfile.write(payload)
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/maven2"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_files_are_fetched_in_parallel_and_verified(repo: Repo, tmp_path: Path) -> None:
    """Every wanted file lands under its name with the locked bytes, and no .part remains."""
    entries = [repo.add(f"g/a{i}/1/a{i}-1.jar", os.urandom(50_000 + i)) for i in range(5)]
    wanted = [(e, tmp_path / e.filename) for e in entries]
    fetch_files(wanted, repo.url)
    for entry, dest in wanted:
        assert dest.read_bytes() == repo.files[entry.path]
    assert list(tmp_path.glob("*.part")) == []


def test_intact_files_are_not_fetched_again(repo: Repo, tmp_path: Path) -> None:
    """A second fetch of verified files sends no request at all."""
    entry = repo.add("g/a/1/a-1.jar", os.urandom(10_000))
    fetch_files([(entry, tmp_path / entry.filename)], repo.url)
    repo.requests.clear()
    fetch_files([(entry, tmp_path / entry.filename)], repo.url)
    assert repo.requests == []


def test_corrupted_cached_file_is_detected_and_refetched(repo: Repo, tmp_path: Path) -> None:
    """A file with the right size but one flipped byte is fetched whole again."""
    entry = repo.add("g/a/1/a-1.jar", os.urandom(20_000))
    dest = tmp_path / entry.filename
    fetch_files([(entry, dest)], repo.url)
    damaged = bytearray(dest.read_bytes())
    damaged[1234] ^= 0xFF
    dest.write_bytes(bytes(damaged))
    repo.requests.clear()
    fetch_files([(entry, dest)], repo.url)
    assert dest.read_bytes() == repo.files[entry.path]
    assert repo.requests == [(entry.path, None)]


def test_interrupted_download_resumes_with_a_range_request(repo: Repo, tmp_path: Path) -> None:
    """A dropped connection keeps the .part; the next fetch asks only for the rest."""
    entry = repo.add("g/big/1/big-1.jar", os.urandom(300_000))
    dest = tmp_path / entry.filename
    repo.cut_after = 120_000
    with pytest.raises(StackError, match="resumes") as caught:
        fetch_files([(entry, dest)], repo.url)
    assert caught.value.retriable
    assert not dest.exists()
    assert (tmp_path / (entry.filename + ".part")).stat().st_size == 120_000
    fetch_files([(entry, dest)], repo.url)
    assert dest.read_bytes() == repo.files[entry.path]
    assert repo.requests[-1] == (entry.path, "bytes=120000-")


def test_server_without_range_support_sends_the_whole_file(repo: Repo, tmp_path: Path) -> None:
    """A 200 answer to a Range request overwrites the .part instead of appending to it."""
    entry = repo.add("g/a/1/a-1.jar", os.urandom(40_000))
    dest = tmp_path / entry.filename
    (tmp_path / (entry.filename + ".part")).write_bytes(repo.files[entry.path][:10_000])
    repo.ranges = False
    fetch_files([(entry, dest)], repo.url)
    assert dest.read_bytes() == repo.files[entry.path]


def test_stale_part_from_other_bytes_is_dropped_and_fetched_whole(
    repo: Repo, tmp_path: Path
) -> None:
    """A .part that does not belong to the locked file fails the hash once, then is replaced."""
    entry = repo.add("g/a/1/a-1.jar", os.urandom(40_000))
    dest = tmp_path / entry.filename
    (tmp_path / (entry.filename + ".part")).write_bytes(os.urandom(10_000))
    fetch_files([(entry, dest)], repo.url)
    assert dest.read_bytes() == repo.files[entry.path]
    assert [r[1] for r in repo.requests] == ["bytes=10000-", None]


def test_repository_serving_other_bytes_is_refused(repo: Repo, tmp_path: Path) -> None:
    """Bytes that never match the lock are an error naming the artifact, and nothing is kept."""
    entry = repo.add("g/a/1/a-1.jar", b"x" * 1000)
    repo.files[entry.path] = b"y" * 1000
    with pytest.raises(StackError, match=r"test:a-1:1:jar .* does not match .* sha256") as caught:
        fetch_files([(entry, tmp_path / entry.filename)], repo.url)
    assert not caught.value.retriable
    assert list(tmp_path.iterdir()) == []


def test_missing_artifact_names_it_and_the_mirror_setting(repo: Repo, tmp_path: Path) -> None:
    """A 404 says which artifact, where, and which setting points elsewhere; one line."""
    entry = LockedFile(
        coordinates="g:nope:1:jar", path="g/nope/1/nope-1.jar", size=1, sha256="0" * 64
    )
    with pytest.raises(StackError) as caught:
        fetch_files([(entry, tmp_path / entry.filename)], repo.url)
    message = str(caught.value)
    assert message == (
        f"g:nope:1:jar is not at {repo.url}/g/nope/1/nope-1.jar (HTTP 404); "
        "check PAYKAFKA_MAVEN_URL"
    )


def test_mirror_password_never_appears_in_errors() -> None:
    """A mirror URL with credentials is shown with the password masked."""
    shown = redact("https://me:s3cret@mirror.example/maven2/g/a.jar")
    assert "s3cret" not in shown
    assert shown.startswith("https://me:")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only(repo: Repo, tmp_path: Path) -> None:
    """On a terminal the line counts files and MB; written to a pipe it stays silent."""
    entries = [repo.add(f"g/p{i}/1/p{i}-1.jar", os.urandom(30_000)) for i in range(3)]
    tty, pipe = _Tty(), io.StringIO()
    fetch_files(
        [(e, tmp_path / "a" / e.filename) for e in entries],
        repo.url,
        progress=TerminalProgress(tty),
    )
    fetch_files(
        [(e, tmp_path / "b" / e.filename) for e in entries],
        repo.url,
        progress=TerminalProgress(pipe),
    )
    assert "\rpaykafka: downloading the stack: 3/3 files, 0.1/0.1 MB\n" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_kafka_libs_hold_exactly_the_locked_jars(repo: Repo, tmp_path: Path) -> None:
    """ensure_artifacts fetches the jars, removes a stray one, and marks the folder complete."""
    jars = tuple(repo.add(f"g/j{i}/1/j{i}-1.jar", os.urandom(5_000)) for i in range(3))
    lock = Lock(
        kafka=Component(version="9.9", files=jars),
        apicurio=Component(version="0", files=()),
    )
    libs = tmp_path / "kafka-9.9" / "libs"
    libs.mkdir(parents=True)
    (libs / "old-0.jar").write_bytes(b"stale")
    got, app = ensure_artifacts(tmp_path, kafka=True, registry=False, maven_url=repo.url, lock=lock)
    assert got == libs
    assert app is None
    assert sorted(p.name for p in libs.glob("*.jar")) == ["j0-1.jar", "j1-1.jar", "j2-1.jar"]
    assert (libs / ".complete").exists()


def test_damaged_jar_in_a_complete_cache_is_fetched_again(repo: Repo, tmp_path: Path) -> None:
    """A cache marked complete is still checked on each start: a damaged jar is replaced."""
    jars = tuple(repo.add(f"g/k{i}/1/k{i}-1.jar", os.urandom(8_000)) for i in range(2))
    lock = Lock(
        kafka=Component(version="9.9", files=jars), apicurio=Component(version="0", files=())
    )
    libs, _ = ensure_artifacts(tmp_path, kafka=True, registry=False, maven_url=repo.url, lock=lock)
    assert libs is not None
    (libs / "k1-1.jar").write_bytes(b"\0" * 8_000)
    repo.requests.clear()
    ensure_artifacts(tmp_path, kafka=True, registry=False, maven_url=repo.url, lock=lock)
    assert (libs / "k1-1.jar").read_bytes() == repo.files[jars[1].path]
    assert repo.requests == [(jars[1].path, None)]
    repo.requests.clear()
    ensure_artifacts(tmp_path, kafka=True, registry=False, maven_url=repo.url, lock=lock)
    assert repo.requests == []


def test_the_lock_matches_the_pinned_versions() -> None:
    """The shipped lock is for the versions in _versions.py and each file has a sane entry."""
    lock = load_lock()
    assert lock.kafka.version == KAFKA_VERSION
    assert lock.apicurio.version == APICURIO_VERSION
    names = [f.filename for f in lock.kafka.files]
    assert f"kafka_2.13-{KAFKA_VERSION}.jar" in names
    assert any(n.startswith("log4j-slf4j-impl-") for n in names)
    assert len(names) == len(set(names))
    assert [f.filename for f in lock.apicurio.files] == [
        f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz"
    ]
    assert Lock.loads(LOCK_PATH.read_text()) == lock
    assert Lock.loads(lock.dumps()) == lock


def test_lock_entries_cannot_escape_the_cache() -> None:
    """A path with ``..`` in the lock is refused before anything is written."""
    with pytest.raises(StackError, match="unsafe path"):
        LockedFile(coordinates="x", path="../../etc/passwd", size=1, sha256="0" * 64)


def test_maven_url_comes_from_the_environment() -> None:
    """PAYKAFKA_MAVEN_URL sets the mirror (trailing slash dropped); Central is the default."""
    assert StackConfig.from_env({}).maven_url == "https://repo.maven.apache.org/maven2"
    config = StackConfig.from_env({"PAYKAFKA_MAVEN_URL": "https://me:pw@mirror.example/m2/"})
    assert config.maven_url == "https://me:pw@mirror.example/m2"
    assert "pw@" not in repr(config)
    with pytest.raises(ConfigError, match="PAYKAFKA_MAVEN_URL must be an http"):
        StackConfig.from_env({"PAYKAFKA_MAVEN_URL": "mirror.example/m2"})
