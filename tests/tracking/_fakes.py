"""A fake confluent-kafka consumer, decoder and dead-letter writer for the tracker's shell.

The fake consumer keeps per-partition logs, positions, pauses and committed offsets, and runs
rebalance callbacks the way librdkafka does: inside ``consume()`` / ``poll()``, in the calling
thread. It speaks both ways of committing (stored offsets, explicit offsets) so the same tests
judge any tracker built on confluent-kafka.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from confluent_kafka import OFFSET_INVALID, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from paykafka import DecodeError, DecodeReason, PaymentEvent

T = "payments"


class FakeError:
    def __init__(self, code: int) -> None:
        self._code = code

    def code(self) -> int:
        return self._code

    def fatal(self) -> bool:
        return False

    def name(self) -> builtins.str:
        return builtins.str(self._code)

    def str(self) -> builtins.str:
        return f"fake error {self._code}"


class Msg:
    """A fake record: ``value`` is a payment id as bytes, or ``b"poison"``."""

    def __init__(
        self, partition: int, offset: int, key: bytes | None, value: bytes | None, err: Any = None
    ) -> None:
        self._p, self._o, self._k, self._v, self._err = partition, offset, key, value, err

    def topic(self) -> str:
        return T

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def error(self) -> Any:
        return self._err

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def headers(self) -> list[tuple[str, bytes]]:
        return []


class FakeConsumer:
    """Partitions ``0..n-1`` of ``T``, all assigned to this one member at the first call."""

    instances: list[FakeConsumer] = []  # noqa: RUF012 - the test reads the one just built
    partitions = 2

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.logs: dict[int, list[Msg]] = {p: [] for p in range(self.partitions)}
        self.visible: dict[int, int] = dict.fromkeys(range(self.partitions), 0)
        self.position: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self.stored: dict[int, int] = {}
        self.paused: set[int] = set()
        self.assigned: set[int] = set()
        self.assigned_offsets: list[int] = []
        self.eof_sent: set[int] = set()
        self.calls = 0
        self.commits: list[dict[int, int]] = []
        self.pending: deque[Callable[[], None]] = deque()
        self.arrivals: list[tuple[int, int, Msg]] = []  # (after calls, partition, msg)
        self.callbacks: dict[str, Any] = {}
        self.closed = False
        self.lock = threading.Lock()
        self.cooperative = "cooperative" in str(conf.get("partition.assignment.strategy", ""))
        FakeConsumer.instances.append(self)

    # -- the test's side -------------------------------------------------------------------

    def add(self, partition: int, key: str | None, value: bytes | None, *, after: int = 0) -> None:
        """Append a record, visible now or after ``after`` more consume()/poll() calls."""
        with self.lock:
            log = self.logs[partition]
            msg = Msg(partition, len(log), key.encode() if key else None, value)
            log.append(msg)
            if after:
                self.arrivals.append((self.calls + after, partition, msg))
            else:
                self.visible[partition] = len(log)

    def revoke(self, partitions: list[int]) -> None:
        """Revoke at the next consume()/poll() (cooperative: just these; eager: all)."""

        def run() -> None:
            tps = [TopicPartition(T, p) for p in partitions]
            self.callbacks["on_revoke"](self, tps)

        self.pending.append(run)

    def lose(self, partitions: list[int]) -> None:
        def run() -> None:
            tps = [TopicPartition(T, p) for p in partitions]
            cb = self.callbacks.get("on_lost") or self.callbacks["on_revoke"]
            cb(self, tps)

        self.pending.append(run)

    def reassign(self, partitions: list[int]) -> None:
        def run() -> None:
            self.callbacks["on_assign"](self, [TopicPartition(T, p) for p in partitions])

        self.pending.append(run)

    # -- confluent-kafka's side --------------------------------------------------------------

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks
        self.reassign(list(range(self.partitions)))

    def _tick(self) -> None:
        self.calls += 1
        with self.lock:
            due = [a for a in self.arrivals if a[0] <= self.calls]
            self.arrivals = [a for a in self.arrivals if a[0] > self.calls]
            for _, p, msg in due:
                self.visible[p] = max(self.visible[p], msg.offset() + 1)
        while self.pending:
            self.pending.popleft()()

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Msg]:
        self._tick()
        out: list[Msg] = []
        with self.lock:
            for p in sorted(self.assigned - self.paused):
                pos = self.position.setdefault(p, self.committed.get(p, 0))
                end = self.visible[p]
                while pos < end and len(out) < num_messages:
                    out.append(self.logs[p][pos])
                    pos += 1
                    self.eof_sent.discard(p)
                self.position[p] = pos
                # The end of the log, not of what has arrived: librdkafka learns the end
                # from the broker's high watermark.
                at_end = pos == len(self.logs[p])
                if at_end and p not in self.eof_sent and len(out) < num_messages:
                    self.eof_sent.add(p)
                    out.append(Msg(p, pos, None, None, FakeError(RdKafkaError._PARTITION_EOF)))
        if not out and timeout > 0:
            time.sleep(min(timeout, 0.01))
        return out

    def poll(self, timeout: float = -1) -> Msg | None:
        got = self.consume(1, timeout)
        return got[0] if got else None

    def assign(self, partitions: list[TopicPartition]) -> None:
        if self.cooperative:
            raise RuntimeError("cooperative protocol: use incremental_assign()")
        self.assigned = {tp.partition for tp in partitions}
        self._fresh(partitions)

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned |= {tp.partition for tp in partitions}
        self._fresh(partitions)

    def _fresh(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assigned_offsets.append(tp.offset)
            start = self.committed.get(tp.partition, 0) if tp.offset == OFFSET_INVALID else 0
            self.position[tp.partition] = start
            self.paused.discard(tp.partition)
            self.eof_sent.discard(tp.partition)

    def unassign(self) -> None:
        if self.cooperative:
            raise RuntimeError("cooperative protocol: use incremental_unassign()")
        self.assigned = set()

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        self.assigned -= {tp.partition for tp in partitions}

    def pause(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.paused.add(tp.partition)
            # librdkafka drops what it fetched ahead; it fetches again from the position.

    def resume(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.paused.discard(tp.partition)

    def seek(self, tp: TopicPartition) -> None:
        self.position[tp.partition] = tp.offset

    def store_offsets(self, message: Msg | None = None, offsets: Any = None) -> None:
        if message is not None:
            self.stored[message.partition()] = message.offset() + 1
        for tp in offsets or []:
            self.stored[tp.partition] = tp.offset

    def commit(self, message: Any = None, offsets: Any = None, asynchronous: bool = True) -> None:
        if offsets is not None:
            done = {tp.partition: tp.offset for tp in offsets}
        else:
            done = dict(self.stored)
        self.committed.update(done)
        self.commits.append(done)

    def close(self) -> None:
        if self.assigned:
            self.callbacks["on_revoke"](self, [TopicPartition(T, p) for p in self.assigned])
        self.closed = True


class FakeDecoder:
    """Decodes ``b"<uuid>"`` into a payment with that id; ``b"poison"`` is bad data."""

    def __init__(self) -> None:
        self.outage = False

    def decode(self, data: bytes | None) -> tuple[int, PaymentEvent]:
        if self.outage:
            raise DecodeError(DecodeReason.UNKNOWN_SCHEMA_ID, "registry out", retriable=True)
        if data is None or data.startswith(b"poison"):
            raise DecodeError(DecodeReason.NOT_CONFLUENT_FRAMING, "not a payment")
        return 1, payment(data.decode())


def payment(user: str) -> PaymentEvent:
    return PaymentEvent(user=user, amount=Decimal("1.00"), currency="PLN", method="blik")


class FakeDeadLetters:
    written: list[tuple[int, int, str]] = []  # noqa: RUF012 - reset by the fixture

    def __init__(self, settings: Any) -> None:
        pass

    def write(self, msg: Msg, *, reason: str, **_: Any) -> None:
        FakeDeadLetters.written.append((msg.partition(), msg.offset(), reason))

    def close(self) -> None:
        pass
