"""Settings: one frozen object for everything paykafka connects to.

Built from keyword arguments (``Settings(topic="orders")``) or from the environment
(``Settings.from_env()``), where each field has a ``PAYKAFKA_*`` variable named in its doc.
Arguments win over the environment, the environment over the defaults. The defaults work
against ``paykafka stack up`` and the project's ``docker-compose.yml`` with nothing set.

librdkafka's dotted keys appear only in :meth:`Settings.producer_config` and
:meth:`Settings.consumer_config`: nothing else in the library builds a Kafka config dict.
Secrets are kept out of ``repr`` and never logged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs

from paykafka._errors import ConfigError

__all__ = [
    "DEFAULT_BOOTSTRAP_SERVERS",
    "DEFAULT_REGISTRY_URL",
    "CompatibilityLevel",
    "Settings",
    "client_kafka_options",
]

DEFAULT_BOOTSTRAP_SERVERS = "localhost:9092"
DEFAULT_REGISTRY_URL = "http://localhost:8081/apis/ccompat/v7"

CompatibilityLevel = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]
_LEVELS: frozenset[str] = frozenset(CompatibilityLevel.__args__)  # type: ignore[attr-defined]

_ISOLATION_LEVELS = frozenset({"read_committed", "read_uncommitted"})

_ENV_PREFIX = "PAYKAFKA_"
_RDKAFKA_LOG = logging.getLogger("paykafka.librdkafka")
_T = TypeVar("_T")

# Keys the library owns: a passthrough option may not silently undo a delivery guarantee
# (delivery.report.only.error would leave every delivered event's future waiting forever).
_PROTECTED_PRODUCER_KEYS = frozenset(
    {"enable.idempotence", "acks", "on_delivery", "delivery.report.only.error"}
)
_PROTECTED_CONSUMER_KEYS = frozenset({"enable.auto.commit", "enable.auto.offset.store"})
# A processor reading uncommitted inputs would commit outputs of inputs that were aborted.
_PROTECTED_PROCESSOR_KEYS = _PROTECTED_CONSUMER_KEYS | {"isolation.level"}
_PROTECTED_TRANSACTIONAL_KEYS = _PROTECTED_PRODUCER_KEYS | {"transactional.id"}
# librdkafka's other names for protected keys; any key may also carry a "topic." prefix, or
# sit in a "default.topic.config" mapping.
_KEY_ALIASES = {"request.required.acks": "acks", "auto.commit.enable": "enable.auto.commit"}
_TOPIC_CONFIG = "default.topic.config"


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    # Written so NaN fails too: a NaN or infinite timeout would mean no timeout at all.
    if not 0 < value < math.inf:
        raise ConfigError(f"{attribute.name} must be > 0 and finite, got {value!r}")


def _nonempty(_inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.strip():
        raise ConfigError(f"{attribute.name} must not be empty")


def _level(_inst: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in _LEVELS:
        raise ConfigError(
            f"compatibility must be one of {', '.join(sorted(_LEVELS))}, got {value!r}"
        )


def _registry_url(_inst: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    # Checked first, and never echoed: a URL with user:password@ would show its secret in
    # repr, logs and every registry error message.
    if "@" in value.split("://", 1)[-1].split("/", 1)[0]:
        raise ConfigError(
            "registry_url must not carry credentials (user:password@host); set "
            "PAYKAFKA_REGISTRY_USERNAME and PAYKAFKA_REGISTRY_PASSWORD, or PAYKAFKA_REGISTRY_TOKEN"
        )
    if not value.startswith(("http://", "https://")):
        raise ConfigError(
            f"registry_url must start with http:// or https://, got {value!r} "
            "(set PAYKAFKA_REGISTRY_URL)"
        )


def _isolation(_inst: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in _ISOLATION_LEVELS:
        raise ConfigError(
            f"isolation_level must be read_committed or read_uncommitted, got {value!r} "
            "(set PAYKAFKA_ISOLATION_LEVEL)"
        )


def _strip_slash(value: str) -> str:
    return str(value).rstrip("/")


def _str_map(value: Mapping[str, Any] | None) -> Mapping[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def _optional_path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None or value == "" else Path(value)


def client_kafka_options(
    kafka_options: Mapping[str, Any] | None,
    kafka_overrides: Mapping[str, Any] | None,
    owner: str,
) -> dict[str, Any]:
    """A client's own librdkafka options, from ``kafka_options=`` (or the deprecated
    ``kafka_overrides=``, its old name: one concept, one name, the same as the setting's)."""
    if kafka_overrides is not None:
        warnings.warn(
            f"{owner}(kafka_overrides=...) is deprecated: pass kafka_options=... (the same "
            "name as the Settings field); kafka_overrides will be removed in a future release",
            DeprecationWarning,
            stacklevel=3,
        )
        if kafka_options is not None:
            raise ConfigError(f"{owner}: pass kafka_options only (kafka_overrides is its old name)")
    return dict(kafka_options if kafka_options is not None else kafka_overrides or {})


@attrs.frozen(kw_only=True)
class Settings:
    """Where paykafka connects and how.

    One obvious way for applications: ``Settings.from_env(**overrides)`` reads the
    ``PAYKAFKA_*`` environment, then applies your keyword arguments on top; it is also what a
    producer or tracker built without settings uses. ``Settings(...)`` takes only what you pass
    and ignores the environment: for tests, and for configuration read from somewhere else.

    Every field has a ``PAYKAFKA_<FIELD>`` environment variable (upper case), named in each
    field's description below. ``kafka_options`` passes any other librdkafka setting through
    unchanged (``PAYKAFKA_KAFKA_OPTIONS`` as a JSON object); a producer or tracker takes more
    under the same name, ``PaymentProducer(settings, kafka_options={...})``.
    """

    #: Kafka bootstrap servers, comma separated. ``PAYKAFKA_BOOTSTRAP_SERVERS``.
    bootstrap_servers: str = attrs.field(default=DEFAULT_BOOTSTRAP_SERVERS, validator=_nonempty)
    #: Base URL of the Confluent-compatible registry API. ``PAYKAFKA_REGISTRY_URL``.
    registry_url: str = attrs.field(
        default=DEFAULT_REGISTRY_URL,
        converter=_strip_slash,
        validator=_registry_url,
    )
    #: Registry basic-auth user. ``PAYKAFKA_REGISTRY_USERNAME``.
    registry_username: str | None = None
    #: Registry basic-auth password (never shown). ``PAYKAFKA_REGISTRY_PASSWORD``.
    registry_password: str | None = attrs.field(default=None, repr=False)
    #: CA bundle (PEM) the registry's HTTPS certificate must chain to; the system's CAs when
    #: unset. ``PAYKAFKA_REGISTRY_CA_LOCATION``.
    registry_ca_location: str | None = None
    #: Registry bearer token (never shown). ``PAYKAFKA_REGISTRY_TOKEN``.
    registry_token: str | None = attrs.field(default=None, repr=False)
    #: Seconds one registry HTTP call may take. ``PAYKAFKA_REGISTRY_TIMEOUT``.
    registry_timeout: float = attrs.field(default=10.0, converter=float, validator=_positive)
    #: Topic the payment events live on. ``PAYKAFKA_TOPIC``.
    topic: str = attrs.field(default="payments", validator=_nonempty)
    #: Create the topic when a producer starts and it is missing; ``False`` where topics are
    #: provisioned by someone else. ``PAYKAFKA_CREATE_TOPIC``.
    create_topic: bool = True
    #: Partitions of a topic paykafka creates: several trackers share the work while each
    #: user's payments stay in order (they are keyed by user). ``PAYKAFKA_TOPIC_PARTITIONS``.
    topic_partitions: int = attrs.field(default=3, converter=int, validator=_positive)
    #: Replication factor of a topic paykafka creates, capped at the brokers alive so the
    #: default also works on a one-broker stack. ``PAYKAFKA_TOPIC_REPLICATION_FACTOR``.
    topic_replication_factor: int = attrs.field(default=3, converter=int, validator=_positive)
    #: Consumer group of trackers. ``PAYKAFKA_GROUP_ID``.
    group_id: str = attrs.field(default="payment-tracker", validator=_nonempty)
    #: Seconds between a tracker's commits of the offsets it handled: a tracker that crashes
    #: leaves at most about this much of its work to be read again by the group.
    #: ``PAYKAFKA_COMMIT_INTERVAL``.
    commit_interval: float = attrs.field(default=1.0, converter=float, validator=_positive)
    #: Register the schema when the producer starts; ``False`` for governed deployments
    #: where only an already registered version may be used. ``PAYKAFKA_AUTO_REGISTER``.
    auto_register: bool = True
    #: Compatibility level set on the subject when paykafka first registers it.
    #: ``PAYKAFKA_COMPATIBILITY``.
    compatibility: str = attrs.field(default="FULL_TRANSITIVE", validator=_level)
    #: Avro schema file to produce with and read into; the packaged contract when unset.
    #: ``PAYKAFKA_SCHEMA_PATH``.
    schema_path: Path | None = attrs.field(default=None, converter=_optional_path)
    #: Directory where registry answers that never change (an id's schema, the id of our
    #: schema) are kept, so a restarted producer or tracker starts while the registry is
    #: down; off when unset. ``PAYKAFKA_SCHEMA_CACHE_DIR``.
    schema_cache_dir: Path | None = attrs.field(default=None, converter=_optional_path)
    #: Dead-letter topic for records a tracker cannot decode or handle. ``PAYKAFKA_DLQ_TOPIC``.
    dlq_topic: str = attrs.field(default="payments.dlq", validator=_nonempty)
    #: What trackers read: ``read_committed`` (the default) hides records of aborted Kafka
    #: transactions and holds back those of open ones until they commit; ``read_uncommitted``
    #: shows everything at once, aborted duplicates included. ``PAYKAFKA_ISOLATION_LEVEL``.
    isolation_level: str = attrs.field(default="read_committed", validator=_isolation)
    #: Most input events a :class:`~paykafka.PaymentProcessor` handles in one transaction.
    #: ``PAYKAFKA_TRANSACTION_BATCH_SIZE``.
    transaction_batch_size: int = attrs.field(default=1000, converter=int, validator=_positive)
    #: Milliseconds an input waits at most for its processor transaction to begin: after an
    #: idle spell counted from a batch's first input, while inputs keep coming from the end of
    #: the previous batch (like Kafka Streams' ``commit.interval.ms``). End-to-end latency is
    #: about this plus one commit; 50 measured the lowest p99 (100 and 30 higher).
    #: ``PAYKAFKA_TRANSACTION_BATCH_MS``.
    transaction_batch_ms: int = attrs.field(default=50, converter=int, validator=_positive)
    #: A processor's transactional id: unique per running instance and the same after its
    #: restart; ``<group_id>-<hostname>`` when unset. ``PAYKAFKA_TRANSACTIONAL_ID``.
    transactional_id: str | None = None
    #: Client id shown in broker logs and metrics. ``PAYKAFKA_CLIENT_ID``.
    client_id: str = "paykafka"
    #: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``. ``PAYKAFKA_SECURITY_PROTOCOL``.
    security_protocol: str | None = None
    #: ``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``... ``PAYKAFKA_SASL_MECHANISM``.
    sasl_mechanism: str | None = None
    #: SASL user. ``PAYKAFKA_SASL_USERNAME``.
    sasl_username: str | None = None
    #: SASL password (never shown). ``PAYKAFKA_SASL_PASSWORD``.
    sasl_password: str | None = attrs.field(default=None, repr=False)
    #: CA bundle for TLS to the brokers. ``PAYKAFKA_SSL_CA_LOCATION``.
    ssl_ca_location: str | None = None
    #: Any other librdkafka settings, passed through (values never shown, they may hold
    #: secrets). ``PAYKAFKA_KAFKA_OPTIONS`` (JSON object).
    kafka_options: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map, repr=False)
    #: Trace each send and each handler call with OpenTelemetry (needs ``paykafka[otel]``);
    #: trace context travels in a ``traceparent`` header. ``PAYKAFKA_TRACING``.
    tracing: bool = False
    #: Count events, time deliveries and handlers, export consumer lag in prometheus-client's
    #: default registry (needs ``paykafka[prometheus]``). ``PAYKAFKA_METRICS``.
    metrics: bool = False
    #: Serve the metrics on ``http://<metrics_host>:<port>/metrics`` (turns metrics on); off
    #: when unset. ``PAYKAFKA_METRICS_PORT``.
    metrics_port: int | None = attrs.field(default=None, converter=attrs.converters.optional(int))
    #: Address the metrics endpoint listens on; ``0.0.0.0`` to be scraped from other hosts.
    #: ``PAYKAFKA_METRICS_HOST``.
    metrics_host: str = "127.0.0.1"

    @property
    def subject(self) -> str:
        """The value subject, pinned to TopicNameStrategy: ``<topic>-value``."""
        return f"{self.topic}-value"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``PAYKAFKA_*`` variables, with keyword ``overrides`` taking precedence.

        Unknown ``PAYKAFKA_*`` variables are ignored (other tools share the prefix); values
        that cannot be parsed raise :class:`ConfigError` naming the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            var = _ENV_PREFIX + field.name.upper()
            if var not in env:
                continue
            raw = env[var]
            parse = _ENV_PARSERS.get(field.name, _as_str)
            try:
                values[field.name] = parse(raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{var}={_shown(field.name, raw)} is not valid: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None

    def _client_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            # librdkafka's own log lines go through logging, never straight to stderr.
            "logger": _RDKAFKA_LOG,
        }
        optional = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        return conf

    def producer_config(
        self, overrides: Mapping[str, Any] | None = None, /, **library: Any
    ) -> dict[str, Any]:
        """librdkafka producer config: safe defaults, then passthrough, then ``library`` keys.

        Defaults: ``acks=all`` and idempotence so a retry never duplicates or reorders one
        user's payments, and compression because payment records compress well.
        ``overrides`` (a client's ``kafka_overrides=``) go on top of ``kafka_options``, under
        the same rule: neither may set a key the guarantees rest on.
        """
        conf = self._client_config()
        conf.update(
            {
                "acks": "all",
                "enable.idempotence": True,
                "compression.type": "zstd",
                "linger.ms": 5,
            }
        )
        conf.update(self._passthrough(_PROTECTED_PRODUCER_KEYS, overrides))
        conf.update(library)
        return conf

    def consumer_config(
        self, overrides: Mapping[str, Any] | None = None, /, **library: Any
    ) -> dict[str, Any]:
        """librdkafka consumer config for at-least-once tracking.

        Offsets are *stored* by paykafka only after an event was handled; librdkafka commits
        what is stored in the background, on rebalance and on close. So a crash re-delivers
        unhandled events instead of skipping them.
        """
        conf = self._client_config()
        conf.update(
            {
                "group.id": self.group_id,
                "enable.auto.commit": True,
                "enable.auto.offset.store": False,
                # A new group starts at the oldest event: for payments, missing the events
                # written before the first tracker started is worse than reading them.
                "auto.offset.reset": "earliest",
                "isolation.level": self.isolation_level,
            }
        )
        conf.update(self._passthrough(_PROTECTED_CONSUMER_KEYS, overrides))
        conf.update(library)
        return conf

    def transactional_producer_config(
        self,
        transactional_id: str,
        overrides: Mapping[str, Any] | None = None,
        /,
        **library: Any,
    ) -> dict[str, Any]:
        """librdkafka producer config of a processor: the safe defaults plus a transactional id
        (a commit flushes the transaction's records at once, so linger adds no latency there)."""
        # Refuses a passthrough transactional.id (kafka_options or the client's overrides).
        self._passthrough(_PROTECTED_TRANSACTIONAL_KEYS, overrides)
        conf = self.producer_config(overrides)
        conf["transactional.id"] = transactional_id
        conf.update(library)
        return conf

    def processor_consumer_config(
        self, overrides: Mapping[str, Any] | None = None, /, **library: Any
    ) -> dict[str, Any]:
        """librdkafka consumer config of a processor: offsets are committed only by its
        transactions, and only committed inputs are read, whatever ``isolation_level`` says."""
        conf = self._client_config()
        conf.update(
            {
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        conf.update(self._passthrough(_PROTECTED_PROCESSOR_KEYS, overrides))
        conf.update(library)
        return conf

    def admin_config(self, **library: Any) -> dict[str, Any]:
        """librdkafka admin-client config (connection and security only)."""
        conf = self._client_config()
        conf.update(self._passthrough(frozenset()))
        conf.update(library)
        return conf

    def _passthrough(
        self, protected: frozenset[str], overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        _refuse_protected(self.kafka_options, protected, "kafka_options (PAYKAFKA_KAFKA_OPTIONS)")
        _refuse_protected(overrides or {}, protected, "the client's own kafka_options=")
        return {**self.kafka_options, **(overrides or {})}


def _refuse_protected(options: Mapping[str, Any], protected: frozenset[str], source: str) -> None:
    """The one rule for passthrough librdkafka keys: none may name a protected key.

    Keys are compared by what librdkafka makes of them (alias, ``topic.`` prefix, nested
    ``default.topic.config``), so ``request.required.acks=1`` cannot stand in for ``acks=1``.
    """
    keys = list(options)
    nested = options.get(_TOPIC_CONFIG)
    if isinstance(nested, Mapping):
        keys += list(nested)
    clash = sorted({str(k) for k in keys if _canonical_key(str(k)) in protected})
    if clash:
        raise ConfigError(
            f"{source} may not set {', '.join(clash)}: paykafka owns these to keep its "
            "delivery guarantees; remove them"
        )


def _canonical_key(key: str) -> str:
    key = key.strip().removeprefix("topic.")
    return _KEY_ALIASES.get(key, key)


_SECRET_FIELDS = frozenset(f.name for f in attrs.fields(Settings) if not f.repr)


def _shown(name: str, raw: str) -> str:
    return "<hidden>" if name in _SECRET_FIELDS else repr(raw)


def _as_str(raw: str) -> str:
    return raw


def _as_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false, 1/0, yes/no or on/off")


def _as_json_object(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise TypeError('expected a JSON object such as {"ssl.key.location": "/path"}')
    return value


def _as_level(raw: str) -> str:
    return raw.strip().upper()


def _as_isolation(raw: str) -> str:
    return raw.strip().lower()


_ENV_PARSERS: dict[str, Callable[[str], Any]] = {
    "auto_register": _as_bool,
    "registry_timeout": float,
    "commit_interval": float,
    "kafka_options": _as_json_object,
    "compatibility": _as_level,
    "create_topic": _as_bool,
    "topic_partitions": int,
    "topic_replication_factor": int,
    "tracing": _as_bool,
    "metrics": _as_bool,
    "metrics_port": int,
    "isolation_level": _as_isolation,
    "transaction_batch_size": int,
    "transaction_batch_ms": int,
}
