"""`paykafka schema delete`: undo a bad registration, never silently orphaning events."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from _events import make_events

from paykafka import PaymentProducer, RegistryClient, Settings
from paykafka._cli import main

from ._cli import connection_flags, run_cli

ROOT = Path(__file__).resolve().parents[2]
V1 = ROOT / "schemas" / "history" / "payment.v1.avsc"
V2 = ROOT / "schemas" / "history" / "payment.v2.avsc"


def test_delete_refuses_while_events_use_the_version_then_deletes_soft_and_hard(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Events written with a version block its deletion (with their count) unless --force; a
    version no event uses goes soft, then --permanent removes it for good."""
    f = connection_flags(topic_settings)
    for path in (V1, V2):
        assert main(["schema", "register", str(path), *f]) == 0
    with PaymentProducer(attrs.evolve(topic_settings, schema_path=V1)) as producer:
        for event in make_events(2):
            producer.send(event).result(30)

    code, _out, err = run_cli(capsys, "schema", "delete", "1", *f)
    assert code == 1
    assert f"2 event(s) on {topic_settings.topic} were written with version 1" in err
    assert "--force" in err

    code, out, _err = run_cli(capsys, "schema", "delete", "2", *f)
    assert code == 0
    assert "version 2" in out
    assert "soft" in out
    with RegistryClient(topic_settings) as registry:
        assert registry.versions(topic_settings.subject) == [1]
    code, out, _err = run_cli(capsys, "schema", "delete", "2", "--permanent", *f)
    assert code == 0
    assert "permanently" in out

    code, out, _err = run_cli(capsys, "schema", "delete", "1", "--force", *f)
    assert code == 0
    assert "2 event(s)" in out
    code, _out, err = run_cli(capsys, "schema", "delete", "7", *f)
    assert code == 2
    assert "has no version 7" in err
