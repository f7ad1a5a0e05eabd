"""Where ``PaymentTracker`` lived before the tracking subpackage; kept for old imports."""

from paykafka._tracking._base import TrackedEvent
from paykafka._tracking._sync import PaymentTracker

__all__ = ["PaymentTracker", "TrackedEvent"]
