"""The README's recipes on the running stack: after "add a field" and "add a payment method" in
a copy of the project, the copy's examples send and track the new field and method, and the
code as it was before the change (this checkout) reads the same events side by side."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
from _recipes import add_optional_field, add_payment_method, copy_project, release, run_in

from paykafka import Settings

from .test_examples import env_for, run_example


def test_new_and_old_code_read_the_evolved_events_side_by_side(
    topic_settings: Settings, tmp_path: Path
) -> None:
    """New producer.py sets channel and bank_card_token; new tracker.py shows them; the old
    tracker reads the same event with the method as `other`, the default."""
    project = copy_project(tmp_path / "project")
    add_optional_field(project)
    add_payment_method(project)
    release(project)
    env = env_for(topic_settings)
    env.pop("PAYKAFKA_SCHEMA_PATH", None)
    args = ["--user", "ala", "--amount", "10", "--currency", "PLN"]
    sent = run_in(
        project,
        str(project / "examples" / "producer.py"),
        *args,
        "--method",
        "bank_card_token",
        "--set",
        "channel=web",
        env=env,
    )
    assert sent.returncode == 0, sent.stderr
    event = json.loads(sent.stdout.splitlines()[0].removeprefix("✅ Delivered "))
    assert (event["method"], event["channel"]) == ("bank_card_token", "web")

    tracked = run_in(project, str(project / "examples" / "tracker.py"), "--until-end", env=env)
    assert tracked.returncode == 0, tracked.stderr
    assert "via bank_card_token from ala" in tracked.stdout

    # Another group: the new tracker committed the event for its own.
    old_group = attrs.evolve(topic_settings, group_id=f"{topic_settings.group_id}-old-code")
    old = run_example("tracker.py", old_group, "--until-end")
    assert any("via other from ala" in line for line in old), old
