"""PaymentProcessor's pure parts: outputs, error classes, batch offsets, its Kafka configs."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import KafkaException

from paykafka import ConfigError, Output, PaymentEvent, Settings
from paykafka._processor import (
    TxnAction,
    _Batch,
    _call_within,
    _WedgedCallError,
    classify_txn_error,
)


def _event() -> PaymentEvent:
    return PaymentEvent(user="ola", amount=Decimal("12.50"), currency="PLN", method="blik")


class _Err:
    """A librdkafka error as far as classify_txn_error looks at one."""

    def __init__(self, *, fatal: bool = False, abort: bool = False, retry: bool = False) -> None:
        self._fatal, self._abort, self._retry = fatal, abort, retry

    def fatal(self) -> bool:
        return self._fatal

    def txn_requires_abort(self) -> bool:
        return self._abort

    def retriable(self) -> bool:
        return self._retry


class _Msg:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


def test_output_needs_a_topic_and_an_event() -> None:
    """An Output refuses an empty topic and anything but a PaymentEvent."""
    assert Output("payments.review", _event()).topic == "payments.review"
    with pytest.raises(ConfigError):
        Output(" ", _event())
    with pytest.raises(TypeError):
        Output("payments.review", {"user": "ola"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("err", "action"),
    [
        (_Err(fatal=True, abort=True, retry=True), TxnAction.FATAL),
        (_Err(abort=True, retry=True), TxnAction.ABORT),
        (_Err(retry=True), TxnAction.RETRY),
        (_Err(), TxnAction.ABORT),
    ],
)
def test_transactional_errors_are_fatal_then_abortable_then_retriable(
    err: Any, action: str
) -> None:
    """Fatal wins over abortable, abortable over retriable; an unclassified error aborts."""
    assert classify_txn_error(err) == action


def test_batch_commits_one_past_the_last_record_and_rewinds_to_the_first() -> None:
    """Offsets sent to the transaction are last+1 per partition; a rewind goes to the first."""
    batch = _Batch([_Msg("in", 0, 5), _Msg("in", 1, 9), _Msg("in", 0, 6), _Msg("in", 0, 7)])
    assert [(tp.topic, tp.partition, tp.offset) for tp in batch.next_offsets()] == [
        ("in", 0, 8),
        ("in", 1, 10),
    ]
    assert batch.first_offsets() == {("in", 0): 5, ("in", 1): 9}
    batch.drop("in", 0)
    assert batch.first_offsets() == {("in", 1): 9}


def test_processor_configs_read_committed_and_carry_the_transactional_id() -> None:
    """A processor reads committed inputs only, commits no offsets itself, is transactional."""
    settings = Settings(isolation_level="read_uncommitted")
    consumer = settings.processor_consumer_config()
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False
    producer = settings.transactional_producer_config("router-1")
    assert producer["transactional.id"] == "router-1"
    assert producer["enable.idempotence"] is True
    assert settings.consumer_config()["isolation.level"] == "read_uncommitted"


def test_passthrough_may_not_weaken_the_processor() -> None:
    """Neither kafka_options nor a client's overrides may set a processor's isolation level or
    transactional id."""
    with pytest.raises(ConfigError, match=r"isolation\.level"):
        Settings(kafka_options={"isolation.level": "read_uncommitted"}).processor_consumer_config()
    with pytest.raises(ConfigError, match=r"transactional\.id"):
        Settings(kafka_options={"transactional.id": "x"}).transactional_producer_config("y")
    with pytest.raises(ConfigError, match=r"isolation\.level"):
        Settings().processor_consumer_config({"isolation.level": "read_uncommitted"})
    with pytest.raises(ConfigError, match=r"transactional\.id"):
        Settings().transactional_producer_config("y", {"transactional.id": "x"})


def test_trackers_read_committed_by_default_and_the_variable_switches_it() -> None:
    """isolation_level defaults to read_committed; PAYKAFKA_ISOLATION_LEVEL sets it; typos fail."""
    assert Settings().consumer_config()["isolation.level"] == "read_committed"
    env = {"PAYKAFKA_ISOLATION_LEVEL": " Read_Uncommitted "}
    assert Settings.from_env(env).isolation_level == "read_uncommitted"
    with pytest.raises(ConfigError, match="PAYKAFKA_ISOLATION_LEVEL"):
        Settings(isolation_level="committed")
    batch_env = {"PAYKAFKA_TRANSACTION_BATCH_SIZE": "50", "PAYKAFKA_TRANSACTION_BATCH_MS": "20"}
    tuned = Settings.from_env(batch_env)
    assert (tuned.transaction_batch_size, tuned.transaction_batch_ms) == (50, 20)
    with pytest.raises(ConfigError):
        Settings(transaction_batch_size=0)


def test_a_call_that_never_returns_is_given_up_after_its_deadline() -> None:
    """librdkafka#5511: send_offsets_to_transaction can block forever; the processor must not."""
    release = threading.Event()
    began = time.monotonic()
    with pytest.raises(_WedgedCallError, match=r"send-offsets did not return within 0\.2 s"):
        _call_within(release.wait, 0.2, "send-offsets")
    assert 0.2 <= time.monotonic() - began < 5
    release.set()  # the abandoned thread ends once the call returns


def test_a_bounded_call_returns_or_raises_in_the_callers_thread() -> None:
    ran_in: list[str] = []
    _call_within(lambda: ran_in.append(threading.current_thread().name), 5, "send-offsets")
    assert ran_in == ["paykafka-send-offsets"]

    def fail() -> None:
        raise KafkaException("coordinator not available")

    with pytest.raises(KafkaException, match="coordinator not available"):
        _call_within(fail, 5, "send-offsets")
