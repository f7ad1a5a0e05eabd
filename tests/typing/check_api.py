"""Type-checked by mypy --strict, never run: the public API's types are what users get.

If a signature change would break typed user code, this file stops type-checking.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, assert_type

import paykafka
import paykafka.aio
from paykafka.testing import RecordWaiter, TestStack


def check_event() -> None:
    event = paykafka.PaymentEvent(
        user="marek", amount=Decimal("249.99"), currency="PLN", method="credit_card"
    )
    assert_type(event.payment_id, uuid.UUID)
    assert_type(event.amount, Decimal)
    assert_type(event.method, paykafka.PaymentMethod)
    assert_type(event.timestamp, datetime)
    assert_type(event.to_json(), str)
    assert_type(paykafka.minor_units(event.currency), int)
    assert_type(paykafka.currencies(), frozenset[str])
    assert_type(paykafka.PaymentEvent.from_dict(event.to_dict()), paykafka.PaymentEvent)
    assert_type(paykafka.optional_fields(["note=rent"]), dict[str, Any])
    assert_type(event.note, str | None)


def check_producer(settings: paykafka.Settings) -> None:
    with paykafka.PaymentProducer(settings) as producer:
        assert_type(producer, paykafka.PaymentProducer)
        event = paykafka.PaymentEvent(user="a", amount="1.00", currency="EUR", method="blik")
        future = producer.send(event)
        assert_type(future, paykafka.DeliveryFuture)
        delivery = future.result(timeout=5)
        assert_type(delivery, paykafka.Delivery)
        assert_type(delivery.offset, int)
        assert_type(producer.schema_id, int)


def check_tracker(settings: paykafka.Settings) -> None:
    with paykafka.PaymentTracker(settings, from_beginning=True) as tracker:
        for event in tracker:
            assert_type(event, paykafka.PaymentEvent)
        for record in tracker.records(max_records=1):
            assert_type(record, paykafka.TrackedEvent)
            assert_type(record.partition, int)
        assert_type(tracker.run(print, max_events=1), int)
    with paykafka.PaymentTracker(settings, concurrency=8, max_buffered=1000) as tracker:
        assert_type(tracker.handled, int)


def check_processor(settings: paykafka.Settings) -> None:
    def route(event: paykafka.PaymentEvent) -> list[paykafka.Output]:
        return [paykafka.Output("payments.review", event)]

    def one(event: paykafka.PaymentEvent) -> paykafka.Output | None:
        return None

    with paykafka.PaymentProcessor(settings, output_topics=["payments.review"]) as processor:
        assert_type(processor, paykafka.PaymentProcessor)
        assert_type(processor.run(route, max_events=1), int)
        assert_type(processor.run(one, idle_timeout=1.0), int)
        assert_type(processor.transactions, tuple[int, int])
    try:
        processor.run(route)
    except paykafka.FencedError as exc:
        assert_type(exc.code, str | None)


def check_errors() -> None:
    try:
        paykafka.Settings.from_env()
    except paykafka.DeliveryError as exc:
        assert_type(exc.undelivered, tuple[tuple[paykafka.PaymentEvent, str], ...])
    except paykafka.RegistryError as exc:
        assert_type(exc.status, int | None)
    except paykafka.PayKafkaError as exc:
        assert_type(exc.retriable, bool)


async def check_async_producer(settings: paykafka.Settings) -> None:
    async with paykafka.aio.AsyncPaymentProducer(settings) as producer:
        assert_type(producer, paykafka.aio.AsyncPaymentProducer)
        event = paykafka.PaymentEvent(user="a", amount="1.00", currency="EUR", method="blik")
        assert_type(await producer.send(event), paykafka.Delivery)
        future = await producer.enqueue(event)
        assert_type(future, paykafka.aio.DeliveryTask)
        assert_type(await future, paykafka.Delivery)
        await producer.flush(timeout=5)


async def check_async_processor(settings: paykafka.Settings) -> None:
    async def route(event: paykafka.PaymentEvent) -> list[paykafka.Output]:
        return [paykafka.Output("payments.review", event)]

    async def one(event: paykafka.PaymentEvent) -> paykafka.Output | None:
        return None

    async with paykafka.aio.AsyncPaymentProcessor(
        settings, output_topics=["payments.review"], kafka_options={"linger.ms": "1"}
    ) as processor:
        assert_type(processor, paykafka.aio.AsyncPaymentProcessor)
        assert_type(await processor.run(route, max_events=1), int)
        assert_type(await processor.run(one, idle_timeout=1.0), int)
        assert_type(processor.transactions, tuple[int, int])
        processor.stop()


async def check_async_tracker(settings: paykafka.Settings) -> None:
    async def handler(event: paykafka.PaymentEvent) -> None:
        assert_type(event, paykafka.PaymentEvent)

    async with paykafka.aio.AsyncPaymentTracker(settings, concurrency=8) as tracker:
        assert_type(tracker, paykafka.aio.AsyncPaymentTracker)
        async for event in tracker:
            assert_type(event, paykafka.PaymentEvent)
        async for record in tracker.records(max_records=1):
            assert_type(record, paykafka.TrackedEvent)
        assert_type(await tracker.run(handler, max_events=1), int)


def check_testing_plugin(settings: paykafka.Settings) -> None:
    waiter = RecordWaiter(settings)
    assert_type(waiter.wait(1, timeout=5.0), list[paykafka.TrackedEvent])
    assert_type(waiter.events(1), list[paykafka.PaymentEvent])
    stack = TestStack(settings=settings, managed=False)
    assert_type(stack.settings, paykafka.Settings)


def check_inbox_and_outbox(settings: paykafka.Settings) -> None:
    def book(event: paykafka.PaymentEvent, tx: object) -> None:
        assert_type(event, paykafka.PaymentEvent)

    with paykafka.SqliteInbox("ledger.db") as inbox:
        assert_type(inbox, paykafka.SqliteInbox)
        with paykafka.PaymentTracker(settings, inbox=inbox, concurrency=4) as tracker:
            assert_type(tracker.run(book, stop_at_end=True), int)
            assert_type(tracker.duplicates, int)
        assert_type(inbox.prune(), int)
    outbox = paykafka.Outbox("shop.db")
    assert_type(outbox.status(), paykafka.OutboxStatus)
    with paykafka.OutboxRelay(outbox, settings, batch_size=100) as relay:
        assert_type(relay.run(stop_when_empty=True), int)


async def check_async_inbox(settings: paykafka.Settings) -> None:
    async def book(event: paykafka.PaymentEvent, tx: object) -> None:
        assert_type(event, paykafka.PaymentEvent)

    inbox = paykafka.aio.AsyncPostgresInbox("postgresql://localhost/db")
    async with paykafka.aio.AsyncPaymentTracker(settings, inbox=inbox) as tracker:
        assert_type(await tracker.run(book, max_events=1), int)
    await inbox.close()
