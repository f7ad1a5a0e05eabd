"""A stand-in for confluent's ``Producer``, for unit tests of the producer's pure logic.

It keeps librdkafka's shape where the logic depends on it: ``produce`` queues, delivery
reports are served only by ``poll`` / ``flush``, an exception raised by a report callback
ends that poll and propagates (librdkafka yields, the rest stay queued), and ``purge``
turns queued events into ``_PURGE_QUEUE`` reports. Tests decide what the broker answers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any


class FakeKafkaError:
    """confluent's ``KafkaError`` surface: ``name()``, ``str()``, ``retriable()``, ``fatal()``."""

    def __init__(self, code: str, text: str, *, retriable: bool = False) -> None:
        self._code, self._text, self._retriable = code, text, retriable

    def name(self) -> str:
        return self._code

    def str(self) -> str:
        return self._text

    def retriable(self) -> bool:
        return self._retriable

    def fatal(self) -> bool:
        return False


#: What librdkafka reports for an event whose message.timeout.ms passed with no broker.
TIMED_OUT = FakeKafkaError("_MSG_TIMED_OUT", "Local: Message timed out")
#: What librdkafka reports for a record the broker refuses for good.
TOO_LARGE = FakeKafkaError("MSG_SIZE_TOO_LARGE", "Broker: Message size too large")


class FakeMessage:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def latency(self) -> float:
        """librdkafka's produce-to-acknowledgement time; a fake broker answers at once."""
        return 0.001


Report = tuple[Callable[[Any, Any], None], Any, Any]


class FakeProducer:
    """Queued events wait in ``queued`` until the test acks or fails them."""

    def __init__(self, conf: dict[str, Any], *, capacity: int = 100_000) -> None:
        self.conf = conf
        self.capacity = capacity
        self.queued: deque[Callable[[Any, Any], None]] = deque()
        self.reports: deque[Report] = deque()
        self.polls = 0
        self.poll_timeouts: list[float] = []
        self.flush_timeouts: list[float] = []
        self.produced: list[tuple[str, bytes, bytes]] = []
        self.served_per_poll: list[int] = []
        self.purge_reports = True
        self.purge_code = "_PURGE_QUEUE"
        self._offset = 0
        self.headers: list[list[tuple[str, str | bytes | None]] | None] = []

    # -- confluent's surface -------------------------------------------------------------

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        *,
        on_delivery: Callable[[Any, Any], None],
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        if len(self.queued) >= self.capacity:
            raise BufferError("Local: Queue full")
        self.produced.append((topic, value, key))
        self.headers.append(headers)
        self.queued.append(on_delivery)

    def poll(self, timeout: float = -1) -> int:
        self.polls += 1
        self.poll_timeouts.append(timeout)
        return self._serve()

    def flush(self, timeout: float = -1) -> int:
        self.flush_timeouts.append(timeout)
        self._serve()
        if self.queued and timeout > 0:
            time.sleep(timeout)  # librdkafka waits for the broker that never answers
        return len(self.queued)

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        purged = FakeKafkaError(self.purge_code, "Local: Purged")
        while self.queued:
            callback = self.queued.popleft()
            if self.purge_reports:
                self.reports.append((callback, purged, None))

    def __len__(self) -> int:
        return len(self.queued) + len(self.reports)

    # -- the broker's answers, chosen by the test ----------------------------------------

    def ack(self, n: int | None = None) -> None:
        for _ in range(len(self.queued) if n is None else n):
            callback = self.queued.popleft()
            self.reports.append((callback, None, FakeMessage(0, self._offset)))
            self._offset += 1

    def fail(self, err: FakeKafkaError, n: int | None = None) -> None:
        for _ in range(len(self.queued) if n is None else n):
            self.reports.append((self.queued.popleft(), err, None))

    def _serve(self) -> int:
        served = 0
        try:
            while self.reports:
                callback, err, msg = self.reports.popleft()
                served += 1
                callback(err, msg)  # an exception ends the poll, like rd_kafka_yield
        finally:
            self.served_per_poll.append(served)
        return served
