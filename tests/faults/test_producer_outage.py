"""A broker frozen (SIGSTOP) past ``message.timeout.ms``: nothing goes unreported.

Every event is either acknowledged or raised to the caller as retriable (by its future or by
``close()``), and ``examples/producer.py`` exits non-zero with its ❌ line. This module's
stack runs on 24100 / 24101 (controller 25100, registry management 25101).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _events import make_events

from paykafka import DeliveryError, DeliveryFuture, PaymentProducer
from paykafka._stack import Stack

from ._support import Report, fresh_settings
from .conftest import _own_stack

KAFKA_PORT = 24100
REGISTRY_PORT = 24101
MESSAGE_TIMEOUT_MS = 2_000
FROZEN_SECONDS = 5.0  # well past message.timeout.ms
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A one-broker stack of this module's own, torn down afterwards."""
    with _own_stack(
        tmp_path_factory.mktemp("stack-outage"),
        brokers=1,
        kafka_port=KAFKA_PORT,
        registry_port=REGISTRY_PORT,
    ) as stack:
        yield stack


@pytest.mark.timeout(120)
def test_frozen_broker_every_event_acknowledged_or_raised_retriable(
    outage_stack: Stack, report: Report
) -> None:
    """4,000 events across a 5 s freeze: each one acked, or raised to the caller as retriable."""
    settings = fresh_settings(outage_stack)
    sent = make_events(4_000)
    acked: set[uuid.UUID] = set()
    raised: dict[uuid.UUID, DeliveryError] = {}

    def watch(future: DeliveryFuture) -> None:
        error = future.exception(0)
        if error is None:
            acked.add(future.event.payment_id)
        else:
            raised[future.event.payment_id] = error

    send_seconds: list[float] = []
    at_close: DeliveryError | None = None
    producer = PaymentProducer(
        settings,
        flush_timeout=30,
        kafka_options={"message.timeout.ms": MESSAGE_TIMEOUT_MS},
    ).start()
    futures = []
    try:
        for i, event in enumerate(sent):
            if i == 1_000:
                outage_stack.pause_node(1)
                frozen_at = time.monotonic()
            if i == 3_000:
                time.sleep(max(0.0, frozen_at + FROZEN_SECONDS - time.monotonic()))
                outage_stack.resume_node(1)
            began = time.perf_counter()
            # Half the events are watched by a callback, half left for close() to report.
            futures.append(producer.send(event, on_delivery=watch if i % 2 else None))
            send_seconds.append(time.perf_counter() - began)
            if i % 100 == 99:
                time.sleep(0.05)  # ~2,000 events/s: the stream spans the freeze
        try:
            producer.close()
        except DeliveryError as exc:
            at_close = exc
    finally:
        outage_stack.resume_node(1)
    closed = {e.payment_id: why for e, why in at_close.undelivered} if at_close else {}
    acked |= {f.event.payment_id for f in futures if f.done() and f.exception(0) is None}
    unaccounted = [e for e in sent if e.payment_id not in acked | raised.keys() | closed.keys()]
    send_seconds.sort()
    report(
        sent=len(sent),
        acknowledged=len(acked),
        raised_to_callbacks=len(raised),
        raised_by_close=len(closed),
        lost=len(unaccounted),
        send_p999_ms=round(send_seconds[int(len(send_seconds) * 0.999)] * 1000, 2),
        send_max_ms=round(send_seconds[-1] * 1000, 2),
    )
    assert not unaccounted
    assert raised or closed, "the freeze outlasted message.timeout.ms: some events must fail"
    assert all(error.retriable for error in raised.values())
    if at_close is not None:
        assert at_close.retriable
        assert at_close.code is not None


@pytest.mark.timeout(120)
def test_example_producer_exits_non_zero_when_deliveries_fail(
    outage_stack: Stack, tmp_path: Path, report: Report
) -> None:
    """examples/producer.py across a freeze: exit 1, its ❌ line last, a few stderr lines."""
    settings = fresh_settings(outage_stack)
    env = dict(
        os.environ,
        PAYKAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        PAYKAFKA_REGISTRY_URL=settings.registry_url,
        PAYKAFKA_TOPIC=settings.topic,
        PAYKAFKA_KAFKA_OPTIONS=f'{{"message.timeout.ms": "{MESSAGE_TIMEOUT_MS}"}}',
    )
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        example = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "producer.py"), "--count", "30000"],
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            while "✅" not in out.read_text(encoding="utf-8") and example.poll() is None:
                assert time.monotonic() < deadline, "the example delivered nothing in 60s"
                time.sleep(0.01)
            outage_stack.pause_node(1)  # deliveries are under way: the rest time out
            code = example.wait(90)
        finally:
            outage_stack.resume_node(1)
            if example.poll() is None:
                example.kill()
    lines = err.read_text(encoding="utf-8").splitlines()
    delivered = out.read_text(encoding="utf-8").count("✅ Delivered to")
    report(exit_code=code, delivered=delivered, stderr_lines=len(lines))
    assert code == 1, lines
    assert lines[-1].startswith("❌ "), lines
    assert "not delivered" in lines[-1]
    assert len(lines) <= 6, lines  # a summary, not a line per event
