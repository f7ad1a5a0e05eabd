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
    │   ├── RegistryAuthenticationError       401 (also an AuthenticationError)
    │   ├── RegistryAuthorizationError        403 (also an AuthorizationError)
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
    ├── SecurityError                         refused for who we are or how we connect
    │   ├── AuthenticationError               wrong or unknown user / password (Kafka or registry)
    │   ├── AuthorizationError                a missing ACL (.resource_type, .resource, .operation)
    │   └── TlsError                          TLS failed: untrusted CA (.ca_location), expired or
    │                                         wrong-host certificate, plaintext vs TLS listener
    └── StackError                            the local stack cannot start or stop

Security errors are never retriable: retrying a wrong password only locks accounts and fills
logs. Clients stop at the first one (no retry storm); their messages never hold a secret.
:func:`security_error` turns a librdkafka error into one of them, in one place.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING

from confluent_kafka.serialization import SerializationError as _ConfluentSerializationError

if TYPE_CHECKING:
    from paykafka._event import PaymentEvent

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
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
    "RegistryAuthenticationError",
    "RegistryAuthorizationError",
    "RegistryError",
    "RegistryIncompatibleError",
    "RegistryUnavailableError",
    "SchemaError",
    "SchemaNotFoundError",
    "SecurityError",
    "SerdeError",
    "StackError",
    "SubjectNotFoundError",
    "TlsError",
    "TransactionError",
    "ValidationError",
    "security_error",
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


class SecurityError(PayKafkaError):
    """The broker or the registry refused us for who we are or how we connect; never retriable.

    ``code`` keeps confluent-kafka's error code name (``_AUTHENTICATION``, ``_SSL``,
    ``TOPIC_AUTHORIZATION_FAILED``...) or ``HTTP 401`` / ``HTTP 403`` for the registry.
    """

    retriable = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        PayKafkaError.__init__(self, message, retriable=False)
        self.code = code


class AuthenticationError(SecurityError):
    """Login refused: wrong password, unknown user or a SASL mechanism the server does not
    offer. Fix ``PAYKAFKA_SASL_USERNAME`` / ``PAYKAFKA_SASL_PASSWORD`` (or the registry's)."""


class AuthorizationError(SecurityError):
    """Logged in, but no ACL allows ``operation`` on ``resource_type`` ``resource``.

    Raised for producing (WRITE on the topic), consuming (READ on the topic and on the group),
    creating topics (CREATE) and dead-lettering (WRITE on the DLQ topic); an operator grants it
    with ``kafka-acls --add``. ``undelivered`` holds the events a refused producer still had.
    """

    def __init__(
        self,
        message: str,
        *,
        resource_type: str,
        resource: str,
        operation: str,
        code: str | None = None,
        undelivered: Sequence[tuple[PaymentEvent, str]] = (),
    ) -> None:
        super().__init__(message, code=code)
        self.resource_type = resource_type
        self.resource = resource
        self.operation = operation
        self.undelivered: tuple[tuple[PaymentEvent, str], ...] = tuple(undelivered)


class TlsError(SecurityError):
    """The TLS handshake failed: the server's certificate is not signed by the CA in
    ``ca_location``, has expired or names another host; or one side speaks TLS and the other
    plaintext (check ``PAYKAFKA_SECURITY_PROTOCOL`` against the listener)."""

    def __init__(self, message: str, *, ca_location: str | None = None, code: str | None = None):
        super().__init__(message, code=code)
        self.ca_location = ca_location


class RegistryAuthenticationError(RegistryError, AuthenticationError):
    """The registry refused the credentials (HTTP 401); also an :class:`AuthenticationError`."""

    def __init__(
        self, message: str, *, status: int | None = None, error_code: int | None = None
    ) -> None:
        SecurityError.__init__(self, message, code=f"HTTP {status}")
        self.status = status
        self.error_code = error_code


class RegistryAuthorizationError(RegistryError, AuthorizationError):
    """The registry knows the user but refuses the call (HTTP 403); also an
    :class:`AuthorizationError` (``resource`` is the API path, ``operation`` the method)."""

    def __init__(
        self,
        message: str,
        *,
        resource: str,
        operation: str,
        status: int | None = None,
        error_code: int | None = None,
    ) -> None:
        SecurityError.__init__(self, message, code=f"HTTP {status}")
        self.status = status
        self.error_code = error_code
        self.resource_type = "registry path"
        self.resource = resource
        self.operation = operation
        self.undelivered = ()


#: librdkafka / broker codes of refused ACLs, with the resource type each one is about.
_AUTHZ_CODES = {
    "TOPIC_AUTHORIZATION_FAILED": "topic",
    "GROUP_AUTHORIZATION_FAILED": "group",
    "CLUSTER_AUTHORIZATION_FAILED": "cluster",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED": "transactional id",
}
_PLAINTEXT_HINT = "connecting to a SSL listener"
#: An ``_SSL`` error is a refusal only when the handshake or the certificate failed; a TLS
#: connection cut by a crashing broker is an outage, retried like any other.
_TLS_REFUSAL_HINTS = ("handshake", "certificate", "wrong version number", "ssl.ca.location")
_CONNECTION_HINTS = ("disconnected", "connection reset", "unexpected eof", "timed out")
_TLS_HINT = "connecting to a PLAINTEXT broker listener"


def security_error(
    code: str,
    text: str,
    *,
    servers: str,
    protocol: str | None = None,
    username: str | None = None,
    ca_location: str | None = None,
    resource: str | None = None,
    operation: str | None = None,
) -> SecurityError | None:
    """The :class:`SecurityError` a librdkafka error ``code`` / ``text`` means, else None.

    ``resource`` and ``operation`` name what was refused (``"payments"``, ``"WRITE"``) for
    authorization codes; the rest goes into messages so each says what to fix. librdkafka's
    texts never carry passwords; the messages built here do not either.
    """
    who = f"user {username!r}" if username else "a client without a SASL user"
    lowered = text.lower()
    if _PLAINTEXT_HINT in text:
        return TlsError(
            f"{servers} expects TLS but this client connects in plaintext "
            f"(security protocol {protocol or 'PLAINTEXT'}); set PAYKAFKA_SECURITY_PROTOCOL="
            "SASL_SSL (or SSL) and PAYKAFKA_SSL_CA_LOCATION",
            code=code,
        )
    if _TLS_HINT in text:
        return _tls_error(code, text, servers=servers, ca_location=ca_location)
    if code in _AUTHZ_CODES:
        kind = _AUTHZ_CODES[code]
        name = resource or "?"
        op = operation or "?"
        where = "the cluster" if kind == "cluster" else f"{kind} {name!r}"
        return AuthorizationError(
            f"{who} may not {op} {where} on {servers} (no ACL allows it); ask for an ACL "
            f"granting {op} on {where} to User:{username or '?'}",
            resource_type=kind,
            resource=name if kind != "cluster" else "kafka-cluster",
            operation=op,
            code=code,
        )
    if any(hint in lowered for hint in _CONNECTION_HINTS):
        # A broker going away mid-login or mid-handshake: an outage, not a refusal.
        return None
    if code in ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "ILLEGAL_SASL_STATE"):
        return AuthenticationError(
            f"Kafka at {servers} refused the login of {who}: {_short(text)}; check "
            "PAYKAFKA_SASL_USERNAME, PAYKAFKA_SASL_PASSWORD and PAYKAFKA_SASL_MECHANISM",
            code=code,
        )
    if code == "_SSL" and any(hint in lowered for hint in _TLS_REFUSAL_HINTS):
        return _tls_error(code, text, servers=servers, ca_location=ca_location)
    return None


def _tls_error(code: str, text: str, *, servers: str, ca_location: str | None) -> TlsError:
    lowered = text.lower()
    ca = f"the CA file {ca_location}" if ca_location else "the system's CA certificates"
    if _TLS_HINT.lower() in lowered or "wrong version number" in lowered:
        why = (
            f"{servers} does not speak TLS on that port; use the TLS listener or set "
            "PAYKAFKA_SECURITY_PROTOCOL to match the listener"
        )
    elif "expired" in lowered:
        why = f"the certificate of {servers} has expired; the broker needs a new one"
    elif "not yet valid" in lowered:
        why = f"the certificate of {servers} is not valid yet (check the clocks)"
    elif "hostname mismatch" in lowered or "ip address mismatch" in lowered:
        why = (
            f"the certificate of {servers} does not name that host; connect with a host name "
            "the certificate lists"
        )
    elif "no such file" in lowered or ("ssl.ca.location" in lowered and "failed to" in lowered):
        why = f"cannot read {ca}; fix PAYKAFKA_SSL_CA_LOCATION"
    else:
        why = (
            f"the certificate of {servers} is not trusted by {ca}; point "
            "PAYKAFKA_SSL_CA_LOCATION at the CA that signed it"
        )
    return TlsError(
        f"TLS to {servers} failed: {why} ({_short(text)})", ca_location=ca_location, code=code
    )


def _short(text: str) -> str:
    """librdkafka's text without its ``host:port/id: `` prefix, cut to one readable line."""
    tail = text.split(": ", 1)[1] if text.count(": ") and "/" in text.split(": ", 1)[0] else text
    tail = " ".join(tail.split())
    return tail if len(tail) <= 240 else tail[:237] + "..."
