"""examples/service.py over real HTTP (uvicorn on a free port) against the real stack."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import httpx

from paykafka import PaymentTracker, Settings

from .test_examples import env_for

SERVICE = Path(__file__).resolve().parents[2] / "examples" / "service.py"
PAYMENT = {"user": "marek", "amount": 249.99, "currency": "PLN", "method": "blik"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def service(settings: Settings, *args: str) -> Iterator[httpx.Client]:
    """The example service running in its own process; yields a client pointed at it."""
    port = free_port()
    env = env_for(settings)
    env["PAYKAFKA_CREATE_TOPIC"] = "true" if settings.create_topic else "false"
    proc = subprocess.Popen(
        [sys.executable, str(SERVICE), "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "the service did not come up in 60 s"
                time.sleep(0.1)
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_posted_payments_are_acknowledged_with_their_position(topic_settings: Settings) -> None:
    """202 with partition and offset for good bodies; 422 with the reason for bad ones."""
    with service(topic_settings) as client:
        accepted = client.post("/payments", json=PAYMENT)
        bad_currency = client.post("/payments", json={**PAYMENT, "currency": "ZZZ"})
        too_precise = client.post(
            "/payments",
            content=b'{"user": "a", "amount": 1.001, "currency": "PLN", "method": "blik"}',
        )
        not_json = client.post("/payments", content=b"amount=1")
        missing = client.post("/payments", json={"user": "marek"})
        unknown = client.post("/payments", json={**PAYMENT, "admin": True})
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert body["topic"] == topic_settings.topic
    assert body["partition"] in {0, 1, 2}
    assert body["offset"] >= 0
    assert bad_currency.status_code == 422
    assert bad_currency.json()["field"] == "currency"
    assert too_precise.status_code == 422
    assert too_precise.json()["field"] == "amount"
    assert not_json.status_code == 422
    assert "not JSON" in not_json.json()["error"]
    assert missing.status_code == 422
    assert "amount" in missing.json()["error"]
    assert unknown.status_code == 422
    assert "admin" in unknown.json()["error"]
    with PaymentTracker(topic_settings) as tracker:
        records = list(tracker.records(max_records=1, idle_timeout=30))
    assert [(r.partition, r.offset) for r in records] == [(body["partition"], body["offset"])]
    assert str(records[0].event.payment_id) == body["payment_id"]
    assert records[0].event.amount == records[0].event.amount.__class__("249.99")


def test_no_broker_means_503_with_the_reason(live_settings: Settings) -> None:
    """A payment the broker never acknowledges is answered 503, retriable, within the timeout."""
    offline = attrs.evolve(live_settings, bootstrap_servers="localhost:1", create_topic=False)
    with service(offline, "--delivery-timeout", "1.5") as client:
        started = time.monotonic()
        answer = client.post("/payments", json=PAYMENT)
        took = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert answer.json()["retriable"] is True
    assert "not delivered" in answer.json()["error"]
    assert answer.headers["retry-after"] == "5"
    assert took < 10
