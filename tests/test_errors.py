"""The error hierarchy: builtin and confluent bases, retriable flags, messages."""

from confluent_kafka.serialization import SerializationError

import paykafka
from paykafka import DecodeError, DecodeReason


def test_validation_error_is_a_value_error() -> None:
    """Code catching ValueError also catches invalid events."""
    err = paykafka.ValidationError("amount", "must be positive")
    assert isinstance(err, ValueError)
    assert err.field == "amount"
    assert str(err) == "invalid amount: must be positive"


def test_serde_errors_are_confluent_serialization_errors() -> None:
    """Code written for the stock serializers catches our decode errors unchanged."""
    err = DecodeError(DecodeReason.CORRUPT_AVRO, "bad bytes", schema_id=3)
    assert isinstance(err, SerializationError)
    assert isinstance(err, paykafka.PayKafkaError)
    assert err.schema_id == 3
    assert not err.retriable


def test_outages_are_retriable_and_bad_data_is_not() -> None:
    """retriable separates a registry outage from a bad record."""
    assert paykafka.RegistryUnavailableError("down").retriable
    assert not paykafka.SchemaNotFoundError("gone").retriable
    assert DecodeError(DecodeReason.REGISTRY_UNAVAILABLE, "x", retriable=True).retriable


def test_registry_incompatible_is_both_branches() -> None:
    """A registry refusal is catchable as a registry error and as an incompatibility."""
    err = paykafka.RegistryIncompatibleError("no", ["field amount changed"], status=409)
    assert isinstance(err, paykafka.RegistryError)
    assert isinstance(err, paykafka.IncompatibleSchemaError)
    assert err.status == 409
    assert "field amount changed" in str(err)
