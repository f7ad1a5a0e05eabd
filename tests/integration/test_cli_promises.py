"""What the operator CLI promises, on the real stack: exact money in every output, clean stops
on SIGINT/SIGTERM, quiet ends on a closed pipe, and the flags the README documents."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from paykafka import (
    KafkaAdmin,
    PaymentEvent,
    PaymentProducer,
    PaymentTracker,
    Settings,
    currencies,
    minor_units,
)
from paykafka._cli import main

from ._cli import connection_flags, run_cli

PAYKAFKA = str(Path(sys.executable).with_name("paykafka"))
ALL_CURRENCIES = sorted(currencies())


def extremes(currency: str) -> list[Decimal]:
    """The smallest amount, the largest the schema holds, and one with every digit used."""
    places = minor_units(currency)
    smallest = Decimal(1).scaleb(-places)
    largest = Decimal(10) ** 14 - smallest
    every_digit = Decimal("12345678901234.5678").quantize(smallest, rounding="ROUND_DOWN")
    return [smallest, largest, every_digit]


def exact(amount: Decimal) -> str:
    return f"{amount:f}"


@st.composite
def money(draw: st.DrawFn) -> tuple[str, Decimal]:
    """Any currency with an extreme amount, or any amount it allows."""
    currency = draw(st.sampled_from(ALL_CURRENCIES))
    places = minor_units(currency)
    units = draw(
        st.sampled_from([1, 10 ** (14 + places) - 1, 5 * 10**places])
        | st.integers(1, 10 ** (14 + places) - 1)
    )
    return currency, Decimal(units).scaleb(-places)


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "PAYKAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "PAYKAFKA_REGISTRY_URL": settings.registry_url,
        "PAYKAFKA_TOPIC": settings.topic,
        "PAYKAFKA_GROUP_ID": settings.group_id,
        "PAYKAFKA_DLQ_TOPIC": settings.dlq_topic,
    }


def _send(settings: Settings, *events: PaymentEvent) -> None:
    with PaymentProducer(settings) as producer:
        for event in events:
            producer.send(event)


def _event(user: str = "live", amount: str = "1.00") -> PaymentEvent:
    return PaymentEvent(user=user, amount=amount, currency="PLN", method="cash")


@pytest.fixture
def spawn() -> Iterator[Any]:
    """Start `paykafka ...` in a subprocess; every one still running is killed afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(settings: Settings, *argv: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [PAYKAFKA, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(settings),
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _read_line(proc: subprocess.Popen[str], settings: Settings, user: str) -> str:
    """Send events until the process prints one line (it may join late); return that line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    with PaymentProducer(settings) as producer:
        while time.monotonic() < deadline:
            producer.send(_event(user))
            producer.flush(10)
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                return proc.stdout.readline()
    raise AssertionError("no output within 60 s")


# -- exact money ---------------------------------------------------------------------------------


@hypothesis_settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=money())
@example(case=("PLN", Decimal("99999999999999.99")))
@example(case=("EUR", Decimal(5)))
@example(case=("JPY", Decimal("99999999999999")))
@example(case=("BHD", Decimal("0.001")))
def test_produce_prints_the_exact_amount(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str], case: tuple[str, Decimal]
) -> None:
    """produce --json and its text both carry the event's Decimal exactly (never via a float)."""
    currency, amount = case
    flags = [*connection_flags(topic_settings, group=False), "--user", "u", "--method", "blik"]
    text = exact(amount)
    code, out, err = run_cli(
        capsys, "produce", "--json", *flags, "--amount", text, "--currency", currency
    )
    assert code == 0, err
    event = json.loads(out)["event"]
    want = exact(PaymentEvent(user="u", amount=amount, currency=currency, method="blik").amount)
    assert (event["amount"], event["currency"]) == (want, currency)
    assert Decimal(event["amount"]) == amount
    code, out, _ = run_cli(capsys, "produce", *flags, "--amount", text, "--currency", currency)
    assert code == 0
    assert f'"amount": "{want}"' in out


def test_events_track_and_dlq_list_show_extreme_amounts_exactly_in_every_currency(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """For extreme amounts in every currency, events, track and dlq list print the exact Decimal."""
    sent = {
        str(e.payment_id): e
        for e in (
            PaymentEvent(user=f"u-{c}", amount=a, currency=c, method="blik")
            for c in ALL_CURRENCIES
            for a in extremes(c)
        )
    }
    _send(topic_settings, *sent.values())
    flags = connection_flags(topic_settings)

    def check(rows: list[dict[str, Any]]) -> None:
        assert len(rows) == len(sent)
        for row in rows:
            event = sent[row["payment_id"]]
            assert (row["amount"], row["currency"]) == (exact(event.amount), event.currency)

    code, out, _ = run_cli(capsys, "events", "--json", "--from-beginning", "--until-end", *flags)
    assert code == 0
    check([json.loads(line)["event"] for line in out.splitlines()])

    code, out, _ = run_cli(capsys, "track", "--json", "--from-beginning", "--until-end", *flags)
    assert code == 0
    check([json.loads(line)["event"] for line in out.splitlines()])

    # Every payment dead-lettered by a failing handler: dlq list shows each one's exact amount.
    def refuse(_event: PaymentEvent) -> None:
        raise RuntimeError("ledger down")

    # A group of its own: `track` above committed the topic for the default group, and
    # from_beginning never replays what a group committed (it applies only without an offset).
    refusing = attrs.evolve(topic_settings, group_id=f"{topic_settings.group_id}-refusing")
    with PaymentTracker(
        refusing, from_beginning=True, handler_retries=0, retry_backoff=0.001
    ) as tracker:
        tracker.run(refuse, max_events=len(sent), idle_timeout=20, handle_signals=False)
    code, out, err = run_cli(
        capsys, "dlq", "list", "--json", *flags, "--dlq-topic", topic_settings.dlq_topic
    )
    assert code == 0, err
    check([row["event"] for row in json.loads(out)])


# -- promises the README makes -------------------------------------------------------------------


def test_events_accepts_json(topic_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """`events --json` is accepted (its output is JSON lines either way)."""
    _send(topic_settings, _event())
    code, out, err = run_cli(
        capsys,
        "events",
        "--json",
        "--from-beginning",
        "--until-end",
        *connection_flags(topic_settings),
    )
    assert code == 0, err
    assert json.loads(out)["event"]["amount"] == "1.00"


def test_produce_has_no_group_flag(topic_settings: Settings) -> None:
    """`produce --group` is refused as an unknown flag: producing has no consumer group."""
    argv = ["produce", *connection_flags(topic_settings), "--user", "u", "--amount", "1"]
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--currency", "PLN", "--method", "blik"])
    assert caught.value.code == 2


def test_an_empty_value_is_described_plainly(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record with an empty value says so, instead of `0 bytes starting with 0xnothing`."""
    raw = Producer(topic_settings.producer_config())
    raw.produce(topic_settings.topic, b"", b"k")
    assert raw.flush(10) == 0
    code, out, _ = run_cli(
        capsys, "events", "--from-beginning", "--until-end", *connection_flags(topic_settings)
    )
    assert code == 3
    message = json.loads(out)["error"]["message"]
    assert "an empty value" in message
    assert "nothing" not in message


def test_producer_and_tracker_take_kafka_options_like_settings(topic_settings: Settings) -> None:
    """kafka_options= is the clients' argument (as on Settings); kafka_overrides= still works,
    with a DeprecationWarning."""
    event = _event("opts")
    with PaymentProducer(topic_settings, kafka_options={"linger.ms": "1"}) as producer:
        producer.send(event).result(30)
    got: list[PaymentEvent] = []
    with PaymentTracker(
        topic_settings, from_beginning=True, kafka_options={"fetch.wait.max.ms": "50"}
    ) as tracker:
        tracker.run(got.append, max_events=1, idle_timeout=20, handle_signals=False)
    assert got == [event]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with PaymentProducer(topic_settings, kafka_overrides={"linger.ms": "1"}) as producer:
            producer.send(_event("old")).result(30)
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "kafka_options" in str(caught[0].message)


# -- signals and pipes ---------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_track_stops_cleanly_on_a_signal(
    topic_settings: Settings, spawn: Any, signum: signal.Signals
) -> None:
    """`track` on SIGTERM or SIGINT finishes the event in hand, commits, prints a summary."""
    proc = spawn(topic_settings, "track", "--json", "--from-beginning")
    line = _read_line(proc, topic_settings, "tracked")
    assert json.loads(line)["event"]["user"] == "tracked"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = re.search(rf"Stopped by {signum.name}\. Tracked (\d+) events", err)
    assert summary is not None, err
    assert "Traceback" not in err
    lag = KafkaAdmin(topic_settings).lag(topic_settings.group_id, topic_settings.topic)
    # Everything it handled (at least the line read above) is committed, nothing more.
    assert sum(p.committed or 0 for p in lag.partitions) == int(summary[1]) >= 1


def test_events_stops_cleanly_on_sigterm(topic_settings: Settings, spawn: Any) -> None:
    """`events` (following) on SIGTERM prints its summary and exits 0."""
    proc = spawn(topic_settings, "events")
    assert json.loads(_read_line(proc, topic_settings, "seen"))["event"]["user"] == "seen"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Stopped by SIGTERM. Processed a total of" in err
    assert "Traceback" not in err


def test_events_ends_quietly_when_the_pipe_closes(topic_settings: Settings, spawn: Any) -> None:
    """`paykafka events | head -1`: once the reader is gone the command ends, no traceback."""
    proc = spawn(topic_settings, "events")
    assert proc.stdout is not None
    _read_line(proc, topic_settings, "piped")
    proc.stdout.close()  # what `head -1` does after its line
    deadline = time.monotonic() + 60
    with PaymentProducer(topic_settings) as producer:
        while proc.poll() is None and time.monotonic() < deadline:
            producer.send(_event("more"))
            producer.flush(10)
            time.sleep(0.5)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.wait(10) == 141
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err


def test_stack_logs_follow_stops_cleanly_on_sigterm(tmp_path: Path, spawn: Any) -> None:
    """`stack logs -f` ends with exit 0 on SIGTERM instead of dying mid-line."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "kafka-1.log").write_text("first line\n")
    proc = spawn(Settings(), "stack", "logs", "kafka", "-f", "--state-dir", str(tmp_path))
    assert proc.stdout is not None
    assert proc.stdout.readline() == "first line\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, "")


def test_produce_stops_sending_on_sigterm_and_reports_what_it_sent(
    topic_settings: Settings, spawn: Any
) -> None:
    """`produce --count N` on SIGTERM stops sending; every event it sent is delivered and
    printed, and the summary says how many of N: the topic holds exactly those."""
    count = 300_000
    proc = spawn(
        topic_settings,
        "produce",
        "--user",
        "bulk",
        "--amount",
        "1.00",
        "--currency",
        "PLN",
        "--method",
        "blik",
        "--count",
        str(count),
    )
    consumer = Consumer({"bootstrap.servers": topic_settings.bootstrap_servers, "group.id": "x"})
    partitions = [TopicPartition(topic_settings.topic, p) for p in range(3)]

    def on_topic() -> int:
        try:
            return sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions)
        except KafkaException:
            return 0  # a leader not elected yet (the topic is brand new): nothing on it yet

    deadline = time.monotonic() + 120
    while on_topic() == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = re.search(rf"Stopped by SIGTERM: sent (\d+) of {count} events", err)
    assert summary is not None, err
    sent = int(summary[1])
    assert 0 < sent < count
    assert len(out.splitlines()) == sent
    assert on_topic() == sent
    consumer.close()
