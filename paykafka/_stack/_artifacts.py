"""Getting Kafka and Apicurio from Maven Central, once, into a cache outside the repository.

Maven resolves Kafka's runtime classpath exactly as its pom declares it (versions, exclusions)
and reuses ``~/.m2`` across projects, so we write a tiny pom and let ``mvn`` do the work instead
of re-implementing dependency resolution. Each artifact is built in a temporary directory and
renamed into place, and a file lock serialises concurrent ``up``s, so a half-finished download
is never mistaken for a complete one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

from paykafka._errors import StackError

from ._versions import (
    APICURIO_COORDINATES,
    APICURIO_VERSION,
    KAFKA_COORDINATES,
    KAFKA_VERSION,
    LOG4J_SLF4J_COORDINATES,
    MAVEN_DEPENDENCY_PLUGIN,
)

__all__ = ["ensure_apicurio", "ensure_kafka"]

log = logging.getLogger(__name__)

_MAVEN_TIMEOUT = 900.0
_MAVEN_NOISE = ("To see the full stack trace", "Re-run Maven", "For more information", "[Help")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GOAL_PREFIX = re.compile(r"^Failed to execute goal \S+ \([^)]*\) on project [^:]+: ")


def ensure_kafka(cache_dir: Path) -> Path:
    """The directory of jars that make Kafka's runtime classpath, downloading it if needed."""
    target = cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
    if (target / ".complete").exists():
        return target
    with _locked(cache_dir):
        if (target / ".complete").exists():
            return target
        work = target.parent
        work.mkdir(parents=True, exist_ok=True)
        pom = work / "pom.xml"
        pom.write_text(_kafka_pom(), encoding="utf-8")
        staging = work / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        log.info("resolving %s and its runtime dependencies with Maven", KAFKA_COORDINATES)
        _maven(
            KAFKA_COORDINATES,
            "-f",
            str(pom),
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        )
        if not any(staging.glob("kafka_*.jar")):
            raise StackError(f"Maven finished but {staging} holds no kafka jar")
        (staging / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def ensure_apicurio(cache_dir: Path) -> Path:
    """The unpacked Apicurio Registry app (the directory holding ``quarkus-run.jar``)."""
    target = cache_dir / f"apicurio-registry-{APICURIO_VERSION}"
    if (target / ".complete").exists():
        return target
    with _locked(cache_dir):
        if (target / ".complete").exists():
            return target
        downloads = cache_dir / "downloads"
        log.info("downloading %s with Maven", APICURIO_COORDINATES)
        _maven(
            APICURIO_COORDINATES,
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={APICURIO_COORDINATES}",
            f"-DoutputDirectory={downloads}",
        )
        archives = sorted(downloads.glob(f"apicurio-registry-app-{APICURIO_VERSION}*.tar.gz"))
        if not archives:
            raise StackError(f"Maven finished but no Apicurio archive is in {downloads}")
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            with tarfile.open(archives[0]) as tar:
                tar.extractall(staging, filter="data")
        except (OSError, tarfile.TarError) as exc:
            raise StackError(f"could not unpack {archives[0]}: {exc}; delete it and retry") from exc
        if not (staging / "quarkus-run.jar").is_file():
            raise StackError(f"{archives[0]} has no quarkus-run.jar at its top level")
        (staging / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        archives[0].unlink()  # Maven keeps its own copy in the local repository
    return target


def _kafka_pom() -> str:
    deps = "".join(
        "<dependency><groupId>{}</groupId><artifactId>{}</artifactId>"
        "<version>{}</version></dependency>".format(*coords.split(":"))
        for coords in (KAFKA_COORDINATES, LOG4J_SLF4J_COORDINATES)
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">'
        "<modelVersion>4.0.0</modelVersion>"
        "<groupId>local.paykafka</groupId><artifactId>kafka-runtime</artifactId>"
        f"<version>{KAFKA_VERSION}</version><packaging>pom</packaging>"
        f"<dependencies>{deps}</dependencies></project>\n"
    )


def _maven(what: str, *args: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            f"Maven (mvn) is not on PATH; it is needed once to download {what} from Maven "
            "Central (apt-get install maven)"
        )
    argv = [mvn, "-B", "-q", *args]
    try:
        result = subprocess.run(  # noqa: S603 - our own argv, no shell
            argv,
            capture_output=True,
            text=True,
            timeout=_MAVEN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(
            f"downloading {what} with Maven took over {_MAVEN_TIMEOUT:.0f}s; check the network "
            "and retry",
            retriable=True,
        ) from exc
    if result.returncode != 0:
        raise StackError(
            f"could not download {what} with Maven (exit {result.returncode}): "
            f"{_last_maven_error(result.stdout + result.stderr)}",
            retriable=True,
        )


def _last_maven_error(output: str) -> str:
    """Maven's own summary of what failed, without its "re-run with -X" footer."""
    errors = [
        line.removeprefix("[ERROR]").removesuffix("-> [Help 1]").strip()
        for line in _ANSI.sub("", output).splitlines()
        if line.startswith("[ERROR]")
    ]
    meaningful = [e for e in errors if e and not e.startswith(_MAVEN_NOISE)]
    goal = [e for e in meaningful if _GOAL_PREFIX.match(e)]
    if goal:
        text = _GOAL_PREFIX.sub("", goal[-1])
    elif meaningful:
        text = meaningful[-1]
    else:
        tail = [line for line in _ANSI.sub("", output).splitlines() if line.strip()]
        text = tail[-1] if tail else "no output"
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
