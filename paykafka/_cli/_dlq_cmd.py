"""The dead-letter commands (issue 6)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add this module's commands to the top-level parser (being written)."""
    del sub
    _ = argparse
