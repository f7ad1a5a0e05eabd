"""``docker-compose.yml`` must give the same endpoints and versions as ``paykafka stack up``.

No Docker needed: the file is parsed and held to the library defaults and the pinned versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from paykafka._settings import DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_REGISTRY_URL
from paykafka._stack import _versions
from paykafka._stack._config import CCOMPAT_PATH

COMPOSE_FILE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The ``services`` mapping of the compose file."""
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    result = data["services"]
    assert isinstance(result, dict)
    return result


def published(service: dict[str, Any]) -> dict[int, int]:
    """``{host_port: container_port}`` from ``ports`` entries like ``127.0.0.1:9092:9092``."""
    mapping = {}
    for entry in service["ports"]:
        *_, host, container = str(entry).split(":")
        mapping[int(host)] = int(container)
    return mapping


def test_kafka_container_is_named_for_the_tutorial(services: dict[str, Any]) -> None:
    """``docker exec -it kafka kafka-topics ...`` finds a container called ``kafka``."""
    assert services["kafka"]["container_name"] == "kafka"


def test_kafka_image_is_the_pinned_confluent_image(services: dict[str, Any]) -> None:
    """The Kafka image is the pinned one, a Confluent image with ``kafka-topics`` on PATH."""
    image = services["kafka"]["image"]
    assert image == _versions.COMPOSE_KAFKA_IMAGE
    assert image.startswith("confluentinc/cp-kafka:")


def test_kafka_port_matches_the_default_bootstrap_servers(services: dict[str, Any]) -> None:
    """The host port and advertised listener give the library's default bootstrap servers."""
    host, port = DEFAULT_BOOTSTRAP_SERVERS.split(",")[0].rsplit(":", 1)
    assert published(services["kafka"]) == {int(port): int(port)}
    env = services["kafka"]["environment"]
    assert f"PLAINTEXT://{host}:{port}" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def test_registry_image_is_the_pinned_apicurio(services: dict[str, Any]) -> None:
    """The registry image is Apicurio at exactly the version the local stack downloads."""
    image = services["registry"]["image"]
    assert image == _versions.COMPOSE_REGISTRY_IMAGE
    assert image == f"apicurio/apicurio-registry:{_versions.APICURIO_VERSION}"


def test_registry_port_matches_the_default_registry_url(services: dict[str, Any]) -> None:
    """Host port 8081 reaches Apicurio's 8080, so the default ccompat URL works unchanged."""
    url = urlsplit(DEFAULT_REGISTRY_URL)
    assert url.path == CCOMPAT_PATH
    assert published(services["registry"]) == {url.port: 8080}


def test_registry_is_configured_like_the_local_stack(services: dict[str, Any]) -> None:
    """BACKWARD by default, deletions allowed, content ids: the same registry semantics."""
    env = services["registry"]["environment"]
    assert env["APICURIO_RULES_GLOBAL_COMPATIBILITY"] == "BACKWARD"
    for what in ("GROUP", "ARTIFACT", "ARTIFACT_VERSION"):
        assert env[f"APICURIO_REST_DELETION_{what}_ENABLED"] == "true"
    assert env["APICURIO_CCOMPAT_LEGACY_ID_MODE_ENABLED"] == "false"
