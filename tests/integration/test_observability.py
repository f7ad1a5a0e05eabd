"""Traces, metrics and `paykafka top` on the real stack."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pexpect
import pytest
from _events import make_events
from confluent_kafka import Producer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from paykafka import (
    KafkaAdmin,
    Output,
    PaymentEvent,
    PaymentProcessor,
    PaymentProducer,
    PaymentTracker,
    Settings,
    Telemetry,
)
from paykafka.aio import AsyncPaymentProcessor, AsyncPaymentProducer, AsyncPaymentTracker

from ._cli import connection_flags, run_cli

PAYKAFKA = str(Path(sys.executable).with_name("paykafka"))


def attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """A finished span's attributes (never None once ended)."""
    assert span.attributes is not None
    return span.attributes


def test_one_trace_from_send_to_handler(
    topic_settings: Settings, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Each handler's span continues the trace of the send that produced its payment."""
    provider, exporter = spans
    telemetry = Telemetry(tracer_provider=provider)
    events = make_events(20, users=5)
    with PaymentProducer(topic_settings, telemetry=telemetry) as producer:
        for event in events:
            producer.send(event)
    with PaymentTracker(topic_settings, telemetry=telemetry) as tracker:
        handled = tracker.run(lambda _e: None, max_events=20, idle_timeout=30)
    assert handled == 20
    finished = exporter.get_finished_spans()
    sends = {
        attributes(s)["messaging.message.id"]: s for s in finished if s.kind is SpanKind.PRODUCER
    }
    processes = [s for s in finished if s.kind is SpanKind.CONSUMER]
    assert set(sends) == {str(e.payment_id) for e in events}
    assert len(processes) == 20
    for process in processes:
        send = sends[attributes(process)["messaging.message.id"]]
        assert process.context.trace_id == send.context.trace_id
        assert process.parent is not None
        assert process.parent.span_id == send.context.span_id
        assert attributes(process)["messaging.destination.name"] == topic_settings.topic
        assert attributes(process)["messaging.consumer.group.name"] == topic_settings.group_id
        assert (
            attributes(process)["messaging.destination.partition.id"]
            == attributes(send)["messaging.destination.partition.id"]
        )
        assert (
            attributes(process)["messaging.kafka.offset"]
            == attributes(send)["messaging.kafka.offset"]
        )


def _one_trace_per_payment(exporter: InMemorySpanExporter, n: int) -> None:
    finished = exporter.get_finished_spans()
    sends = {
        attributes(s)["messaging.message.id"]: s for s in finished if s.kind is SpanKind.PRODUCER
    }
    processes = [s for s in finished if s.kind is SpanKind.CONSUMER]
    assert len(sends) == len(processes) == n
    for process in processes:
        send = sends[attributes(process)["messaging.message.id"]]
        assert process.context.trace_id == send.context.trace_id
        assert process.parent is not None
        assert process.parent.span_id == send.context.span_id


def test_concurrent_tracker_spans_continue_each_payments_trace(
    topic_settings: Settings, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """With handlers in a thread pool, each span still joins its own payment's trace."""
    provider, exporter = spans
    telemetry = Telemetry(tracer_provider=provider)
    with PaymentProducer(topic_settings, telemetry=telemetry) as producer:
        for event in make_events(30, users=10):
            producer.send(event)
    with PaymentTracker(topic_settings, telemetry=telemetry, concurrency=4) as tracker:
        assert tracker.run(lambda _e: None, max_events=30, idle_timeout=30) == 30
    _one_trace_per_payment(exporter, 30)


def test_async_faces_carry_the_trace(
    topic_settings: Settings, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """AsyncPaymentProducer -> AsyncPaymentTracker(concurrency=8): one trace per payment."""
    provider, exporter = spans
    telemetry = Telemetry(tracer_provider=provider)

    async def handler(_event: PaymentEvent) -> None:
        await asyncio.sleep(0.001)

    async def scenario() -> int:
        async with AsyncPaymentProducer(topic_settings, telemetry=telemetry) as producer:
            await asyncio.gather(*(producer.send(e) for e in make_events(20, users=7)))
        async with AsyncPaymentTracker(
            topic_settings, telemetry=telemetry, concurrency=8
        ) as tracker:
            return await tracker.run(handler, max_events=20, idle_timeout=30, handle_signals=False)

    assert asyncio.run(scenario()) == 20
    _one_trace_per_payment(exporter, 20)


def test_records_from_an_untraced_producer_still_get_consumer_spans(
    topic_settings: Settings, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A producer without tracing: each handler call is still a (root) consumer span."""
    provider, exporter = spans
    with PaymentProducer(topic_settings) as producer:
        for event in make_events(5):
            producer.send(event)
    with PaymentTracker(topic_settings, telemetry=Telemetry(tracer_provider=provider)) as tracker:
        tracker.run(lambda _e: None, max_events=5, idle_timeout=30)
    processes = exporter.get_finished_spans()
    assert len(processes) == 5
    assert all(s.kind is SpanKind.CONSUMER and s.parent is None for s in processes)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The endpoint's samples, by name and labels (parsed from the text format)."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_endpoint_counts_what_happened(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scraped over HTTP: sent, delivered, handled, retried, dead-lettered and lag all match."""
    port = _free_port()
    settings = attrs.evolve(topic_settings, metrics_port=port)
    topic, group = settings.topic, settings.group_id
    events = make_events(50, users=10)
    with PaymentProducer(settings) as producer:
        for event in events:
            producer.send(event)
    raw = Producer(settings.producer_config())
    for value in (b"not avro", b"\x00\x00\x00\x00\x01garbage"):
        raw.produce(topic, value, b"poison")
    assert raw.flush(30) == 0
    failed: list[object] = []

    def handler(event: object) -> None:
        if not failed:  # the first call fails once, and is retried
            failed.append(event)
            raise RuntimeError("transient")

    tracker = PaymentTracker(
        settings, retry_backoff=0.01, kafka_options={"statistics.interval.ms": "300"}
    )
    with tracker:
        handled = tracker.run(handler, max_events=30, idle_timeout=30, handle_signals=False)
        tracker.commit()
        # Hold the partitions without reading further, so librdkafka's statistics report lag.
        consumer = tracker._consumer
        assert consumer is not None
        consumer.pause(consumer.assignment())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            consumer.poll(0.1)
        scraped = _scrape(port)
    assert handled == 30

    def sample(name: str, **labels: str) -> float:
        return scraped.get((name, frozenset(labels.items())), 0.0)

    assert sample("paykafka_events_sent_total", topic=topic) == 50
    assert sample("paykafka_events_delivered_total", topic=topic) == 50
    assert sample("paykafka_events_handled_total", topic=topic, consumergroup=group) == 30
    assert sample("paykafka_handler_retries_total", topic=topic, consumergroup=group) == 1
    # Every handler call is timed, the one that raised too; the tracker timed them itself.
    calls = sample("paykafka_handler_duration_seconds_count", topic=topic, consumergroup=group)
    assert calls == 31
    # The delivery latency is librdkafka's, one observation per acknowledged event.
    assert sample("paykafka_delivery_latency_seconds_count", topic=topic) == 50
    assert sample("paykafka_delivery_latency_seconds_sum", topic=topic) > 0
    # Nothing handed out while the partitions were held paused.
    in_flight = ("paykafka_in_flight", frozenset({"topic": topic, "consumergroup": group}.items()))
    assert scraped[in_flight] == 0
    dead = {
        dict(labels)["reason"]: value
        for (name, labels), value in scraped.items()
        if name == "paykafka_events_dead_lettered_total" and ("topic", topic) in labels
    }
    lag = {
        int(dict(labels)["partition"]): value
        for (name, labels), value in scraped.items()
        if name == "kafka_consumergroup_lag" and ("consumergroup", group) in labels
    }
    code, out, _ = run_cli(capsys, "lag", "--json", *connection_flags(settings))
    assert code == 0
    expected = {p["partition"]: p["lag"] for p in json.loads(out)["partitions"]}
    assert lag == expected
    assert sum(lag.values()) == 52 - 30 - sum(dead.values())


def test_top_once_shows_the_topic_and_its_lag(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`top --once --json`: the topic's partition count and the group's lag match `lag`."""
    with PaymentProducer(topic_settings) as producer:
        for event in make_events(12):
            producer.send(event)
    with PaymentTracker(topic_settings) as tracker:
        tracker.run(lambda _e: None, max_events=5, idle_timeout=30, handle_signals=False)
        tracker.commit()
    flags = [*connection_flags(topic_settings), "--only-topic", topic_settings.topic]
    code, out, _ = run_cli(capsys, "top", "--once", "--json", "--interval", "0.2", *flags)
    assert code == 0
    top = json.loads(out)
    (row,) = top["topics"]
    assert row["name"] == topic_settings.topic
    assert row["partitions"] == 3
    groups = [g for g in top["groups"] if g["group"] == topic_settings.group_id]
    lag = KafkaAdmin(topic_settings).lag()
    assert sum(g["lag"] for g in groups) == lag.total == 7
    code, out, _ = run_cli(capsys, "top", "--once", "--interval", "0.2", *flags)
    assert code == 0
    assert topic_settings.topic in out
    assert topic_settings.group_id in out
    assert "registry up" in out


def test_top_live_refreshes_and_leaves_on_ctrl_c(topic_settings: Settings) -> None:
    """In a real pseudo-terminal, `top` redraws every interval and exits 0 on Ctrl+C."""
    args = [
        "top",
        "--interval",
        "0.3",
        "--only-topic",
        topic_settings.topic,
        *connection_flags(topic_settings),
    ]
    child = pexpect.spawn(PAYKAFKA, args, encoding="utf-8", timeout=30, dimensions=(40, 160))
    try:
        for _ in range(3):
            child.expect("paykafka top: ")
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_trace_runs_through_the_exactly_once_processor(
    face: str, topic_settings: Settings, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """send -> processor's span -> its output's reader: one trace, parent to child (both the
    PaymentProcessor and the AsyncPaymentProcessor)."""
    provider, exporter = spans
    telemetry = Telemetry(tracer_provider=provider, registry=CollectorRegistry())
    settings = attrs.evolve(topic_settings, transactional_id=f"{topic_settings.topic}-tx")
    forwarded = f"{settings.topic}.forwarded"
    events = make_events(10, users=4)
    with PaymentProducer(settings, telemetry=telemetry) as producer:
        for event in events:
            producer.send(event)
    if face == "sync":
        with PaymentProcessor(
            settings, output_topics=[forwarded], telemetry=telemetry
        ) as processor:
            handled = processor.run(
                lambda e: Output(forwarded, e), stop_at_end=True, handle_signals=False
            )
    else:

        async def forward(event: PaymentEvent) -> Output:
            return Output(forwarded, event)

        async def main() -> int:
            async with AsyncPaymentProcessor(
                settings, output_topics=[forwarded], telemetry=telemetry
            ) as processor:
                return await processor.run(forward, stop_at_end=True, handle_signals=False)

        handled = asyncio.run(main())
    assert handled == 10
    reader = attrs.evolve(settings, topic=forwarded, group_id=f"{forwarded}-reader")
    with PaymentTracker(reader, telemetry=telemetry) as tracker:
        assert tracker.run(lambda _e: None, max_events=10, idle_timeout=30) == 10
    finished = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    readers = [s for s in finished if s.name == f"process {forwarded}"]
    assert len(readers) == 10
    for span in readers:
        assert span.parent is not None
        middle = by_id[span.parent.span_id]  # the processor's span
        assert middle.name == f"process {settings.topic}"
        assert middle.parent is not None
        send = by_id[middle.parent.span_id]
        assert send.name == f"send {settings.topic}"
        assert send.context.trace_id == span.context.trace_id
        assert attributes(send)["messaging.message.id"] == attributes(span)["messaging.message.id"]
    assert telemetry.metrics is not None
    handled_series = telemetry.metrics.handled.labels_(settings.topic, settings.group_id)
    assert handled_series.value() == 10
