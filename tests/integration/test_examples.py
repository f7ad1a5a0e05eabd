"""The two examples, run as a user runs them, print the tutorial's lines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from _outputs import read_ids

from paykafka import Settings

ROOT = Path(__file__).resolve().parents[2]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00"


def env_for(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PAYKAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        PAYKAFKA_REGISTRY_URL=settings.registry_url,
        PAYKAFKA_TOPIC=settings.topic,
        PAYKAFKA_GROUP_ID=settings.group_id,
    )
    return env


def run_example(name: str, settings: Settings, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stderr == "", done.stderr
    return done.stdout.splitlines()


def test_producer_prints_the_tutorial_lines(topic_settings: Settings) -> None:
    """producer.py prints the JSON line, then topic, partition and offset, per event."""
    lines = run_example("producer.py", topic_settings, "--count", "2")
    assert len(lines) == 4
    json_line = (
        rf'✅ Delivered {{"payment_id": "{UUID}", "user": "marek", "amount": "249.99", '
        rf'"currency": "PLN", "method": "credit_card", "timestamp": "{TS}"}}'
    )
    where = rf"✅ Delivered to {re.escape(topic_settings.topic)} : partition \d+ : at offset \d+"
    assert re.fullmatch(json_line, lines[0]), lines[0]
    assert re.fullmatch(where, lines[1]), lines[1]
    assert re.fullmatch(json_line, lines[2])
    assert re.fullmatch(where, lines[3])


def test_tracker_prints_what_the_producer_sent(topic_settings: Settings) -> None:
    """tracker.py prints the subscribe line, then one 💳 line per event, with the flags given."""
    run_example(
        "producer.py",
        topic_settings,
        "--user",
        "anna",
        "--amount",
        "12.5",
        "--currency",
        "EUR",
        "--method",
        "blik",
    )
    lines = run_example("tracker.py", topic_settings, "--until-end")
    assert lines[0] == f"🟢 Consumer is running and subscribed to {topic_settings.topic} topic"
    assert len(lines) == 2
    assert re.fullmatch(rf"💳 Payment: 12\.50 EUR via blik from anna at {TS}", lines[1]), lines[1]


def test_tracker_follows_until_ctrl_c_and_commits(topic_settings: Settings) -> None:
    """A following tracker prints new events live, stops on SIGINT, and commits them."""
    tracker = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "tracker.py")],
        env=env_for(topic_settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tracker.stdout is not None
        assert tracker.stdout.readline().startswith("🟢 Consumer is running")
        time.sleep(1)
        run_example("producer.py", topic_settings, "--user", "live")
        line = tracker.stdout.readline()
        assert line.startswith("💳 Payment: 249.99 PLN via credit_card from live at ")
        tracker.send_signal(signal.SIGINT)
        assert tracker.wait(timeout=30) == 0
    finally:
        tracker.kill()
        tracker.wait()
    again = run_example("tracker.py", topic_settings, "--until-end")
    assert again == [f"🟢 Consumer is running and subscribed to {topic_settings.topic} topic"]


def test_router_routes_by_threshold_and_says_how_many(topic_settings: Settings) -> None:
    """router.py routes the producer's 249.99 payments below --threshold 1000 to the cleared
    topic and above --threshold 100 to the review topic, and prints what it did."""
    run_example("producer.py", topic_settings, "--count", "3")
    review, cleared = f"{topic_settings.topic}.review", f"{topic_settings.topic}.cleared"
    flags = ["--review", review, "--cleared", cleared, "--until-end"]
    lines = run_example("router.py", topic_settings, *flags, "--group", "r1")
    assert lines == [
        f"🔀 Routing {topic_settings.topic} -> {review} / {cleared} exactly once",
        "✅ Routed 3 payments (0 dead-lettered)",
    ]
    assert sum(read_ids(topic_settings, [cleared], isolation="read_committed").values()) == 3
    assert not read_ids(topic_settings, [review], isolation="read_committed")
    lines = run_example("router.py", topic_settings, *flags, "--group", "r2", "--threshold", "100")
    assert lines[-1] == "✅ Routed 3 payments (0 dead-lettered)"
    assert sum(read_ids(topic_settings, [review], isolation="read_committed").values()) == 3
