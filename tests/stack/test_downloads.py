"""A download that Maven cannot do fails with one line naming the artifact and Maven's reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from paykafka import StackError
from paykafka._stack._artifacts import _maven
from paykafka._stack._versions import MAVEN_DEPENDENCY_PLUGIN

pytestmark = pytest.mark.stack


def test_unknown_artifact_names_artifact_and_maven_reason(tmp_path: Path) -> None:
    """Asking Maven Central for an artifact that does not exist is a retriable StackError."""
    coordinates = "org.example.paykafka:no-such-artifact:0.0.0"
    with pytest.raises(StackError) as caught:
        _maven(
            coordinates,
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={coordinates}",
            f"-DoutputDirectory={tmp_path}",
        )
    message = str(caught.value)
    assert message.startswith(f"could not download {coordinates} with Maven (exit 1): ")
    assert "no-such-artifact" in message.split(": ", 1)[1]
    assert "\n" not in message
    assert caught.value.retriable
