"""Every version the local stack runs, pinned here and nowhere else.

Kafka 4.4.0 is the newest 4.x on Maven Central; it formats and serves in KRaft mode on Java 17
and on Java 25 (checked on this project's machines), so nothing argues for an older line.
Apicurio Registry 3.3.3 is the newest release published as the runnable ``tar.gz:all`` archive
(3.1.x and 3.2.x are not); since 3.2 it needs Java 21. The Docker images in
``docker-compose.yml`` are pinned here too so a test can hold the file to these values.
"""

from __future__ import annotations

KAFKA_VERSION = "4.4.0"
"""``org.apache.kafka:kafka_2.13``; the broker, controller and storage tool are in that jar."""

SCALA_BINARY_VERSION = "2.13"

LOG4J_VERSION = "2.25.5"
"""The log4j2 that ``kafka_2.13`` depends on; the SLF4J bridge must match it exactly.

Kafka's Maven pom brings ``log4j-api`` and ``log4j-core`` but not the SLF4J 1.x binding that its
own distribution ships in ``libs/``; without it every broker log line goes to a no-op logger.
"""

APICURIO_VERSION = "3.3.3"
"""``io.apicurio:apicurio-registry-app:<v>:tar.gz:all``, a Quarkus fast-jar."""

KAFKA_MIN_JAVA = 17
APICURIO_MIN_JAVA = 21

COMPOSE_KAFKA_IMAGE = "confluentinc/cp-kafka:8.2.1"
"""Confluent Platform 8.2 ships Apache Kafka 4.2 and puts ``kafka-topics`` on ``PATH``, so the
tutorial's ``docker exec -it kafka kafka-topics ...`` works unchanged; the ``apache/kafka``
image only has ``/opt/kafka/bin/kafka-topics.sh``."""

COMPOSE_REGISTRY_IMAGE = f"apicurio/apicurio-registry:{APICURIO_VERSION}"

MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
"""Used by ``scripts/lock_stack_artifacts.py`` (maintainers only); pinned so every Maven install
resolves the same way (Maven 3.8 would default to 2.8)."""

KAFKA_COORDINATES = f"org.apache.kafka:kafka_{SCALA_BINARY_VERSION}:{KAFKA_VERSION}"
LOG4J_SLF4J_COORDINATES = f"org.apache.logging.log4j:log4j-slf4j-impl:{LOG4J_VERSION}"
APICURIO_COORDINATES = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
