"""The producer's reporting logic, against a fake confluent client (no network)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from _events import make_events
from _fake_kafka import TIMED_OUT, TOO_LARGE, FakeProducer

import paykafka._producer
from paykafka import (
    ConfigError,
    DeliveryError,
    DeliveryFuture,
    PaymentProducer,
    RegistryClient,
    Settings,
)


class _Registry:
    """Knows one schema, under id 7."""

    def lookup(self, subject: str, text: str) -> SimpleNamespace:
        return SimpleNamespace(schema_id=7)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> list[FakeProducer]:
    """Every confluent producer the tests' PaymentProducers create, in order."""
    made: list[FakeProducer] = []

    def factory(conf: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer(conf))
        return made[-1]

    monkeypatch.setattr(paykafka._producer, "Producer", factory)
    return made


def started(**options: Any) -> PaymentProducer:
    settings = Settings(create_topic=False)
    registry = cast(RegistryClient, _Registry())
    return PaymentProducer(settings, registry=registry, **options).start()


@pytest.fixture
def producer(clients: list[FakeProducer]) -> Iterator[PaymentProducer]:
    made = started(flush_timeout=0.01)
    yield made
    made._producer = None  # never flush a fake on the way out


def client(clients: list[FakeProducer]) -> FakeProducer:
    return clients[-1]


# -- every failure reaches the caller -------------------------------------------------------


def test_a_callback_that_raises_does_not_hide_the_failure(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """The example's callback calls result(), which raises: close() must still raise it."""
    events = make_events(3)
    for event in events:
        producer.send(event, on_delivery=lambda f: f.result())
    client(clients).fail(TIMED_OUT)
    with pytest.raises(DeliveryError) as raised:
        producer.close()
    assert [e for e, _ in raised.value.undelivered] == events


def test_a_callback_that_handles_the_failure_counts_as_seeing_it(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """A callback that takes the error and returns has dealt with it: close() is quiet."""
    seen: list[DeliveryError | None] = []
    producer.send(make_events(1)[0], on_delivery=lambda f: seen.append(f.exception()))
    client(clients).fail(TIMED_OUT)
    producer.close()
    assert seen
    assert seen[0] is not None


def test_a_raising_callback_is_counted_and_logged_once(
    producer: PaymentProducer, clients: list[FakeProducer], caplog: pytest.LogCaptureFixture
) -> None:
    """A buggy callback on 50 delivered events: counted 50 times, one ERROR with traceback."""

    def buggy(_future: DeliveryFuture) -> None:
        raise KeyError("oops")

    for event in make_events(50):
        producer.send(event, on_delivery=buggy)
    with caplog.at_level(logging.INFO, logger="paykafka"):
        client(clients).ack()
        producer.flush()
    assert producer.callback_errors == 50
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


def test_a_timed_out_result_does_not_mark_the_future_seen(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """result(timeout) gave up while queued; the later failure is still raised by flush()."""
    future = producer.send(make_events(1)[0])
    with pytest.raises(DeliveryError) as waited:
        future.result(0.01)
    assert waited.value.retriable
    assert "still queued" in str(waited.value)
    client(clients).fail(TIMED_OUT)
    with pytest.raises(DeliveryError) as flushed:
        producer.flush(0)
    assert flushed.value.undelivered[0][0] == future.event


def test_a_failure_the_caller_received_is_not_raised_again(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """result() raised it: flush() does not repeat it."""
    future = producer.send(make_events(1)[0])
    client(clients).fail(TIMED_OUT)
    assert future.exception() is not None
    producer.flush(0)


def test_a_delivered_event_resolves_with_its_position(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """The happy path: result() gives topic, partition and offset; flush() is quiet."""
    futures = [producer.send(e) for e in make_events(2)]
    client(clients).ack()
    producer.flush()
    delivery = futures[1].result(0)
    assert (delivery.topic, delivery.partition, delivery.offset) == ("payments", 0, 1)


# -- after close() ---------------------------------------------------------------------------


def test_close_purges_what_is_queued_so_futures_fail_at_once(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """Still queued at close: each future fails at once, retriable, and close() lists it."""
    future = producer.send(make_events(1)[0])
    with pytest.raises(DeliveryError) as closed:
        producer.close(timeout=0)
    assert closed.value.retriable
    error = future.exception(0.5)
    assert error is not None
    assert error.code == "_PURGE_QUEUE"
    assert error.retriable
    assert "closed" in str(error)
    assert not client(clients).queued


def test_result_after_close_never_spins(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """No report will ever come after close(): result() fails at once, with or without timeout."""
    client(clients).purge_reports = False  # librdkafka gave no report for the purged event
    future = producer.send(make_events(1)[0])
    with pytest.raises(DeliveryError):
        producer.close(timeout=0)
    outcome: list[BaseException] = []

    def wait_forever() -> None:
        try:
            future.result()
        except DeliveryError as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_forever, daemon=True)
    waiter.start()
    waiter.join(5)
    assert not waiter.is_alive(), "result() without a timeout never returned after close()"
    assert isinstance(outcome[0], DeliveryError)
    assert outcome[0].code == "_DESTROY"
    assert outcome[0].retriable


# -- honest labels ---------------------------------------------------------------------------


def test_an_outage_is_retriable_per_event_and_combined(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """_MSG_TIMED_OUT (librdkafka: not retriable) is an outage: retriable, with its code."""
    futures = [producer.send(e) for e in make_events(2)]
    client(clients).fail(TIMED_OUT, 1)
    error = futures[0].exception(0)
    assert error is not None
    assert error.retriable
    assert error.code == "_MSG_TIMED_OUT"
    client(clients).fail(TIMED_OUT)
    with pytest.raises(DeliveryError) as flushed:
        producer.flush(0)
    assert flushed.value.retriable
    assert flushed.value.code == "_MSG_TIMED_OUT"


def test_bad_data_makes_the_combined_error_not_retriable(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """One event the broker refuses for good: the combined error is not retriable."""
    for event in make_events(3):
        producer.send(event)
    client(clients).fail(TIMED_OUT, 2)
    client(clients).fail(TOO_LARGE)
    with pytest.raises(DeliveryError) as flushed:
        producer.flush(0)
    assert not flushed.value.retriable
    assert flushed.value.code == "_MSG_TIMED_OUT"  # the most common reason
    assert "Message size too large" in str(flushed.value)


def test_events_still_queued_at_the_flush_deadline_are_retriable(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """flush() with events left: retriable, and they stay queued for a later flush."""
    producer.send(make_events(1)[0])
    with pytest.raises(DeliveryError) as flushed:
        producer.flush(0)
    assert flushed.value.retriable
    assert flushed.value.code == "_TIMED_OUT"
    assert len(client(clients).queued) == 1


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"acks": "1"},
        {"enable.idempotence": False},
        {"request.required.acks": "0"},
        {"topic.acks": "1"},
        {"default.topic.config": {"acks": "1"}},
        {"delivery.report.only.error": True},
    ],
)
def test_kafka_overrides_may_not_touch_protected_keys(
    clients: list[FakeProducer], overrides: dict[str, Any]
) -> None:
    """kafka_overrides= is held to the same rule as kafka_options, aliases included."""
    with pytest.raises(ConfigError, match="may not set"):
        PaymentProducer(Settings(), kafka_overrides=overrides)
    assert not clients


def test_overrides_reach_librdkafka(clients: list[FakeProducer]) -> None:
    """An unprotected override is passed through; the library's callbacks still win."""
    made = started(kafka_overrides={"linger.ms": 50, "error_cb": print})
    conf = client(clients).conf
    assert conf["linger.ms"] == 50
    assert conf["error_cb"] == made._on_error
    made._producer = None


def test_an_option_librdkafka_refuses_is_a_config_error() -> None:
    """A key librdkafka does not know: one-line ConfigError, not a cimpl.KafkaException."""
    producer = PaymentProducer(
        Settings(create_topic=False),
        registry=cast(RegistryClient, _Registry()),
        kafka_overrides={"no.such.option": "1"},
    )
    with pytest.raises(ConfigError, match=r"librdkafka refused.*no\.such\.option"):
        producer.start()


# -- no stall, no flood -----------------------------------------------------------------------


def test_send_serves_a_bounded_number_of_reports(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """10,000 reports arriving at once (an outage ending) are worked off over many sends."""
    fake = client(clients)
    for event in make_events(10_000):
        producer.send(event)
        fake.served_per_poll.clear()
    fake.fail(TIMED_OUT)
    for event in make_events(60):
        producer.send(event)
    assert max(fake.served_per_poll) <= paykafka._producer._REPORTS_PER_SEND
    assert sum(fake.served_per_poll) == 10_000  # every following send served its share
    with pytest.raises(DeliveryError) as flushed:
        producer.flush(0)
    assert len(flushed.value.undelivered) == 10_060


def test_failed_deliveries_are_summarised_not_logged_one_by_one(
    producer: PaymentProducer, clients: list[FakeProducer], caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 timed-out events: one WARNING line with the count and reason; detail at DEBUG."""
    for event in make_events(1_000):
        producer.send(event)
    with caplog.at_level(logging.DEBUG, logger="paykafka"):
        client(clients).fail(TIMED_OUT)
        with pytest.raises(DeliveryError):
            producer.flush(0)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "1000 of the payment events" in warnings[0].getMessage()
    assert "Message timed out" in warnings[0].getMessage()
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) >= 1_000


def test_a_repeated_broker_error_is_logged_once_per_flush(
    producer: PaymentProducer, caplog: pytest.LogCaptureFixture
) -> None:
    """librdkafka repeats '_TRANSPORT' every few seconds: one WARNING until the next flush."""
    with caplog.at_level(logging.WARNING, logger="paykafka"):
        for _ in range(20):
            producer._on_error(TIMED_OUT)
        producer.flush(0)
        producer._on_error(TIMED_OUT)
    assert len(caplog.records) == 2
