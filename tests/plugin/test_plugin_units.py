"""The plugin's pure parts: its registration and the names it gives each test's topic."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from paykafka.testing import _slug


def test_plugin_is_registered_for_pytest() -> None:
    """Installing paykafka registers paykafka.testing under the pytest11 entry point."""
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("paykafka") == "paykafka.testing"


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("test_refund", "test_refund"),
        ("test_amounts[1.00-EUR]", "test_amounts-1.00-EUR"),
        ("test_" + "x" * 60, "test_" + "x" * 35),
        ("[]", "test"),
    ],
)
def test_topic_names_are_kafka_safe(name: str, slug: str) -> None:
    """A test's name becomes a topic fragment of Kafka's legal characters, 40 at most."""
    assert _slug(name) == slug
