"""Running the paykafka CLI in-process against a test's own topic, for the CLI tests."""

from __future__ import annotations

import pytest

from paykafka import Settings
from paykafka._cli import main


def connection_flags(settings: Settings, *, group: bool = True) -> list[str]:
    """The flags that point a command at ``settings``' broker, registry, topic and group
    (``group=False`` for ``produce``, which has no consumer group)."""
    flags = [
        "--bootstrap-servers",
        settings.bootstrap_servers,
        "--registry-url",
        settings.registry_url,
        "--topic",
        settings.topic,
    ]
    return [*flags, "--group", settings.group_id] if group else flags


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
