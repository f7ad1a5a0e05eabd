"""Tracking payments: one pure core and thin shells that do the I/O.

:mod:`paykafka._tracking._core` decides (what to hand out, retry, dead-letter, commit, pause);
the shells read and write Kafka around it. See the core module's docstring for its API.
"""

from paykafka._tracking._base import TrackedEvent, TrackerBase
from paykafka._tracking._core import Policy, RecordLike, TrackerCore, Verdict, Work
from paykafka._tracking._sync import PaymentTracker

__all__ = [
    "PaymentTracker",
    "Policy",
    "RecordLike",
    "TrackedEvent",
    "TrackerBase",
    "TrackerCore",
    "Verdict",
    "Work",
]
