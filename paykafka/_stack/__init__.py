"""The local stack: a real Kafka (KRaft) broker and Apicurio Registry, with no Docker.

``paykafka stack up`` (see :mod:`paykafka._cli._stack_cmd`) is the usual entry point; tests and
fault-injection scripts drive :class:`Stack` directly to stop, kill, pause and restart single
Kafka nodes or the registry.
"""

from ._config import StackConfig
from ._core import ComponentStatus, LogTarget, Stack, StackStatus
from ._versions import APICURIO_VERSION, KAFKA_VERSION

__all__ = [
    "APICURIO_VERSION",
    "KAFKA_VERSION",
    "ComponentStatus",
    "LogTarget",
    "Stack",
    "StackConfig",
    "StackStatus",
]
