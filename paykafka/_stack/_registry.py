"""Apicurio Registry 3 with its Confluent-compatible API, as our Schema Registry.

Choices, all passed as ``-D`` system properties so ``ps`` shows the whole configuration:

- Storage is the SQL backend on an H2 *file* database in the state dir: schemas survive
  ``down``/``up``, start-up takes a few seconds, and no Kafka topic has to exist first (KafkaSQL
  would tie the registry's start to the broker's and replay a journal on every start).
- The global COMPATIBILITY rule defaults to BACKWARD, as Confluent Schema Registry's does;
  Apicurio's own default is no rule at all, which would accept any change.
- Deleting groups, artifacts and versions is enabled so tests can clean up subjects through
  ``DELETE /subjects/...``; Apicurio refuses those calls by default.
- ``apicurio.ccompat.legacy-id-mode.enabled`` stays false: ccompat ids are *content* ids, so the
  same schema gets the same id under every subject, as in Confluent.
- Both HTTP listeners (API and Quarkus management) bind 127.0.0.1 only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from . import _secure
from ._config import CCOMPAT_PATH, StackConfig
from ._java import JavaRuntime

__all__ = ["log_file", "output_file", "registry_answers", "registry_command", "registry_dir"]

_HOST = "127.0.0.1"

_JVM_FLAGS = (
    "-XX:+UseSerialGC",
    "-XX:MaxMetaspaceSize=192m",
    "-XX:ReservedCodeCacheSize=64m",
    "-XX:TieredStopAtLevel=1",  # C1 only: faster start, less memory; plenty for a dev registry
    "-Xss512k",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def registry_dir(config: StackConfig) -> Path:
    return config.state_dir / "registry"


def log_file(config: StackConfig) -> Path:
    return config.state_dir / "logs" / "registry.log"


def output_file(config: StackConfig) -> Path:
    """The JVM's own stdout/stderr: the Quarkus banner, crashes and JVM warnings."""
    return config.state_dir / "logs" / "registry.out"


def registry_command(config: StackConfig, java: JavaRuntime, app: Path) -> list[str]:
    directory = registry_dir(config)
    (directory / "h2").mkdir(parents=True, exist_ok=True)
    props = {
        "quarkus.http.host": _HOST,
        "quarkus.http.port": str(config.registry_port),
        "quarkus.management.host": _HOST,
        "quarkus.management.port": str(config.management_port),
        "apicurio.storage.kind": "sql",
        "apicurio.storage.sql.kind": "h2",
        "apicurio.datasource.url": f"jdbc:h2:file:{directory / 'h2' / 'registry'}",
        "apicurio.datasource.jdbc.initial-size": "2",
        "apicurio.datasource.jdbc.min-size": "2",
        "apicurio.datasource.jdbc.max-size": "20",
        "apicurio.rules.global.compatibility": "BACKWARD",
        "apicurio.rest.deletion.group.enabled": "true",
        "apicurio.rest.deletion.artifact.enabled": "true",
        "apicurio.rest.deletion.artifact-version.enabled": "true",
        "apicurio.ccompat.legacy-id-mode.enabled": "false",
        "apicurio.storage.snapshot.location": str(directory),
        "apicurio.import.work-dir": str(directory),
        "quarkus.log.console.enabled": "false",
        "quarkus.log.file.enabled": "true",
        "quarkus.log.file.json.enabled": "false",
        "quarkus.log.file.path": str(log_file(config)),
        "quarkus.log.file.format": "%d{yyyy-MM-dd HH:mm:ss,SSS} %-5p [%c{3.}] (%t) %s%e%n",
        "quarkus.log.file.rotation.max-file-size": "20M",
        "quarkus.log.file.rotation.max-backup-index": "3",
    }
    if config.secure:
        props.update(_secure.registry_properties(config))
    return [
        str(java.executable),
        "-Xms64m",
        f"-Xmx{config.registry_heap_mb}m",
        *_JVM_FLAGS,
        *(f"-D{k}={v}" for k, v in props.items()),
        "-jar",
        str(app / "quarkus-run.jar"),
    ]


def registry_answers(port: int, timeout: float = 2.0, config: StackConfig | None = None) -> bool:
    """Whether ``GET /subjects`` of the ccompat API answers 200 on ``port``.

    On a secured stack (``config.secure``) over HTTPS, trusting the stack's CA, as ``admin``.
    """
    secure = config is not None and config.secure
    scheme = "https" if secure else "http"
    # The certificate names localhost, which is also what clients are told to use.
    host = "localhost" if secure else _HOST
    extra: dict[str, Any] = dict(_secure.registry_verify(config)) if config and secure else {}
    try:
        response = httpx.get(
            f"{scheme}://{host}:{port}{CCOMPAT_PATH}/subjects", timeout=timeout, **extra
        )
    except httpx.HTTPError:
        return False
    return response.status_code == httpx.codes.OK
