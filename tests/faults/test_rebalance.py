"""Trackers in one group scale out, crash and stop while payments flow: none lost.

30,000 payments go to a 6-partition topic at a steady rate while tracker processes join one
group (2 -> 3 -> 4), one is SIGKILLed and one stopped with SIGTERM; every payment id must be
handled at least once, and duplicates stay about one commit interval of the killed member's
traffic. Runs on a one-broker stack of its own (Kafka 24292, registry 24281; controller and
management 1000 above), under the same host lock as the other fault stacks.

The slow-handler test proves a handler slower than ``max.poll.interval.ms`` keeps its
partitions: the event is handled once, never by a second member at the same time.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from _events import make_events

from paykafka import PaymentEvent, PaymentProducer, PaymentTracker
from paykafka._stack import Stack

from ._support import ROOT, Report, fresh_settings, member_env

EVENTS = 30_000
RATE = 750  # per second: 40 s of traffic
PARTITIONS = 6


def _scale_out_and_crash(stack: Stack, tmp: Path, strategy: str, report: Report) -> None:
    settings = fresh_settings(stack, partitions=PARTITIONS)
    sent = make_events(EVENTS, users=500)
    env = member_env(settings)
    members: list[subprocess.Popen[bytes]] = []
    outs: list[Path] = []

    def join() -> subprocess.Popen[bytes]:
        out = tmp / f"member-{len(members)}.txt"
        outs.append(out)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults._member", str(out), strategy],
            cwd=ROOT,
            env=env,
        )
        members.append(proc)
        return proc

    # What happens when, in events sent (the rate is steady, so also in seconds / RATE).
    plan: dict[int, Callable[[], object]] = {
        0: lambda: (join(), join()),
        6_000: join,  # 2 -> 3
        12_000: join,  # 3 -> 4
        18_000: lambda: members[0].send_signal(signal.SIGKILL),
        24_000: lambda: members[1].send_signal(signal.SIGTERM),
    }
    try:
        with PaymentProducer(settings) as producer:
            began = time.monotonic()
            for i, event in enumerate(sent):
                if i in plan:
                    plan[i]()
                producer.send(event)
                if i % 250 == 0:
                    producer.flush()
                    ahead = began + i / RATE - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
        ids = {e.payment_id for e in sent}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            seen = _seen(outs)
            if ids <= seen.keys():
                break
            time.sleep(1.0)
        for proc in members[2:]:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(30) for proc in members]
    finally:
        for proc in members:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    seen = _seen(outs)
    handled = sum(seen.values())
    lost = len(ids - seen.keys())
    duplicates = handled - len(seen.keys() & ids)
    report(
        strategy=strategy,
        sent=EVENTS,
        handled=handled,
        lost=lost,
        duplicates=duplicates,
        members=len(members),
        exit_codes=codes,
        seconds=round(time.monotonic() - began, 1),
    )
    assert lost == 0
    assert codes[0] == -signal.SIGKILL
    assert codes[1:] == [0] * (len(members) - 1)  # SIGTERM is a clean stop
    # About one commit interval of the killed member's traffic, never the whole stream.
    assert duplicates < EVENTS // 10


def _seen(outs: list[Path]) -> Counter[uuid.UUID]:
    seen: Counter[uuid.UUID] = Counter()
    for out in outs:
        if out.exists():
            for line in out.read_text().splitlines():
                if len(line) == 36:  # a SIGKILL may cut the last line
                    seen[uuid.UUID(line)] += 1
    return seen


@pytest.mark.timeout(240)
def test_scale_out_sigkill_and_sigterm_lose_nothing_eager(
    group_stack: Stack, tmp_path: Path, report: Report
) -> None:
    """Eager assignor: 2 -> 3 -> 4 members, one SIGKILLed, one SIGTERMed: 0 lost."""
    _scale_out_and_crash(group_stack, tmp_path, "range,roundrobin", report)


@pytest.mark.timeout(240)
def test_scale_out_sigkill_and_sigterm_lose_nothing_cooperative(
    group_stack: Stack, tmp_path: Path, report: Report
) -> None:
    """Cooperative-sticky assignor, same scenario: 0 lost."""
    _scale_out_and_crash(group_stack, tmp_path, "cooperative-sticky", report)


@pytest.mark.timeout(180)
def test_a_handler_slower_than_max_poll_interval_keeps_its_partitions(
    group_stack: Stack, report: Report
) -> None:
    """A 12 s handler with max.poll.interval.ms at 7 s: the member stays, the event is
    handled once, no other member takes it over meanwhile."""
    settings = fresh_settings(group_stack, partitions=2)
    sent = make_events(200, users=20)
    overrides = {
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 7000,
    }
    seen: Counter[uuid.UUID] = Counter()
    lock = threading.Lock()
    slow = {sent[0].payment_id}
    errors: list[BaseException] = []

    def handle(event: PaymentEvent) -> None:
        with lock:
            seen[event.payment_id] += 1
            first = event.payment_id in slow
            slow.discard(event.payment_id)
        if first:
            time.sleep(12)

    trackers = [PaymentTracker(settings, kafka_options=overrides) for _ in range(2)]

    def run(tracker: PaymentTracker) -> None:
        try:
            with tracker:
                tracker.run(handle, handle_signals=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in trackers]
    for thread in threads:
        thread.start()
    # A stable group of two first: the only way to lose a partition now is to be expelled.
    deadline = time.monotonic() + 60
    while not all(len(t._core.assignment) == 1 for t in trackers):
        assert time.monotonic() < deadline, "the group never settled"
        time.sleep(0.2)
    with PaymentProducer(settings) as producer:
        for event in sent:
            producer.send(event)
    began = time.monotonic()
    ids = {e.payment_id for e in sent}
    while time.monotonic() - began < 60:
        with lock:
            if ids <= seen.keys() and not slow:
                break
        time.sleep(0.5)
    time.sleep(3)  # a member expelled now would hand the slow event to the other
    for tracker in trackers:
        tracker.stop()
    for thread in threads:
        thread.join(30)
    report(
        sent=len(sent),
        handled=sum(seen.values()),
        slow_event_handled=seen[sent[0].payment_id],
        lost=len(ids - seen.keys()),
        seconds=round(time.monotonic() - began, 1),
    )
    assert errors == []
    assert seen[sent[0].payment_id] == 1
    assert ids <= seen.keys()
    assert sum(seen.values()) == len(sent)
