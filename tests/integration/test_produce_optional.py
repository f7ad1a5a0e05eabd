"""`paykafka produce --set NAME=VALUE` reaches every optional field of the schema."""

from __future__ import annotations

import json

import pytest

from paykafka import Settings

from ._cli import connection_flags, run_cli


def test_produce_sets_an_optional_field_and_refuses_an_unknown_one(
    topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The note arrives on the event; a name PaymentEvent lacks is a usage error, not a send."""
    f = connection_flags(topic_settings, group=False)
    base = ["produce", "--user", "ala", "--amount", "10.00", "--currency", "PLN"]
    code, out, err = run_cli(capsys, *base, "--method", "blik", "--set", "note=rent", "--json", *f)
    assert code == 0, err
    assert json.loads(out)["event"]["note"] == "rent"
    code, _out, err = run_cli(capsys, *base, "--method", "blik", "--set", "zz_nope=1", *f)
    assert code == 2
    assert "NAME=VALUE" in err
