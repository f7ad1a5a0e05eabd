"""scripts/lock_stack_artifacts.py reads Maven's repository layout back into lock entries."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

from paykafka._stack._lockfile import load_lock

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "lock_stack_artifacts.py"


def _script() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("lock_stack_artifacts", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_coordinates_are_read_back_from_repository_paths() -> None:
    """A plain jar and a classified archive give Maven's group:artifact:version[:cls]:ext."""
    script = _script()
    assert (
        script._coordinates("org/apache/kafka/kafka_2.13/4.4.0/kafka_2.13-4.4.0.jar")
        == "org.apache.kafka:kafka_2.13:4.4.0:jar"
    )
    assert (
        script._coordinates("io/apicurio/app/3.3.3/app-3.3.3-all.tar.gz")
        == "io.apicurio:app:3.3.3:all:tar.gz"
    )


def test_maven_bookkeeping_files_are_not_artifacts() -> None:
    """_remote.repositories and maven-metadata files in the copied tree are skipped."""
    script = _script()
    assert script._is_artifact("g/a/1.0/a-1.0.jar")
    assert not script._is_artifact("g/a/1.0/_remote.repositories")
    assert not script._is_artifact("g/a/maven-metadata-local.xml")


def test_shipped_lock_agrees_with_the_script() -> None:
    """Every shipped entry's coordinates are what the script derives from its path."""
    script = _script()
    lock = load_lock()
    for entry in (*lock.kafka.files, *lock.apicurio.files):
        assert script._coordinates(entry.path) == entry.coordinates


def test_archive_pom_excludes_transitive_dependencies() -> None:
    """The Apicurio pom asks for the archive alone (its pom names repositories beyond Central)."""
    script = _script()
    pom = script._pom(["io.apicurio:app:3.3.3:tar.gz:all"], transitive=False)
    assert "<type>tar.gz</type><classifier>all</classifier>" in pom
    assert "<exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion>" in pom
    assert "<exclusions>" not in script._pom(["g:a:1"], transitive=True)
