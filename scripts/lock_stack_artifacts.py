"""Regenerate ``paykafka/_stack/artifacts.lock.json`` with Maven, for maintainers bumping versions.

This is the only place Maven is still used: it resolves Kafka's runtime classpath exactly as
Kafka's pom declares it (versions, exclusions), which we do not want to re-implement. Users'
``paykafka stack up`` then fetches the locked files with httpx alone and checks every sha256.

Usage, after changing the versions in ``paykafka/_stack/_versions.py``::

    .venv/bin/python scripts/lock_stack_artifacts.py      # needs mvn on PATH, writes the lock
    git diff paykafka/_stack/artifacts.lock.json

Maven copies the resolved files in repository layout, so each file's path below the output folder
is its URL path on Maven Central (and on any mirror of it).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from paykafka._stack._lockfile import LOCK_PATH, Component, Lock, LockedFile
from paykafka._stack._versions import (
    APICURIO_COORDINATES,
    APICURIO_VERSION,
    KAFKA_COORDINATES,
    KAFKA_VERSION,
    LOG4J_SLF4J_COORDINATES,
    MAVEN_DEPENDENCY_PLUGIN,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=LOCK_PATH, help="lock file to write")
    args = parser.parse_args(argv)
    mvn = shutil.which("mvn")
    if mvn is None:
        print("mvn is not on PATH; install Maven to regenerate the lock file", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="paykafka-lock-") as tmp:
        work = Path(tmp)
        kafka = _resolve(
            mvn, work / "kafka", [KAFKA_COORDINATES, LOG4J_SLF4J_COORDINATES], transitive=True
        )
        apicurio = _resolve(mvn, work / "apicurio", [APICURIO_COORDINATES], transitive=False)
    lock = Lock(
        kafka=Component(version=KAFKA_VERSION, files=kafka),
        apicurio=Component(version=APICURIO_VERSION, files=apicurio),
    )
    args.output.write_text(lock.dumps(), encoding="utf-8")
    total = sum(f.size for f in (*kafka, *apicurio))
    print(f"wrote {args.output}: {len(kafka) + len(apicurio)} files, {total / 1e6:.1f} MB")
    return 0


def _resolve(
    mvn: str, work: Path, coordinates: list[str], *, transitive: bool
) -> tuple[LockedFile, ...]:
    """The runtime files of ``coordinates`` as Maven resolves them, with size and sha256."""
    work.mkdir(parents=True)
    pom = work / "pom.xml"
    pom.write_text(_pom(coordinates, transitive=transitive), encoding="utf-8")
    out = work / "repo"
    subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            "-Dmdep.useRepositoryLayout=true",
            f"-DoutputDirectory={out}",
        ],
        check=True,
    )
    files = []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if not path.is_file() or not _is_artifact(
            rel
        ):  # Maven's own bookkeeping (_remote.repositories, metadata)
            continue
        files.append(
            LockedFile(
                coordinates=_coordinates(rel),
                path=rel,
                size=path.stat().st_size,
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            )
        )
    return tuple(files)


def _is_artifact(rel: str) -> bool:
    parts = rel.split("/")
    return len(parts) >= 4 and parts[-1].startswith(f"{parts[-3]}-{parts[-2]}")


def _coordinates(rel: str) -> str:
    """``group:artifact:version[:classifier]:extension`` read back from a repository path."""
    *group, artifact, version, filename = rel.split("/")
    rest = filename.removeprefix(f"{artifact}-{version}")
    extension = next(e for e in ("tar.gz", "jar", "zip", "pom") if rest.endswith("." + e))
    classifier = rest.removesuffix("." + extension).removeprefix("-")
    parts = [".".join(group), artifact, version, *([classifier] if classifier else []), extension]
    return ":".join(parts)


def _pom(coordinates: list[str], *, transitive: bool) -> str:
    # Apicurio's archive is self-contained, but its pom names dependencies from repositories
    # beyond Maven Central; excluding them all keeps Maven from even reading their poms.
    exclusions = (
        ""
        if transitive
        else "<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId>"
        "</exclusion></exclusions>"
    )
    deps = []
    for coords in coordinates:
        group, artifact, version, *rest = coords.split(":")
        extra = ""
        if rest:  # group:artifact:version:type:classifier, as _versions.py spells Apicurio
            extra = f"<type>{rest[0]}</type>" + (
                f"<classifier>{rest[1]}</classifier>" if len(rest) > 1 else ""
            )
        deps.append(
            f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version>{extra}{exclusions}</dependency>"
        )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">'
        "<modelVersion>4.0.0</modelVersion>"
        "<groupId>local.paykafka</groupId><artifactId>stack-lock</artifactId>"
        f"<version>0</version><packaging>pom</packaging>"
        f"<dependencies>{''.join(deps)}</dependencies></project>\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
