"""Dead letters: records a tracker could not decode or handle, kept instead of dropped.

A dead letter is the original record (key, value and headers byte for byte) on the dead-letter
topic, with ``paykafka.*`` headers saying why it failed and where it came from, so it can be
inspected and replayed to the main topic once the cause is fixed. The tracker only moves past
a record after its dead letter is acknowledged by the broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import attrs
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from paykafka._errors import BrokerUnavailableError, KafkaError
from paykafka._settings import Settings

__all__ = [
    "HEADER_PREFIX",
    "DeadLetter",
    "DeadLetterQueue",
    "DeadLetterWriter",
    "ReplayResult",
    "dead_letter_headers",
    "replay_group",
]

log = logging.getLogger(__name__)

HEADER_PREFIX = "paykafka."
H_REASON = "paykafka.error.reason"
H_MESSAGE = "paykafka.error.message"
H_TOPIC = "paykafka.source.topic"
H_PARTITION = "paykafka.source.partition"
H_OFFSET = "paykafka.source.offset"
H_SCHEMA_ID = "paykafka.schema.id"
H_ATTEMPTS = "paykafka.attempts"

Headers = Sequence[tuple[str, bytes | None]]
_T = TypeVar("_T")


@attrs.frozen
class DeadLetter:
    """One record on the dead-letter topic, with the story of why it is there."""

    reason: str
    message: str
    source_topic: str
    source_partition: int
    source_offset: int
    schema_id: int | None
    key: bytes | None = attrs.field(repr=False)
    value: bytes | None = attrs.field(repr=False)
    headers: tuple[tuple[str, bytes | None], ...] = attrs.field(repr=False, default=())
    #: Where the dead letter itself is stored (partition, offset) on the dead-letter topic.
    dlq_partition: int | None = None
    dlq_offset: int | None = None

    @classmethod
    def from_message(cls, msg: Any) -> DeadLetter:
        """Rebuild a dead letter from a record read off the dead-letter topic."""
        raw: Headers = msg.headers() or []
        ours = {
            k: v.decode("utf-8", "replace") for k, v in raw if k.startswith(HEADER_PREFIX) and v
        }
        schema_id = ours.get(H_SCHEMA_ID)
        return cls(
            reason=ours.get(H_REASON, "unknown"),
            message=ours.get(H_MESSAGE, ""),
            source_topic=ours.get(H_TOPIC, ""),
            source_partition=_int_or(ours.get(H_PARTITION), -1),
            source_offset=_int_or(ours.get(H_OFFSET), -1),
            schema_id=_int_or(schema_id, None),
            key=msg.key(),
            value=msg.value(),
            headers=tuple((k, v) for k, v in raw if not k.startswith(HEADER_PREFIX)),
            dlq_partition=msg.partition(),
            dlq_offset=msg.offset(),
        )


class DeadLetterWriter:
    """Writes dead letters synchronously: ``write`` returns only once the broker has them."""

    def __init__(self, settings: Settings, *, timeout: float = 30.0) -> None:
        self._topic = settings.dlq_topic
        self._timeout = timeout
        self._producer = Producer(settings.producer_config())

    @property
    def topic(self) -> str:
        """The dead-letter topic."""
        return self._topic

    def write(
        self,
        msg: Any,
        *,
        reason: str,
        message: str,
        schema_id: int | None = None,
        attempts: int = 1,
    ) -> None:
        """Copy ``msg`` to the dead-letter topic with why-and-where headers; wait for the ack."""
        headers = dead_letter_headers(
            msg, reason=reason, message=message, schema_id=schema_id, attempts=attempts
        )
        outcome: list[Any] = []
        self._producer.produce(
            self._topic,
            msg.value(),
            msg.key(),
            headers=headers,
            on_delivery=lambda err, _m: outcome.append(err),
        )
        self._producer.flush(self._timeout)
        if not outcome or outcome[0] is not None:
            why = "no acknowledgement in time" if not outcome else outcome[0].str()
            raise KafkaError(
                f"could not dead-letter {msg.topic()}[{msg.partition()}]@{msg.offset()} to "
                f"{self._topic}: {why}; the record was not skipped and will be retried",
                retriable=True,
            )
        log.warning(
            "dead-lettered %s[%d]@%d to %s: %s",
            msg.topic(),
            msg.partition(),
            msg.offset(),
            self._topic,
            reason,
            extra={"reason": reason, "offset": msg.offset(), "partition": msg.partition()},
        )

    def close(self) -> None:
        """Flush anything left (nothing normally: every write already waited)."""
        self._producer.flush(self._timeout)


def dead_letter_headers(
    msg: Any,
    *,
    reason: str,
    message: str,
    schema_id: int | None = None,
    attempts: int = 1,
) -> list[tuple[str, str | bytes | None]]:
    """The headers of ``msg``'s dead letter: its own, then why it failed and where it was.

    One definition for every writer: the tracker's synchronous writer and the processor,
    which writes dead letters inside its transaction.
    """
    original: Headers = msg.headers() or []
    headers: list[tuple[str, str | bytes | None]] = [
        (k, v) for k, v in original if not k.startswith(HEADER_PREFIX)
    ]
    headers += [
        (H_REASON, reason.encode()),
        (H_MESSAGE, message[:2000].encode()),
        (H_TOPIC, str(msg.topic()).encode()),
        (H_PARTITION, str(msg.partition()).encode()),
        (H_OFFSET, str(msg.offset()).encode()),
        (H_ATTEMPTS, str(attempts).encode()),
    ]
    if schema_id is not None:
        headers.append((H_SCHEMA_ID, str(schema_id).encode()))
    return headers


def _int_or(text: str | None, default: _T) -> int | _T:
    """A header's integer, or ``default``: a hand-written dead letter must not break listing."""
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:  # "abc", and also "²", which str.isdigit() would let through
        return default


# -- reading and replaying --------------------------------------------------------------------

# librdkafka codes meaning "nobody answered", as opposed to "the broker said no".
_UNREACHABLE = frozenset({"_TRANSPORT", "_TIMED_OUT", "_ALL_BROKERS_DOWN", "_RESOLVE"})


def replay_group(settings: Settings) -> str:
    """The consumer group whose committed offsets mark dead letters already replayed."""
    return f"{settings.group_id}.dlq-replay"


@attrs.frozen
class ReplayResult:
    """What a replay did (or, with ``dry_run``, would do)."""

    #: Dead letters produced back to their source topic.
    replayed: int
    #: Pending dead letters of other reasons, left pending.
    kept: int
    #: Replayed count per source topic.
    by_topic: Mapping[str, int]
    dry_run: bool


class DeadLetterQueue:
    """The dead-letter topic as an operator uses it: list what is pending, replay it.

    A dead letter is *pending* until a replay has passed it: the replay group
    (:func:`replay_group`) commits its offsets only after every replayed record was
    acknowledged by the broker, so a replay is never repeated, and one that fails half-way is
    repeated whole (at least once, like everything else here). ``replay(reason=R)`` appends
    the letters of other reasons that the group's offsets move past to the end of the
    dead-letter topic again, so each stays pending exactly once.
    """

    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self.topic = settings.dlq_topic
        self.group = replay_group(settings)

    def letters(self, *, include_replayed: bool = False) -> list[DeadLetter]:
        """The pending dead letters (all that the topic still holds with ``include_replayed``)."""
        consumer = self._consumer()
        try:
            return [letter for letter, _ in self._read(consumer, include_replayed)[0]]
        finally:
            consumer.close()

    def replay(self, *, reason: str | None = None, dry_run: bool = False) -> ReplayResult:
        """Produce pending dead letters (of ``reason``, or all) back to their source topic
        with their original key, value and headers; then mark them replayed."""
        consumer = self._consumer()
        try:
            read, _ends = self._read(consumer, include_replayed=False)
            picked = [
                (reason is None or letter.reason == reason) and bool(letter.source_topic)
                for letter, _ in read
            ]
            chosen = [item for item, pick in zip(read, picked, strict=True) if pick]
            by_topic: dict[str, int] = {}
            for letter, _ in chosen:
                by_topic[letter.source_topic] = by_topic.get(letter.source_topic, 0) + 1
            result = ReplayResult(
                replayed=len(chosen),
                kept=len(read) - len(chosen),
                by_topic=by_topic,
                dry_run=dry_run,
            )
            if dry_run or not chosen:
                return result
            # Per partition, the group's offset moves just past the last replayed letter; the
            # letters of other reasons it passes are appended again so they stay pending.
            last: dict[int, int] = {}
            for letter, _ in chosen:
                part, off = letter.dlq_partition or 0, letter.dlq_offset or 0
                last[part] = max(last.get(part, -1), off)
            moved = [
                (letter, raw)
                for (letter, raw), pick in zip(read, picked, strict=True)
                if not pick and (letter.dlq_offset or 0) < last.get(letter.dlq_partition or 0, -1)
            ]
            self._produce_all(
                [(letter.source_topic, letter, list(letter.headers)) for letter, _ in chosen]
                + [(self.topic, letter, list(raw)) for letter, raw in moved]
            )
            consumer.commit(
                offsets=[TopicPartition(self.topic, p, off + 1) for p, off in last.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            raise self._error(exc, "replaying dead letters") from None
        finally:
            consumer.close()
        log.info(
            "replayed %d dead letter(s) from %s, kept %d", result.replayed, self.topic, result.kept
        )
        return result

    # -- internals -------------------------------------------------------------------------

    def _consumer(self) -> Consumer:
        return Consumer(
            self.settings.consumer_config(
                **{
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                }
            )
        )

    def _read(
        self, consumer: Consumer, include_replayed: bool
    ) -> tuple[list[tuple[DeadLetter, Headers]], dict[int, int]]:
        """Every letter from the start point to the end as it was when reading began."""
        try:
            metadata = consumer.list_topics(self.topic, timeout=self.timeout)
            found = metadata.topics.get(self.topic)
            if found is None or found.error is not None or not found.partitions:
                return [], {}  # no dead letter was ever written
            parts = sorted(found.partitions)
            committed = {
                tp.partition: tp.offset
                for tp in consumer.committed(
                    [TopicPartition(self.topic, p) for p in parts], timeout=self.timeout
                )
            }
            starts: dict[int, int] = {}
            ends: dict[int, int] = {}
            for p in parts:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=self.timeout
                )
                start = low if include_replayed else max(low, committed.get(p, -1))
                if start < high:
                    starts[p], ends[p] = start, high
            if not starts:
                return [], {}
            consumer.assign([TopicPartition(self.topic, p, o) for p, o in starts.items()])
            read: list[tuple[DeadLetter, Headers]] = []
            pending = set(starts)
            deadline = time.monotonic() + self.timeout * 3
            while pending:
                if time.monotonic() > deadline:
                    raise KafkaError(
                        f"reading {self.topic} did not reach its end within "
                        f"{self.timeout * 3:.0f}s (partitions {sorted(pending)} unfinished); "
                        "is the broker overloaded? Try again",
                        retriable=True,
                    )
                msg: Any = consumer.poll(0.5)
                if msg is None:
                    pending -= {
                        tp.partition
                        for tp in consumer.position(
                            [TopicPartition(self.topic, p) for p in pending]
                        )
                        if tp.offset >= ends[tp.partition]
                    }
                    continue
                if msg.error() is not None:
                    log.warning("reading %s: %s", self.topic, msg.error().str())
                    continue
                p = msg.partition()
                if p in ends and msg.offset() < ends[p]:
                    read.append((DeadLetter.from_message(msg), tuple(msg.headers() or ())))
                if p in pending and msg.offset() >= ends[p] - 1:
                    pending.discard(p)
        except KafkaException as exc:
            raise self._error(exc, f"reading {self.topic}") from None
        read.sort(key=lambda item: (item[0].dlq_partition or 0, item[0].dlq_offset or 0))
        return read, ends

    def _produce_all(self, records: Sequence[tuple[str, DeadLetter, list[Any]]]) -> None:
        producer = Producer(self.settings.producer_config())
        failed: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(err.str())

        for topic, letter, headers in records:
            while True:
                try:
                    producer.produce(
                        topic,
                        letter.value,
                        letter.key,
                        headers=headers or None,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.1)  # back-pressure: wait for the queue to drain
        left = producer.flush(self.timeout * 3)
        if left or failed:
            why = failed[0] if failed else f"{left} still queued after {self.timeout * 3:.0f}s"
            raise KafkaError(
                f"{left + len(failed)} of {len(records)} dead letter(s) were not written back "
                f"({why}); nothing was marked replayed, so run the replay again (records "
                "already written back will be written again: trackers are at-least-once)",
                retriable=True,
            )

    def _error(self, exc: KafkaException, what: str) -> KafkaError:
        err = exc.args[0]
        if err.name() in _UNREACHABLE:
            return BrokerUnavailableError(
                f"no Kafka broker answered at {self.settings.bootstrap_servers} while {what} "
                f"({err.str()}); start one (paykafka stack up) or set PAYKAFKA_BOOTSTRAP_SERVERS",
                code=err.name(),
            )
        return KafkaError(f"{what} failed: {err.str()}", code=err.name(), retriable=err.retriable())
