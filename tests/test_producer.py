"""The producer's reporting logic, against a fake confluent client (no network)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from _events import make_events
from _fake_kafka import TIMED_OUT, TOO_LARGE, FakeKafkaError, FakeProducer
from confluent_kafka import KafkaException

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
        return SimpleNamespace(schema_id=7, version=1)


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
    assert "was never acknowledged: the producer was closed first" in str(outcome[0])
    assert outcome[0].undelivered == (
        (future.event, "the producer was closed before the broker answered"),
    )


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
def test_a_clients_kafka_options_may_not_touch_protected_keys(
    clients: list[FakeProducer], overrides: dict[str, Any]
) -> None:
    """A client's own kafka_options= obey the same rule as Settings.kafka_options, aliases too."""
    with pytest.raises(ConfigError, match="may not set"):
        PaymentProducer(Settings(), kafka_options=overrides)
    assert not clients


def test_overrides_reach_librdkafka(clients: list[FakeProducer]) -> None:
    """An unprotected override is passed through; the library's callbacks still win."""
    made = started(kafka_options={"linger.ms": 50, "error_cb": print})
    conf = client(clients).conf
    assert conf["linger.ms"] == 50
    assert conf["error_cb"] == made._on_error
    made._producer = None


def test_an_option_librdkafka_refuses_is_a_config_error() -> None:
    """A key librdkafka does not know: one-line ConfigError, not a cimpl.KafkaException."""
    producer = PaymentProducer(
        Settings(create_topic=False),
        registry=cast(RegistryClient, _Registry()),
        kafka_options={"no.such.option": "1"},
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
    producer._next_poll = 0.0  # the next send polls, however soon it comes
    for event in make_events(60):
        producer.send(event)
    assert max(fake.served_per_poll) == paykafka._producer._REPORTS_PER_SEND
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


# -- the details callers rely on (found by mutation testing) -----------------------------------


def test_a_result_that_times_out_says_still_queued(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """result(t) / exception(t) on a queued event: a retriable _TIMED_OUT naming the event."""
    future = producer.send(make_events(1)[0])
    error = future.exception(0)
    assert error is not None
    assert error.code == "_TIMED_OUT"
    assert error.undelivered == ((future.event, "still queued"),)


def test_result_waits_in_short_polls_until_its_deadline(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """result(0.3) keeps polling (each poll at most 0.1 s, never negative) until the deadline."""
    future = producer.send(make_events(1)[0])
    fake = client(clients)
    fake.poll_timeouts.clear()
    with pytest.raises(DeliveryError):
        future.result(0.3)
    assert len(fake.poll_timeouts) > 1
    assert all(0 <= t <= 0.1 for t in fake.poll_timeouts)


def test_a_delivery_names_its_event(producer: PaymentProducer, clients: list[FakeProducer]) -> None:
    """The Delivery carries the event sent, and produce() got the topic, key and framed value."""
    event = make_events(1)[0]
    future = producer.send(event)
    client(clients).ack()
    assert future.result(0).event == event
    topic, value, key = client(clients).produced[0]
    assert (topic, key) == ("payments", event.user.encode())
    assert value[:5] == b"\x00\x00\x00\x00\x07"  # magic byte, schema id 7


def test_callbacks_run_in_order_and_at_once_when_already_done(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """Two callbacks both run on the report; one added after it runs at once."""
    calls: list[str] = []
    future = producer.send(make_events(1)[0], on_delivery=lambda f: calls.append("first"))
    future.add_done_callback(lambda f: calls.append("second"))
    client(clients).ack()
    producer.flush()
    future.add_done_callback(lambda f: calls.append("late"))
    assert calls == ["first", "second", "late"]


def test_send_refuses_what_is_not_an_event(producer: PaymentProducer) -> None:
    """A dict is not a PaymentEvent: TypeError naming what was given."""
    with pytest.raises(TypeError, match="got dict"):
        producer.send({"user": "marek"})  # type: ignore[arg-type]


def test_a_full_queue_waits_then_reports_the_event_retriable(
    clients: list[FakeProducer],
) -> None:
    """No room for queue_timeout: send() polls meanwhile, then a retriable _QUEUE_FULL."""
    made = started(queue_timeout=0.2)
    fake = client(clients)
    fake.capacity = 1
    made._on_error(TIMED_OUT)
    made.send(make_events(1)[0])
    event = make_events(1)[0]
    fake.poll_timeouts.clear()
    with pytest.raises(DeliveryError) as full:
        made.send(event)
    assert full.value.code == "_QUEUE_FULL"
    assert full.value.retriable
    assert full.value.undelivered[0][0] == event
    assert "Message timed out" in full.value.undelivered[0][1]
    assert len(fake.poll_timeouts) > 1
    assert set(fake.poll_timeouts) == {0.05}
    made._producer = None


def test_flush_and_close_wait_as_long_as_told(clients: list[FakeProducer]) -> None:
    """flush(t) and close(t) wait t in all, in short slices; close() alone uses flush_timeout."""
    made = started(flush_timeout=0.4)
    fake = client(clients)
    made.send(make_events(1)[0])  # never answered: every flush waits its whole timeout
    with pytest.raises(DeliveryError):
        made.flush(0.6)
    assert 0.55 <= sum(fake.flush_timeouts) <= 0.7
    assert max(fake.flush_timeouts) <= 0.25
    fake.flush_timeouts.clear()
    with pytest.raises(DeliveryError):
        made.close()
    assert 0.35 <= sum(fake.flush_timeouts) <= 0.5
    again = started()
    client(clients).ack()  # nothing queued: close(t) returns at once
    again.close(timeout=1.5)
    assert client(clients).flush_timeouts == [0.25]


def test_an_event_purged_in_flight_may_have_been_written(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """Purged while the broker had it: the reason says it is unknown whether it was written."""
    client(clients).purge_code = "_PURGE_INFLIGHT"
    future = producer.send(make_events(1)[0])
    with pytest.raises(DeliveryError):
        producer.close(timeout=0)
    error = future.exception(0)
    assert error is not None
    assert "unknown whether written" in str(error)
    assert "no broker error seen" in str(error)


def test_librdkafkas_own_retriable_flag_counts_too(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """A code outside the outage list that librdkafka itself calls retriable stays retriable."""
    future = producer.send(make_events(1)[0])
    client(clients).fail(FakeKafkaError("SOME_NEW_CODE", "Broker: busy", retriable=True))
    error = future.exception(0)
    assert error is not None
    assert error.retriable


def test_the_combined_message_shows_the_top_reasons_and_how_many_more(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """Five distinct reasons: the three most common with code and count, then 'and 2 other'."""
    for event in make_events(9):
        producer.send(event)
    fake = client(clients)
    fake.fail(TIMED_OUT, 3)
    fake.fail(TOO_LARGE, 2)
    for code in ("A", "B", "C"):
        fake.fail(FakeKafkaError(code, f"reason {code}"), 1 if code != "A" else 2)
    with pytest.raises(DeliveryError) as flushed:
        producer.flush(0)
    message = str(flushed.value)
    assert message.startswith("9 payment event(s) not delivered to payments: ")
    assert "Local: Message timed out (_MSG_TIMED_OUT) x3" in message
    assert "Broker: Message size too large (MSG_SIZE_TOO_LARGE) x2" in message
    assert "reason A (A) x2" in message
    assert message.endswith("; and 2 other reason(s)")


def test_the_first_raising_callback_is_the_one_logged_with_its_traceback(
    producer: PaymentProducer, clients: list[FakeProducer], caplog: pytest.LogCaptureFixture
) -> None:
    """The ERROR line names the first payment whose callback raised."""
    events = make_events(3)

    def buggy(_future: DeliveryFuture) -> None:
        raise KeyError("oops")

    for event in events:
        producer.send(event, on_delivery=buggy)
    with caplog.at_level(logging.ERROR, logger="paykafka"):
        client(clients).ack()
        producer.flush()
    assert [r.getMessage() for r in caplog.records] == [
        f"delivery callback for payment {events[0].payment_id} raised"
    ]


def test_a_fatal_broker_error_is_an_error_line(
    producer: PaymentProducer, caplog: pytest.LogCaptureFixture
) -> None:
    """librdkafka's fatal errors are logged at ERROR with their text, every time."""

    class FatalError(FakeKafkaError):
        def fatal(self) -> bool:
            return True

    with caplog.at_level(logging.WARNING, logger="paykafka"):
        producer._on_error(FatalError("_FATAL", "Local: Fatal error"))
        producer._on_error(FatalError("_FATAL", "Local: Fatal error"))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "fatal producer error: Local: Fatal error")
    ] * 2


def test_each_failure_is_at_debug_with_its_payment_id(
    producer: PaymentProducer, clients: list[FakeProducer], caplog: pytest.LogCaptureFixture
) -> None:
    """Per-event detail stays available at DEBUG, structured with the payment id."""
    event = make_events(1)[0]
    producer.send(event)
    with caplog.at_level(logging.DEBUG, logger="paykafka"):
        client(clients).fail(TIMED_OUT)
        producer._poll(0)
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug[0].getMessage() == (
        f"payment {event.payment_id} not delivered: Local: Message timed out"
    )
    assert debug[0].payment_id == str(event.payment_id)  # type: ignore[attr-defined]


def test_a_produce_librdkafka_refuses_is_a_delivery_error(
    producer: PaymentProducer, clients: list[FakeProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """produce() raising KafkaException (a fatal producer): DeliveryError with its code and flag."""
    fatal = FakeKafkaError("_FATAL", "Local: Fatal error", retriable=False)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise KafkaException(fatal)

    monkeypatch.setattr(client(clients), "produce", refuse)
    event = make_events(1)[0]
    with pytest.raises(DeliveryError) as refused:
        producer.send(event)
    assert refused.value.code == "_FATAL"
    assert not refused.value.retriable
    assert refused.value.undelivered == ((event, "Local: Fatal error"),)
    assert str(refused.value) == f"cannot queue payment {event.payment_id}: Local: Fatal error"


def test_close_closes_the_registry_client_it_made(
    clients: list[FakeProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A producer that made its own registry client closes it; a given one is left open."""
    closed: list[object] = []

    class _Owned(_Registry):
        def __init__(self, _settings: Settings) -> None:
            pass

        def close(self) -> None:
            closed.append(self)

    monkeypatch.setattr(paykafka._producer, "RegistryClient", _Owned)
    PaymentProducer(Settings(create_topic=False)).start().close()
    assert len(closed) == 1
    given = _Owned(Settings())
    PaymentProducer(
        Settings(create_topic=False), registry=cast(RegistryClient, given)
    ).start().close()
    assert closed == [closed[0]]


def test_three_reasons_are_all_shown_with_nothing_more(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """Exactly three distinct reasons: all three, no 'other reason(s)' tail."""
    for event in make_events(3):
        producer.send(event)
    for code in ("A", "B", "C"):
        client(clients).fail(FakeKafkaError(code, f"reason {code}"), 1)
    with pytest.raises(DeliveryError) as flushed:
        producer.flush(0)
    assert str(flushed.value).endswith("reason A (A) x1; reason B (B) x1; reason C (C) x1")


def test_a_wait_inside_sends_poll_is_not_cut_short_by_its_budget(
    producer: PaymentProducer, clients: list[FakeProducer]
) -> None:
    """A callback waiting on another future during send()'s poll serves all it needs."""
    fake = client(clients)
    waited: list[BaseException | None] = []
    futures = [producer.send(e) for e in make_events(600)]
    last = futures[-1]
    futures[0].add_done_callback(lambda _f: waited.append(last.exception(1)))
    fake.ack()
    producer._next_poll = 0.0  # this send polls, however soon after the last one it comes
    producer.send(make_events(1)[0])  # its poll runs the callback, which waits on `last`
    assert waited == [None]
    assert producer.callback_errors == 0


# -- telemetry ------------------------------------------------------------------------------


def test_telemetry_headers_and_outcomes(clients: list[FakeProducer]) -> None:
    """With telemetry on, each record carries traceparent, and every outcome is counted once."""
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from paykafka import Telemetry  # noqa: PLC0415

    registry = CollectorRegistry()
    telemetry = Telemetry(tracer_provider=TracerProvider(), registry=registry)
    made = started(flush_timeout=0.01, telemetry=telemetry)
    fake = client(clients)
    for event in make_events(5):
        made.send(event)
    fake.ack(3)
    fake.fail(TIMED_OUT)
    fake.poll(0)
    topic = made.settings.topic
    assert all(h is not None and h[0][0] == "traceparent" for h in fake.headers)
    assert registry.get_sample_value("paykafka_events_sent_total", {"topic": topic}) == 5
    assert registry.get_sample_value("paykafka_events_delivered_total", {"topic": topic}) == 3
    # The latency observed is the one on the delivery report (librdkafka's), 1 ms each here.
    latency = registry.get_sample_value("paykafka_delivery_latency_seconds_sum", {"topic": topic})
    assert latency == pytest.approx(0.003)
    failed = {"topic": topic, "error": "_MSG_TIMED_OUT"}
    assert registry.get_sample_value("paykafka_events_failed_total", failed) == 2
    made._producer = None


def test_no_telemetry_no_headers(producer: PaymentProducer, clients: list[FakeProducer]) -> None:
    """Off by default: records carry no headers the application did not ask for."""
    producer.send(make_events(1)[0])
    assert client(clients).headers == [None]
