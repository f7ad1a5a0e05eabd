"""Every error paykafka raises, in one hierarchy.

Callers catch :class:`PayKafkaError` for everything, or a branch for one concern. Each error's
message says what was wrong and what to do next; ``retriable`` says whether trying the same
thing again later can help (a registry outage can, a malformed event never will). Errors that
resemble a builtin also subclass it, so ``except ValueError`` keeps working for validation, and
serde errors also subclass confluent-kafka's ``SerializationError`` so code written against the
stock serializers catches ours unchanged::

    PayKafkaError
    ├── ConfigError(ValueError)               bad settings or arguments
    ├── ValidationError(ValueError)           a PaymentEvent field is invalid (.field)
    ├── SchemaError                           the Avro schema file is unreadable or invalid
    │   └── IncompatibleSchemaError           breaks the subject's compatibility rule (.problems)
    ├── RegistryError                         the Schema Registry said no (.status, .error_code)
    │   ├── RegistryUnavailableError          unreachable, timed out or 5xx (retriable)
    │   ├── SubjectNotFoundError              no such subject / version
    │   ├── SchemaNotFoundError               no schema with that id
    │   └── RegistryIncompatibleError         the registry refused an incompatible schema
    │                                         (also an IncompatibleSchemaError)
    ├── SerdeError(SerializationError)        encoding or decoding failed
    │   ├── EncodeError                       an event could not be written with the schema
    │   └── DecodeError                       bytes are not a readable event (.reason)
    ├── KafkaError                            the broker or librdkafka failed (.code)
    │   ├── DeliveryError                     events were not delivered (.undelivered)
    │   ├── BrokerUnavailableError            no broker answered (retriable)
    │   └── TransactionError                  a Kafka transaction cannot go on (processor)
    │       └── FencedError                   another instance took over this transactional id
    └── StackError                            the local stack cannot start or stop
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING

from confluent_kafka.serialization import SerializationError as _ConfluentSerializationError

if TYPE_CHECKING:
    from paykafka._event import PaymentEvent

__all__ = [
    "BrokerUnavailableError",
    "ConfigError",
    "DecodeError",
    "DecodeReason",
    "DeliveryError",
    "EncodeError",
    "FencedError",
    "IncompatibleSchemaError",
    "KafkaError",
    "PayKafkaError",
    "RegistryError",
    "RegistryIncompatibleError",
    "RegistryUnavailableError",
    "SchemaError",
    "SchemaNotFoundError",
    "SerdeError",
    "StackError",
    "SubjectNotFoundError",
    "TransactionError",
    "ValidationError",
]


class PayKafkaError(Exception):
    """Root of every paykafka error.

    ``retriable`` is a class default that instances may override: it answers "will the same
    call succeed later without anyone changing code, data or config?".
    """

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retriable is not None:
            self.retriable = retriable

    def __str__(self) -> str:
        return self.message


class ConfigError(PayKafkaError, ValueError):
    """Settings or arguments that cannot work; fix the named setting or variable."""


class ValidationError(PayKafkaError, ValueError):
    """A :class:`~paykafka.PaymentEvent` field holds a value the contract forbids."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid {field}: {message}")
        self.field = field


class SchemaError(PayKafkaError):
    """The Avro schema file cannot be read or is not a valid payment schema."""


class IncompatibleSchemaError(SchemaError):
    """A schema breaks the subject's compatibility rule; ``problems`` explains each break."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        detail = "".join(f"\n  - {p}" for p in problems)
        super().__init__(message + detail)
        self.problems: tuple[str, ...] = tuple(problems)


class RegistryError(PayKafkaError):
    """The Schema Registry refused a request.

    ``status`` is the HTTP status (``None`` when no answer came) and ``error_code`` the
    registry's own code from the response body (Confluent and Apicurio differ; both are kept).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: int | None = None,
        retriable: bool | None = None,
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.status = status
        self.error_code = error_code


class RegistryUnavailableError(RegistryError):
    """The registry could not be reached, timed out or failed on its side; try again later."""

    retriable = True


class SubjectNotFoundError(RegistryError):
    """The subject (or the asked version of it) is not registered."""


class SchemaNotFoundError(RegistryError):
    """No schema is registered under that id."""


class RegistryIncompatibleError(RegistryError, IncompatibleSchemaError):
    """The registry itself refused a schema as incompatible (HTTP 409)."""

    def __init__(
        self,
        message: str,
        problems: Sequence[str] = (),
        *,
        status: int | None = None,
        error_code: int | None = None,
    ) -> None:
        IncompatibleSchemaError.__init__(self, message, problems)
        self.status = status
        self.error_code = error_code


class SerdeError(PayKafkaError, _ConfluentSerializationError):
    """Encoding or decoding an event failed; also a confluent-kafka ``SerializationError``."""

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        PayKafkaError.__init__(self, message, retriable=retriable)


class EncodeError(SerdeError):
    """An event could not be written with the producer's schema."""


class DecodeReason(enum.Enum):
    """Why a record could not be decoded; stable values for dead-letter headers and logs."""

    NOT_CONFLUENT_FRAMING = "not_confluent_framing"
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"
    CORRUPT_AVRO = "corrupt_avro"
    WRONG_SCHEMA = "wrong_schema"
    INVALID_EVENT = "invalid_event"
    REGISTRY_UNAVAILABLE = "registry_unavailable"


class DecodeError(SerdeError):
    """Bytes that are not a readable payment event; ``reason`` says which way they fail."""

    def __init__(
        self,
        reason: DecodeReason,
        message: str,
        *,
        schema_id: int | None = None,
        retriable: bool | None = None,
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.reason = reason
        self.schema_id = schema_id


class KafkaError(PayKafkaError):
    """librdkafka or the broker failed; ``code`` keeps confluent-kafka's error code name."""

    def __init__(
        self, message: str, *, code: str | None = None, retriable: bool | None = None
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.code = code


class DeliveryError(KafkaError):
    """Events were not delivered; ``undelivered`` holds each event with the reason it failed."""

    def __init__(
        self,
        message: str,
        undelivered: Sequence[tuple[PaymentEvent, str]],
        *,
        code: str | None = None,
        retriable: bool | None = None,
    ) -> None:
        super().__init__(message, code=code, retriable=retriable)
        self.undelivered: tuple[tuple[PaymentEvent, str], ...] = tuple(undelivered)


class BrokerUnavailableError(KafkaError):
    """No broker answered at the bootstrap address; start one (``paykafka stack up``)."""

    retriable = True


class TransactionError(KafkaError):
    """A processor's transactional producer failed for good (librdkafka called it fatal).

    What the failed transaction wrote is aborted and its inputs are read again by whoever
    processes them next; this processor instance has stopped and must be started anew.
    """


class FencedError(TransactionError):
    """A newer processor started with the same transactional id and fenced this one.

    Nothing this instance wrote after that is committed, so nothing is doubled. If no other
    instance should exist, a stuck or restarted copy of this one took over; if two instances
    were meant to run, give each its own ``transactional_id`` (``PAYKAFKA_TRANSACTIONAL_ID``).
    """


class StackError(PayKafkaError):
    """The local Kafka + registry stack cannot be started, stopped or inspected."""
