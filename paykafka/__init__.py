"""paykafka: typed, schema-governed Kafka for payment events.

``import paykafka`` gives everything a service needs; the modules behind it are private.
"""

from paykafka._admin import (
    GroupLag,
    KafkaAdmin,
    PartitionInfo,
    PartitionLag,
    TopicConfig,
    TopicDescription,
    TopicHealth,
    TopicInfo,
)
from paykafka._currencies import currencies, minor_units
from paykafka._dlq import DeadLetter, DeadLetterQueue, ReplayResult
from paykafka._errors import (
    AuthenticationError,
    AuthorizationError,
    BrokerUnavailableError,
    ConfigError,
    DecodeError,
    DecodeReason,
    DeliveryError,
    EncodeError,
    FencedError,
    IncompatibleSchemaError,
    KafkaError,
    PayKafkaError,
    RegistryAuthenticationError,
    RegistryAuthorizationError,
    RegistryError,
    RegistryIncompatibleError,
    RegistryUnavailableError,
    SchemaError,
    SchemaNotFoundError,
    SecurityError,
    SerdeError,
    StackError,
    SubjectNotFoundError,
    TlsError,
    TransactionError,
    ValidationError,
)
from paykafka._event import PaymentEvent, PaymentMethod, optional_fields
from paykafka._observability import Telemetry
from paykafka._processor import Output, PaymentProcessor
from paykafka._producer import Delivery, DeliveryFuture, PaymentProducer, key_by_user
from paykafka._registry import CompatibilityResult, RegisteredSchema, RegistryClient
from paykafka._schema import PaymentSchema, load_schema
from paykafka._settings import DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_REGISTRY_URL, Settings
from paykafka._tracking import PaymentTracker, TrackedEvent
from paykafka._version import __version__

__all__ = [
    "DEFAULT_BOOTSTRAP_SERVERS",
    "DEFAULT_REGISTRY_URL",
    "AuthenticationError",
    "AuthorizationError",
    "BrokerUnavailableError",
    "CompatibilityResult",
    "ConfigError",
    "DeadLetter",
    "DeadLetterQueue",
    "DecodeError",
    "DecodeReason",
    "Delivery",
    "DeliveryError",
    "DeliveryFuture",
    "EncodeError",
    "FencedError",
    "GroupLag",
    "IncompatibleSchemaError",
    "KafkaAdmin",
    "KafkaError",
    "Output",
    "PartitionInfo",
    "PartitionLag",
    "PayKafkaError",
    "PaymentEvent",
    "PaymentMethod",
    "PaymentProcessor",
    "PaymentProducer",
    "PaymentSchema",
    "PaymentTracker",
    "RegisteredSchema",
    "RegistryAuthenticationError",
    "RegistryAuthorizationError",
    "RegistryClient",
    "RegistryError",
    "RegistryIncompatibleError",
    "RegistryUnavailableError",
    "ReplayResult",
    "SchemaError",
    "SchemaNotFoundError",
    "SecurityError",
    "SerdeError",
    "Settings",
    "StackError",
    "SubjectNotFoundError",
    "Telemetry",
    "TlsError",
    "TopicConfig",
    "TopicDescription",
    "TopicHealth",
    "TopicInfo",
    "TrackedEvent",
    "TransactionError",
    "ValidationError",
    "__version__",
    "currencies",
    "key_by_user",
    "load_schema",
    "minor_units",
    "optional_fields",
]
