"""Telemetry without a broker: when it is off, what spans carry, what metrics count, top's rows."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Message
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry

from paykafka import ConfigError, PaymentEvent, Settings, Telemetry
from paykafka._observability import telemetry_for
from paykafka._observability._metrics import Metrics
from paykafka._observability._top import Snapshot, TopicState, view
from paykafka._observability._tracing import drops_unsampled_remote, sender_context

EVENT = PaymentEvent(user="marek", amount=Decimal("249.99"), currency="PLN", method="blik")


def attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """A finished span's attributes (never None once ended)."""
    assert span.attributes is not None
    return span.attributes


def test_telemetry_is_none_when_everything_is_off() -> None:
    """With tracing and metrics off, clients get None: one `is None` test per event."""
    assert telemetry_for(Settings()) is None


def test_settings_turn_each_view_on() -> None:
    """PAYKAFKA_TRACING and PAYKAFKA_METRICS each switch on their own view."""
    tracing = telemetry_for(Settings.from_env({"PAYKAFKA_TRACING": "true"}))
    assert tracing is not None
    assert tracing.tracing is not None
    assert tracing.metrics is None
    metrics = telemetry_for(Settings.from_env({"PAYKAFKA_METRICS": "1"}))
    assert metrics is not None
    assert metrics.metrics is not None
    assert metrics.tracing is None


def test_given_telemetry_wins_over_settings() -> None:
    """An application's own Telemetry object is used as it is."""
    mine = Telemetry(registry=CollectorRegistry())
    assert telemetry_for(Settings(tracing=True), mine) is mine


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics without prometheus-client installed: a ConfigError saying what to install."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "paykafka._observability._metrics", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'paykafka\[prometheus\]'"):
        telemetry_for(Settings(metrics=True))


def test_send_span_context_travels_in_a_traceparent_header(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """The send span's context is in the record's headers; the process span is its child."""
    provider, exporter = spans
    telemetry = Telemetry(tracer_provider=provider)
    token, headers = telemetry.sending("payments", EVENT, b"marek")
    assert token is not None
    assert headers is not None
    names = [name for name, _ in headers]
    assert "traceparent" in names
    telemetry.delivered(token, Message(topic="t", partition=2, offset=41, latency=0.003))
    record = Message(topic="payments", partition=2, offset=41, key=b"marek", headers=headers)
    with telemetry.handling("payments", "ledger", EVENT, record):
        pass
    send, process = exporter.get_finished_spans()
    assert send.name == "send payments"
    assert send.kind is SpanKind.PRODUCER
    assert process.name == "process payments"
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    assert attributes(send)["messaging.system"] == "kafka"
    assert attributes(send)["messaging.destination.name"] == "payments"
    assert attributes(send)["messaging.destination.partition.id"] == "2"
    assert attributes(send)["messaging.kafka.offset"] == 41
    assert attributes(send)["messaging.message.id"] == str(EVENT.payment_id)
    assert attributes(send)["messaging.kafka.message.key"] == "marek"
    assert attributes(process)["messaging.consumer.group.name"] == "ledger"
    assert attributes(process)["messaging.kafka.offset"] == 41


def test_record_without_trace_context_still_gets_a_consumer_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """No traceparent header: a root CONSUMER span with no links."""
    provider, exporter = spans
    telemetry = Telemetry(tracer_provider=provider)
    with telemetry.handling("payments", "g", EVENT, Message(topic="payments", offset=0)):
        pass
    (process,) = exporter.get_finished_spans()
    assert process.parent is None
    assert process.kind is SpanKind.CONSUMER
    assert list(process.links) == []


def test_a_dropped_send_span_carries_its_decision_to_the_handler() -> None:
    """Sampled out at the sender: the record still carries the trace (sampled flag unset), and
    the handler's span, following its parent, is not recorded but keeps the trace current."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(tracer_provider=provider)
    token, headers = telemetry.sending("payments", EVENT, b"marek")
    assert token is None  # the span was dropped: nothing waits for the acknowledgement
    assert headers is not None
    (traceparent,) = [value for name, value in headers if name == "traceparent"]
    assert isinstance(traceparent, bytes)
    version, trace_id, _span_id, flags = traceparent.split(b"-")
    assert version == b"00"
    assert not int(flags, 16) & TraceFlags.SAMPLED
    record = Message(topic="payments", partition=0, offset=7, headers=headers)
    with telemetry.handling("payments", "ledger", EVENT, record):
        assert not trace.get_current_span().is_recording()
        current = trace.get_current_span().get_span_context()
        assert f"{current.trace_id:032x}".encode() == trace_id
        inside = telemetry.context_headers()
    assert inside is not None
    propagated = dict(inside)["traceparent"]
    assert isinstance(propagated, bytes)
    assert propagated.split(b"-")[1] == trace_id
    assert not int(propagated.split(b"-")[3], 16) & TraceFlags.SAMPLED
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_tracestate_travels_with_the_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A vendor's tracestate on the caller's trace reaches the record and the handler's span."""
    provider, exporter = spans
    telemetry = Telemetry(tracer_provider=provider)
    caller = SpanContext(
        trace_id=0x1234,
        span_id=0x42,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "abc")]),
    )
    with trace.use_span(NonRecordingSpan(caller)):
        token, headers = telemetry.sending("payments", EVENT, None)
    assert token is not None
    assert headers is not None
    telemetry.delivered(token, Message(topic="t", partition=0, offset=1, latency=0.003))
    assert dict(headers)["tracestate"] == b"vendor=abc"
    record = Message(topic="payments", partition=0, offset=1, headers=headers)
    with telemetry.handling("payments", "ledger", EVENT, record):
        pass
    send, process = exporter.get_finished_spans()
    assert send.context.trace_id == process.context.trace_id == 0x1234
    assert process.context.trace_state.get("vendor") == "abc"


_TRACE = "0af7651916cd43dd8448eb211c80319c"
_SPAN = "b7ad6b7169203331"


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", f"00-{_TRACE}-{_SPAN}-01".encode())],
        [("traceparent", f"00-{_TRACE}-{_SPAN}-00".encode()), ("tracestate", b"a=1,b=2")],
        [("other", b"x"), ("traceparent", f"00-{_TRACE}-{_SPAN}-03")],  # str, random flag
        [("traceparent", f"00-{_TRACE.upper()}-{_SPAN}-01".encode())],  # not lower-case hex
        [("traceparent", f"00-{'0' * 32}-{_SPAN}-01".encode())],  # zero trace id
        [("traceparent", f"00-{_TRACE}-{'0' * 16}-01".encode())],  # zero span id
        [("traceparent", f"ff-{_TRACE}-{_SPAN}-01".encode())],  # forbidden version
        [("traceparent", f"01-{_TRACE}-{_SPAN}-01-future".encode())],  # later version
        [("traceparent", f"00-{_TRACE}-{_SPAN}-01-extra".encode())],  # 00 allows nothing more
        [("traceparent", f" 00-{_TRACE}-{_SPAN}-01".encode())],  # leading space
        [("traceparent", b"garbage"), ("tracestate", b"a=1")],
        [("traceparent", None)],
        [("tracestate", b"a=1")],
    ],
)
def test_trace_headers_read_as_the_sdk_reads_them(headers: list[tuple[str, Any]]) -> None:
    """paykafka's reading of a record's trace headers agrees with the SDK's W3C propagator."""
    carrier = {
        name: value.decode() if isinstance(value, bytes) else value
        for name, value in headers
        if value is not None
    }
    expected = trace.get_current_span(
        TraceContextTextMapPropagator().extract(carrier)
    ).get_span_context()
    found = sender_context(headers)
    if not expected.is_valid:
        assert found is None
    else:
        assert found == expected
        assert found is not None
        assert found.trace_flags == expected.trace_flags
        assert found.trace_state == expected.trace_state
        assert found.is_remote


def test_failures_are_marked_on_spans(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """A failed delivery and a raising handler both carry error.type and an error status."""
    provider, exporter = spans
    telemetry = Telemetry(tracer_provider=provider)
    token, _ = telemetry.sending("payments", EVENT, None)
    assert token is not None
    telemetry.failed(token, "_MSG_TIMED_OUT")
    with (
        pytest.raises(KeyError),
        telemetry.handling("payments", "g", EVENT, Message(topic="payments", offset=0)),
    ):
        raise KeyError("boom")
    send, process = exporter.get_finished_spans()
    assert attributes(send)["error.type"] == "_MSG_TIMED_OUT"
    assert send.status.status_code is StatusCode.ERROR
    assert attributes(process)["error.type"] == "KeyError"
    assert process.status.status_code is StatusCode.ERROR


def test_a_sampler_that_keeps_unsampled_remote_children_still_decides() -> None:
    """The handler of a record whose sender was sampled out gets no span of its own only
    when the sampler would drop it anyway; a sampler that records such children gets its span,
    a child of the sender's, as the SDK would make it."""
    exporter = InMemorySpanExporter()
    keeping = ParentBased(TraceIdRatioBased(0.0), remote_parent_not_sampled=ALWAYS_ON)
    provider = TracerProvider(sampler=keeping)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert not drops_unsampled_remote(provider)
    assert drops_unsampled_remote(TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5))))
    assert not drops_unsampled_remote(trace.NoOpTracerProvider())
    telemetry = Telemetry(tracer_provider=provider)
    token, headers = telemetry.sending("payments", EVENT, b"marek")
    assert token is None
    assert headers is not None
    sender = sender_context(headers)
    assert sender is not None
    assert not sender.trace_flags.sampled
    record = Message(topic="payments", partition=0, offset=7, headers=headers)
    with telemetry.handling("payments", "ledger", EVENT, record):
        assert trace.get_current_span().is_recording()
    (process,) = exporter.get_finished_spans()
    assert process.name == "process payments"
    assert process.context.trace_id == sender.trace_id
    assert process.parent is not None
    assert process.parent.span_id == sender.span_id
    provider.shutdown()


def test_a_record_from_an_unsampled_sender_runs_in_the_senders_context() -> None:
    """With the usual parent-based sampler the handler of a sampled-out record runs in the
    sender's own (non-recording) context: no new span, the same trace and parent ids."""
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    telemetry = Telemetry(tracer_provider=provider)
    _, headers = telemetry.sending("payments", EVENT, b"marek")
    assert headers is not None
    sender = sender_context(headers)
    assert sender is not None
    record = Message(topic="payments", partition=0, offset=7, headers=headers)
    with telemetry.handling("payments", "ledger", EVENT, record) as span:
        current = trace.get_current_span().get_span_context()
    assert span is not None
    assert (current.trace_id, current.span_id) == (sender.trace_id, sender.span_id)
    assert current.is_remote
    assert trace.get_current_span().get_span_context() != current  # detached on the way out
    provider.shutdown()


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_metrics_count_the_event_lifecycle() -> None:
    """Sent, delivered, failed, handled, retried, dead-lettered and duplicates are counted."""
    registry = CollectorRegistry()
    telemetry = Telemetry(registry=registry)
    ok, _ = telemetry.sending("t", EVENT, None)
    failed, _ = telemetry.sending("t", EVENT, None)
    assert ok is not None
    assert failed is not None
    telemetry.delivered(ok, Message(topic="t", partition=0, offset=0, latency=0.003))
    telemetry.failed(failed, "_MSG_TIMED_OUT")
    with telemetry.handling("t", "g", EVENT, Message(topic="t", partition=0, offset=0)):
        pass
    telemetry.handled("t", "g")
    telemetry.retried("t", "g")
    telemetry.dead_lettered("t", "g", "corrupt_avro")
    telemetry.duplicate("t", "g")
    assert _value(registry, "paykafka_events_sent_total", topic="t") == 2
    assert _value(registry, "paykafka_events_delivered_total", topic="t") == 1
    assert _value(registry, "paykafka_events_failed_total", topic="t", error="_MSG_TIMED_OUT") == 1
    assert _value(registry, "paykafka_events_handled_total", topic="t", consumergroup="g") == 1
    assert _value(registry, "paykafka_handler_retries_total", topic="t", consumergroup="g") == 1
    assert (
        _value(
            registry,
            "paykafka_events_dead_lettered_total",
            topic="t",
            consumergroup="g",
            reason="corrupt_avro",
        )
        == 1
    )
    assert _value(registry, "paykafka_duplicates_absorbed_total", topic="t", consumergroup="g") == 1
    assert _value(registry, "paykafka_delivery_latency_seconds_count", topic="t") == 1
    assert (
        _value(registry, "paykafka_handler_duration_seconds_count", topic="t", consumergroup="g")
        == 1
    )


def test_delivery_latency_is_the_one_librdkafka_measured() -> None:
    """The latency given with the acknowledgement (``Message.latency()``) is what the
    histogram holds, in its bucket; every send of a topic shares one token with tracing off."""
    registry = CollectorRegistry()
    telemetry = Telemetry(registry=registry)
    (first, _), (second, _) = (
        telemetry.sending("t", EVENT, None),
        telemetry.sending("t", EVENT, b"k"),
    )
    assert first is second
    assert first is not None
    assert second is not None
    assert telemetry.sending("u", EVENT, None)[0] is not first
    telemetry.delivered(first, Message(topic="t", partition=0, offset=0, latency=0.003))
    telemetry.delivered(second, Message(topic="t", partition=0, offset=1, latency=0.2))
    name = "paykafka_delivery_latency_seconds"
    assert _value(registry, f"{name}_sum", topic="t") == pytest.approx(0.203)
    assert _value(registry, f"{name}_bucket", topic="t", le="0.0025") == 0
    assert _value(registry, f"{name}_bucket", topic="t", le="0.005") == 1
    assert _value(registry, f"{name}_bucket", topic="t", le="0.25") == 2
    assert _value(registry, "paykafka_events_sent_total", topic="t") == 2
    assert _value(registry, "paykafka_events_sent_total", topic="u") == 1


def test_a_handler_timer_made_after_a_thread_first_wrote_is_counted() -> None:
    """A thread whose cells predate a series (it wrote another one first) still records it:
    handled_in grows the thread's cells rather than losing or misplacing the write."""
    registry = CollectorRegistry()
    telemetry = Telemetry(registry=registry)
    telemetry.retried("t", "g")  # this thread's cells now end before the timer's
    timer = telemetry.timer("t", "g")
    assert timer is not None
    timer.handled_in(0.004)
    done = threading.Thread(target=timer.handled_in, args=(0.03,))
    done.start()
    done.join()
    handled = _value(registry, "paykafka_events_handled_total", topic="t", consumergroup="g")
    assert handled == 2
    name = "paykafka_handler_duration_seconds"
    assert _value(registry, f"{name}_sum", topic="t", consumergroup="g") == pytest.approx(0.034)
    assert _value(registry, f"{name}_bucket", topic="t", consumergroup="g", le="0.005") == 1
    assert _value(registry, f"{name}_bucket", topic="t", consumergroup="g", le="0.025") == 1
    assert _value(registry, f"{name}_bucket", topic="t", consumergroup="g", le="0.05") == 2
    assert _value(registry, "paykafka_handler_retries_total", topic="t", consumergroup="g") == 1


def test_there_is_no_handler_timer_when_tracing_is_on(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """With tracing on the handler call needs its span, so the hot loops must use call()."""
    assert Telemetry(registry=CollectorRegistry(), tracer_provider=spans[0]).timer("t", "g") is None
    assert Telemetry(tracer_provider=spans[0]).timer("t", "g") is None


@pytest.mark.parametrize("tracing", [False, True])
def test_a_counted_handler_call_is_handled_only_when_it_returns(
    tracing: bool, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """handling(..., counted=True) counts the call as handled if it returns, not if it raises."""
    registry = CollectorRegistry()
    telemetry = Telemetry(registry=registry, tracer_provider=spans[0] if tracing else None)
    record = Message(topic="t", partition=0, offset=0)
    with telemetry.handling("t", "g", EVENT, record, counted=True):
        pass
    with pytest.raises(KeyError), telemetry.handling("t", "g", EVENT, record, counted=True):
        raise KeyError("boom")
    with telemetry.handling("t", "g", EVENT, record):
        pass
    assert _value(registry, "paykafka_events_handled_total", topic="t", consumergroup="g") == 1
    assert (
        _value(registry, "paykafka_handler_duration_seconds_count", topic="t", consumergroup="g")
        == 3
    )
    assert len(spans[1].get_finished_spans()) == (3 if tracing else 0)


@pytest.mark.parametrize("tracing", [False, True])
def test_call_times_and_counts_the_handler(
    tracing: bool, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """call() times every handler call and counts only those that return; a raise propagates."""
    registry = CollectorRegistry()
    telemetry = Telemetry(registry=registry, tracer_provider=spans[0] if tracing else None)
    record = Message(topic="t", partition=0, offset=0)
    seen: list[PaymentEvent] = []
    telemetry.call(seen.append, EVENT, "t", "g", record)

    def fail(_event: PaymentEvent) -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        telemetry.call(fail, EVENT, "t", "g", record)
    assert seen == [EVENT]
    assert _value(registry, "paykafka_events_handled_total", topic="t", consumergroup="g") == 1
    assert (
        _value(registry, "paykafka_handler_duration_seconds_count", topic="t", consumergroup="g")
        == 2
    )
    assert len(spans[1].get_finished_spans()) == (2 if tracing else 0)


def _stats(partitions: dict[str, dict[str, object]]) -> str:
    return json.dumps({"type": "consumer", "topics": {"payments": {"partitions": partitions}}})


def test_lag_gauges_follow_librdkafka_statistics() -> None:
    """Assigned partitions' lag is exported under kafka_exporter's name; revoked ones vanish."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.observe_statistics(
        "ledger",
        _stats(
            {
                "0": {"desired": True, "consumer_lag": 7},
                "1": {"desired": True, "consumer_lag": 0},
                "2": {"desired": False, "consumer_lag": 99},
                "-1": {"desired": False, "consumer_lag": -1},
            }
        ),
    )
    lag = "kafka_consumergroup_lag"
    labels = {"consumergroup": "ledger", "topic": "payments"}
    assert registry.get_sample_value(lag, {**labels, "partition": "0"}) == 7
    assert registry.get_sample_value(lag, {**labels, "partition": "1"}) == 0
    assert registry.get_sample_value(lag, {**labels, "partition": "2"}) is None
    metrics.observe_statistics("ledger", _stats({"1": {"desired": True, "consumer_lag": 3}}))
    assert registry.get_sample_value(lag, {**labels, "partition": "0"}) is None
    assert registry.get_sample_value(lag, {**labels, "partition": "1"}) == 3


def test_producer_statistics_and_garbage_are_ignored() -> None:
    """Only consumer statistics carry group lag; unreadable JSON changes nothing."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.observe_statistics("g", json.dumps({"type": "producer", "topics": {}}))
    metrics.observe_statistics("g", "{not json")
    assert list(registry.collect())  # still serves
    assert registry.get_sample_value("kafka_consumergroup_lag", {"consumergroup": "g"}) is None


def test_one_metrics_object_per_registry() -> None:
    """Two clients in one process share the registry's metrics instead of clashing."""
    registry = CollectorRegistry()
    assert Metrics.for_registry(registry) is Metrics.for_registry(registry)


def test_a_new_registry_gets_its_own_metrics_even_at_a_reused_address() -> None:
    """Registries made and dropped one after another (often at the same address) each get
    paykafka's metrics registered in them, not those of a registry that is gone."""
    addresses = set()
    for _ in range(20):
        registry = CollectorRegistry()
        addresses.add(id(registry))
        Telemetry(registry=registry).sending("t", EVENT, None)
        assert _value(registry, "paykafka_events_sent_total", topic="t") == 1
        del registry
    assert len(addresses) < 20, "no address was reused: this run proved nothing"


def _snapshot(at: float, ends: tuple[int, int], committed: int, isr: tuple[int, ...]) -> Snapshot:
    return Snapshot(
        at=at,
        taken=datetime(2026, 11, 29, tzinfo=UTC),
        bootstrap="localhost:9092",
        topics=(
            TopicState(
                name="payments",
                marks={0: (0, ends[0]), 1: (5, ends[1])},
                replicas={0: ((1, 2), isr), 1: ((1, 2), (1, 2))},
            ),
        ),
        groups={"ledger": {("payments", 0): committed, ("payments", 1): 2, ("gone", 0): 1}},
        dlq_topic="payments.dlq",
        dlq_pending=3,
        dlq_newest_reason="corrupt_avro",
        registry="registry up (x)",
    )


def test_top_rates_and_lag_from_two_snapshots() -> None:
    """Events in/out per second are offset growth over the interval; lag counts from retained."""
    first = _snapshot(10.0, (100, 50), committed=90, isr=(1, 2))
    second = _snapshot(12.0, (140, 50), committed=120, isr=(1,))
    top = view(second, first)
    (topic,) = top.topics
    assert topic.in_rate == 20.0  # (140 + 50) - (100 + 50) over 2 s
    assert topic.retained == 140 + 45
    assert topic.health == "UNDER-REPLICATED partitions 0"
    rows = {(g.topic, g.partition): g for g in top.groups}
    assert set(rows) == {("payments", 0), ("payments", 1)}
    assert rows[("payments", 0)].lag == 20
    assert rows[("payments", 0)].out_rate == 15.0
    # Committed below the oldest retained offset: lag counts from what is still there.
    assert rows[("payments", 1)].lag == 45
    assert "3 pending" in top.dlq
    assert "corrupt_avro" in top.dlq


def test_top_first_refresh_has_no_rates() -> None:
    """With one snapshot there is no interval, so rates are unknown, not zero."""
    top = view(_snapshot(1.0, (10, 10), committed=5, isr=(1, 2)))
    assert top.topics[0].in_rate is None
    assert all(g.out_rate is None for g in top.groups)
    assert top.topics[0].health == "healthy"


def test_off_imports_neither_extra() -> None:
    """With telemetry off, a producer/tracker process never imports opentelemetry or prometheus."""
    import subprocess  # noqa: PLC0415

    code = (
        "import sys, paykafka\n"
        "from paykafka._observability import telemetry_for\n"
        "assert telemetry_for(paykafka.Settings()) is None\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'opentelemetry', 'prometheus_client'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
