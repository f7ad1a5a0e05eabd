"""Everything in tests/integration needs the real stack."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder as an integration test."""
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
