"""Kafka's jars and the Apicurio app in a cache outside the repository, fetched without Maven.

The files come from the lock file shipped in the package (:mod:`._lockfile`), which a maintainer
regenerates with Maven on a version bump; here only httpx is needed (:mod:`._fetch`). Layout of
the cache (``PAYKAFKA_CACHE_DIR``)::

    kafka-<v>/libs/*.jar             Kafka's runtime classpath, exactly the locked jars
    apicurio-registry-<v>/           the unpacked Quarkus app (quarkus-run.jar at its top)
    downloads/*.tar.gz[.part]        the Apicurio archive while it downloads, removed once unpacked

Kafka's jars are checked against their sha256 every time a node starts (45 MB: under 0.1 s), so
a damaged one is fetched again. The Apicurio archive is checked before it is unpacked, and the
unpacked folder's ``.complete`` marker records the archive's sha256. A file lock serialises
concurrent fetches, so two ``up``s never write the same file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

from paykafka._errors import StackError

from ._fetch import DEFAULT_MAVEN_URL, Progress, fetch_files, is_intact, redact
from ._lockfile import Lock, load_lock

__all__ = ["ensure_apicurio", "ensure_artifacts", "ensure_kafka"]

log = logging.getLogger(__name__)

_MARKER = ".complete"


def ensure_artifacts(
    cache_dir: Path,
    *,
    kafka: bool,
    registry: bool,
    maven_url: str = DEFAULT_MAVEN_URL,
    progress: Progress | None = None,
    lock: Lock | None = None,
) -> tuple[Path | None, Path | None]:
    """Kafka's ``libs`` folder and the Apicurio app folder, each only when asked for.

    Whatever is missing or damaged is fetched in one parallel pass, so a cold start downloads
    the jars and the registry archive at the same time.
    """
    locked = load_lock() if lock is None else lock
    libs = _libs_dir(cache_dir, locked) if kafka else None
    app = _app_dir(cache_dir, locked) if registry else None
    need_kafka = libs is not None and not _kafka_ready(libs, locked)
    need_app = app is not None and not _app_ready(app, locked)
    if not (need_kafka or need_app):
        return libs, app
    with _locked(cache_dir):
        wanted = []
        if libs is not None and need_kafka:
            libs.mkdir(parents=True, exist_ok=True)
            wanted += [(f, libs / f.filename) for f in locked.kafka.files]
        archives = [(f, cache_dir / "downloads" / f.filename) for f in locked.apicurio.files]
        if app is not None and need_app and not _app_ready(app, locked):  # re-check: locked now
            wanted += archives
        log.info("fetching %d stack files from %s", len(wanted), redact(maven_url))
        fetch_files(wanted, maven_url, progress=progress)
        if libs is not None and need_kafka:
            _finish_libs(libs, locked)
        if app is not None and need_app and not _app_ready(app, locked):
            _unpack(archives[0][1], app, locked)
    return libs, app


def ensure_kafka(cache_dir: Path, maven_url: str = DEFAULT_MAVEN_URL) -> Path:
    """The directory of jars that make Kafka's runtime classpath, fetching what is missing."""
    libs, _ = ensure_artifacts(cache_dir, kafka=True, registry=False, maven_url=maven_url)
    assert libs is not None
    return libs


def ensure_apicurio(cache_dir: Path, maven_url: str = DEFAULT_MAVEN_URL) -> Path:
    """The unpacked Apicurio Registry app (the directory holding ``quarkus-run.jar``)."""
    _, app = ensure_artifacts(cache_dir, kafka=False, registry=True, maven_url=maven_url)
    assert app is not None
    return app


def _libs_dir(cache_dir: Path, lock: Lock) -> Path:
    return cache_dir / f"kafka-{lock.kafka.version}" / "libs"


def _app_dir(cache_dir: Path, lock: Lock) -> Path:
    return cache_dir / f"apicurio-registry-{lock.apicurio.version}"


def _kafka_ready(libs: Path, lock: Lock) -> bool:
    return (libs / _MARKER).exists() and all(
        is_intact(f, libs / f.filename) for f in lock.kafka.files
    )


def _app_ready(app: Path, lock: Lock) -> bool:
    """Unpacked from the locked archive; an empty marker is one Maven wrote (before the lock)."""
    try:
        marker = (app / _MARKER).read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return marker in ("", lock.apicurio.fingerprint)


def _finish_libs(libs: Path, lock: Lock) -> None:
    """Drop jars the lock does not list (a version bump must not leave two on the classpath)."""
    keep = {f.filename for f in lock.kafka.files}
    for stray in libs.glob("*.jar"):
        if stray.name not in keep:
            log.info("removing %s: not in the lock file", stray)
            stray.unlink()
    (libs / _MARKER).write_text(lock.kafka.fingerprint + "\n", encoding="utf-8")


def _unpack(archive: Path, target: Path, lock: Lock) -> None:
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    except (OSError, tarfile.TarError) as exc:
        archive.unlink(missing_ok=True)
        raise StackError(
            f"could not unpack {archive}: {exc}; it was removed, run again to fetch it anew",
            retriable=True,
        ) from exc
    if not (staging / "quarkus-run.jar").is_file():
        raise StackError(f"{archive} has no quarkus-run.jar at its top level")
    (staging / _MARKER).write_text(lock.apicurio.fingerprint + "\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    archive.unlink()  # 160 MB we no longer need: the unpacked app is what runs


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
