"""Dead letters: records a tracker could not decode or handle, kept instead of dropped.

A dead letter is the original record (key, value and headers byte for byte) on the dead-letter
topic, with ``paykafka.*`` headers saying why it failed and where it came from, so it can be
inspected and replayed to the main topic once the cause is fixed. The tracker only moves past
a record after its dead letter is acknowledged by the broker.

Replays are safe by default: reasons that fail the same way whatever is fixed (the bytes are not
a payment) are refused unless forced; a replayed record carries its ``paykafka.attempts`` and
``paykafka.origin.*`` headers, so when it is dead-lettered again the new letter counts every
attempt and still names the offset where the record was first written; and which letters were
replayed is recorded on the replay group's committed offsets (their metadata), never by copying
letters, so no letter is ever duplicated in the dead-letter topic.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from paykafka._errors import (
    BrokerUnavailableError,
    ConfigError,
    DecodeReason,
    KafkaError,
    PayKafkaError,
    SecurityError,
)
from paykafka._security import SecurityWatch, client_creation_error, wait_for_metadata
from paykafka._settings import Settings

__all__ = [
    "HEADER_PREFIX",
    "REPLAYABLE_REASONS",
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
H_ORIGIN_TOPIC = "paykafka.origin.topic"
H_ORIGIN_PARTITION = "paykafka.origin.partition"
H_ORIGIN_OFFSET = "paykafka.origin.offset"

#: Reasons a replay can cure: the schema gets registered, the registry comes back, the handler
#: is fixed. Every other reason (no Confluent framing, corrupt Avro, a schema that is not a
#: payment, invalid values) is about the bytes themselves, which a replay sends back unchanged:
#: they would only be dead-lettered again, so replay refuses them unless forced.
REPLAYABLE_REASONS = frozenset(
    {
        "handler_failed",
        DecodeReason.UNKNOWN_SCHEMA_ID.value,
        DecodeReason.REGISTRY_UNAVAILABLE.value,
    }
)
# Kafka's default offset.metadata.max.bytes is 4096; stay clear of it.
_MAX_METADATA = 3500

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
    #: Tries so far, over every replay (handler calls, or one per failed decode).
    attempts: int = 1
    #: Where the record was first written, before any replay: (topic, partition, offset).
    #: Equal to the source for a letter that was never replayed.
    origin: tuple[str, int, int] | None = None

    @property
    def origin_key(self) -> tuple[str, int, int]:
        """The first position of the record: letters with the same key are the same record."""
        return self.origin or (self.source_topic, self.source_partition, self.source_offset)

    @property
    def replayable(self) -> bool:
        """Whether a replay can succeed (see :data:`REPLAYABLE_REASONS`)."""
        return self.reason in REPLAYABLE_REASONS

    @classmethod
    def from_message(cls, msg: Any) -> DeadLetter:
        """Rebuild a dead letter from a record read off the dead-letter topic."""
        raw: Headers = msg.headers() or []
        ours = _ours(raw)
        schema_id = ours.get(H_SCHEMA_ID)
        origin = _origin(ours)
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
            attempts=_int_or(ours.get(H_ATTEMPTS), 1),
            origin=origin,
        )

    def replay_headers(self) -> list[tuple[str, str | bytes | None]]:
        """Headers of the record written back: the original ones, plus the attempts so far and
        the origin, so a letter written for it later continues the count and the link."""
        topic, partition, offset = self.origin_key
        return [
            *self.headers,
            (H_ATTEMPTS, str(self.attempts).encode()),
            (H_ORIGIN_TOPIC, topic.encode()),
            (H_ORIGIN_PARTITION, str(partition).encode()),
            (H_ORIGIN_OFFSET, str(offset).encode()),
        ]


def _ours(raw: Headers) -> dict[str, str]:
    """The ``paykafka.*`` headers of a record, as text."""
    return {k: v.decode("utf-8", "replace") for k, v in raw if k.startswith(HEADER_PREFIX) and v}


def _origin(ours: Mapping[str, str]) -> tuple[str, int, int] | None:
    topic = ours.get(H_ORIGIN_TOPIC)
    partition = _int_or(ours.get(H_ORIGIN_PARTITION), None)
    offset = _int_or(ours.get(H_ORIGIN_OFFSET), None)
    if not topic or partition is None or offset is None:
        return None
    return topic, partition, offset


class DeadLetterWriter:
    """Writes dead letters synchronously: ``write`` returns only once the broker has them."""

    def __init__(self, settings: Settings, *, timeout: float = 30.0) -> None:
        self._topic = settings.dlq_topic
        self._timeout = timeout
        self._watch = SecurityWatch(settings, topic=settings.dlq_topic, operation="WRITE")
        try:
            self._producer = Producer(settings.producer_config(error_cb=self._watch.observe))
        except KafkaException as exc:
            raise client_creation_error(settings, exc) from None

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
        if outcome and outcome[0] is not None:
            refused = self._watch.classify(outcome[0])
            if refused is not None:
                raise refused
        self._watch.check()
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
    which writes dead letters inside its transaction. A record written back by a replay
    carries its earlier attempts and its origin: they are added to and kept, so the letter
    says how often the record failed in all and where it was first written.
    """
    original: Headers = msg.headers() or []
    headers: list[tuple[str, str | bytes | None]] = [
        (k, v) for k, v in original if not k.startswith(HEADER_PREFIX)
    ]
    ours = _ours(original)
    earlier = max(_int_or(ours.get(H_ATTEMPTS), 0), 0)
    topic, partition, offset = _origin(ours) or (
        str(msg.topic()),
        msg.partition(),
        msg.offset(),
    )
    headers += [
        (H_REASON, reason.encode()),
        (H_MESSAGE, message[:2000].encode()),
        (H_TOPIC, str(msg.topic()).encode()),
        (H_PARTITION, str(msg.partition()).encode()),
        (H_OFFSET, str(msg.offset()).encode()),
        (H_ATTEMPTS, str(earlier + attempts).encode()),
        (H_ORIGIN_TOPIC, topic.encode()),
        (H_ORIGIN_PARTITION, str(partition).encode()),
        (H_ORIGIN_OFFSET, str(offset).encode()),
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
    #: Pending dead letters left pending (other reasons, refused or deferred ones).
    kept: int
    #: Replayed count per source topic.
    by_topic: Mapping[str, int]
    dry_run: bool
    #: The letters replayed (with ``dry_run``: that would be), in dead-letter-topic order.
    letters: tuple[DeadLetter, ...] = ()
    #: Of ``kept``: letters whose reason cannot succeed when replayed, per reason
    #: (replay them with ``force=True`` once the cause is understood).
    refused: Mapping[str, int] = attrs.field(factory=dict)
    #: Of ``kept``: letters left for the next run (a stop was asked for, or too many letters
    #: scattered among pending ones to record at once).
    deferred: int = 0
    #: Older letters of a record that has a newer letter, marked done without being replayed.
    superseded: int = 0
    #: The replay stopped early because ``should_stop()`` said so.
    stopped: bool = False


@attrs.frozen
class _Partition:
    """The replay group's view of one dead-letter partition."""

    #: First offset not known to be done (the group's committed offset, or the start).
    start: int
    end: int
    #: Offsets at or after ``start`` already done (replayed or superseded).
    done: frozenset[int]


def _encode_done(offsets: Sequence[int]) -> str:
    """Done offsets as compact ranges for the commit metadata: ``{"done": [[5, 9], [12, 12]]}``."""
    ranges: list[list[int]] = []
    for o in sorted(offsets):
        if ranges and o == ranges[-1][1] + 1:
            ranges[-1][1] = o
        else:
            ranges.append([o, o])
    return json.dumps({"done": ranges}, separators=(",", ":")) if ranges else ""


def _decode_done(metadata: str | None) -> frozenset[int]:
    if not metadata:
        return frozenset()
    try:
        ranges = json.loads(metadata)["done"]
        return frozenset(o for low, high in ranges for o in range(int(low), int(high) + 1))
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring unreadable replay metadata %r", metadata[:100])
        return frozenset()


def _position(letter: DeadLetter) -> tuple[int, int]:
    return letter.dlq_partition or 0, letter.dlq_offset or 0


def _latest_per_origin(
    letters: Sequence[DeadLetter],
) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """(the newest letter of each record, the older ones it supersedes), in topic order."""
    latest: dict[tuple[str, int, int], DeadLetter] = {}
    for letter in letters:  # in (partition, offset) order: a later one replaces an earlier
        latest[letter.origin_key] = letter
    keep = {id(letter) for letter in latest.values()}
    return (
        [letter for letter in letters if id(letter) in keep],
        [letter for letter in letters if id(letter) not in keep],
    )


class DeadLetterQueue:
    """The dead-letter topic as an operator uses it: list what is pending, replay it.

    A dead letter is *pending* until a replay has passed it. The replay group
    (:func:`replay_group`) commits, per partition, the offset of the first letter still
    pending, with the letters after it that are done listed in the commit's metadata; it
    commits only after every replayed record was acknowledged by the broker, so a replay is
    never repeated, and one that fails half-way is repeated whole (at least once, like
    everything else here). Letters are never copied to keep them pending.
    """

    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self.topic = settings.dlq_topic
        self.group = replay_group(settings)
        self._watch = SecurityWatch(
            settings, topic=settings.dlq_topic, operation="READ", group=self.group
        )

    def letters(self, *, include_replayed: bool = False) -> list[DeadLetter]:
        """The pending dead letters (all that the topic still holds with ``include_replayed``).

        Pending means not replayed yet, and only the newest letter of a record that was
        dead-lettered again after a replay (an older one is superseded).
        """
        consumer = self._consumer()
        try:
            read, parts = self._read(consumer, include_replayed)
        finally:
            consumer.close()
        if include_replayed:
            return read
        return _latest_per_origin(self._undone(read, parts))[0]

    def replay(
        self,
        *,
        reason: str | None = None,
        dry_run: bool = False,
        force: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ReplayResult:
        """Produce pending dead letters (of ``reason``, or all) back to their source topic
        with their original key, value and headers; then mark them replayed.

        Letters whose reason cannot succeed (not in :data:`REPLAYABLE_REASONS`) are kept
        pending unless ``force``; asking for such a ``reason`` without ``force`` raises
        :class:`ConfigError`. ``should_stop`` is asked once reading is done (reading is bounded
        by the topic's end) and between letters: once it says yes, what was already written back
        is acknowledged and marked, the rest stays pending.
        """
        if reason is not None and reason not in REPLAYABLE_REASONS and not force:
            raise ConfigError(
                f"dead letters of reason {reason} cannot succeed when replayed: their bytes "
                "are sent back unchanged and would be dead-lettered again. Inspect them "
                "(paykafka dlq list --json has each value), and add --force only if something "
                "outside the record changed. Replayable reasons: "
                + ", ".join(sorted(REPLAYABLE_REASONS))
            )
        consumer = self._consumer()
        try:
            read, parts = self._read(consumer, include_replayed=False)
            pending, superseded = _latest_per_origin(self._undone(read, parts))
            matching = [
                letter
                for letter in pending
                if (reason is None or letter.reason == reason) and letter.source_topic
            ]
            chosen = [letter for letter in matching if force or letter.replayable]
            refused: dict[str, int] = {}
            for letter in matching:
                if not (force or letter.replayable):
                    refused[letter.reason] = refused.get(letter.reason, 0) + 1
            fits = self._fitting(parts, pending, chosen, superseded)
            deferred = len(chosen) - fits
            chosen = chosen[:fits]
            stopped = False
            if not dry_run and chosen:
                stopped = should_stop()
                written = 0 if stopped else self._produce_all(chosen, should_stop)
                stopped = stopped or written < len(chosen)
                deferred += len(chosen) - written
                chosen = chosen[:written]
            if not dry_run and (chosen or superseded):
                consumer.commit(
                    offsets=self._commits(parts, pending, chosen, superseded), asynchronous=False
                )
        except KafkaException as exc:
            raise self._error(exc, "replaying dead letters") from None
        finally:
            consumer.close()
        by_topic: dict[str, int] = {}
        for letter in chosen:
            by_topic[letter.source_topic] = by_topic.get(letter.source_topic, 0) + 1
        result = ReplayResult(
            replayed=len(chosen),
            kept=len(pending) - len(chosen),
            by_topic=by_topic,
            dry_run=dry_run,
            letters=tuple(chosen),
            refused=refused,
            deferred=deferred,
            superseded=len(superseded),
            stopped=stopped,
        )
        if not dry_run:
            log.info(
                "replayed %d dead letter(s) from %s, kept %d",
                result.replayed,
                self.topic,
                result.kept,
            )
        return result

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _undone(read: Sequence[DeadLetter], parts: Mapping[int, _Partition]) -> list[DeadLetter]:
        return [
            letter
            for letter in read
            if (p := parts.get(letter.dlq_partition or 0)) is None
            or (letter.dlq_offset or 0) not in p.done
        ]

    def _commits(
        self,
        parts: Mapping[int, _Partition],
        pending: Sequence[DeadLetter],
        replayed: Sequence[DeadLetter],
        superseded: Sequence[DeadLetter],
    ) -> list[TopicPartition]:
        """Per partition touched: the first letter still pending, and the done ones after it."""
        done_now = {_position(letter) for letter in [*replayed, *superseded]}
        commits = []
        for p, part in sorted(parts.items()):
            if not any(q == p for q, _ in done_now):
                continue
            still = [o for q, o in map(_position, pending) if q == p and (q, o) not in done_now]
            start = min(still, default=part.end)
            done = [o for o in part.done | {o for q, o in done_now if q == p} if o >= start]
            commits.append(TopicPartition(self.topic, p, start, metadata=_encode_done(done)))
        return commits

    def _fitting(
        self,
        parts: Mapping[int, _Partition],
        pending: Sequence[DeadLetter],
        chosen: Sequence[DeadLetter],
        superseded: Sequence[DeadLetter],
    ) -> int:
        """How many of ``chosen`` (a prefix) can be marked done within the metadata limit."""

        def fits(k: int) -> bool:
            commits = self._commits(parts, pending, chosen[:k], superseded)
            return all(len(tp.metadata or "") <= _MAX_METADATA for tp in commits)

        if fits(len(chosen)):
            return len(chosen)
        low, high = 0, len(chosen)  # fits(low) assumed; binary search for the largest
        while low < high:
            mid = (low + high + 1) // 2
            if fits(mid):
                low = mid
            else:
                high = mid - 1
        log.warning(
            "replaying %d of %d dead letters now: the rest are scattered among letters that "
            "stay pending; run the replay again for them",
            low,
            len(chosen),
        )
        return low

    def _consumer(self) -> Consumer:
        try:
            return Consumer(
                self.settings.consumer_config(
                    error_cb=self._watch.observe,
                    **{
                        "group.id": self.group,
                        "enable.auto.commit": False,
                        "auto.offset.reset": "earliest",
                    },
                )
            )
        except KafkaException as exc:
            raise client_creation_error(self.settings, exc) from None

    def _partitions(self, consumer: Consumer) -> list[int]:
        """The DLQ topic's partitions; none when it was never created. A refused DESCRIBE
        is an AuthorizationError, not an empty queue."""
        metadata = wait_for_metadata(consumer, self._watch, self.timeout, topic=self.topic)
        found = metadata.topics.get(self.topic)
        if found is not None and found.error is not None:
            refused = self._watch.classify(found.error, operation="DESCRIBE")
            if refused is not None:
                raise refused
        if found is None or found.error is not None:
            return []
        return sorted(found.partitions)

    def _read(
        self,
        consumer: Consumer,
        include_replayed: bool,
    ) -> tuple[list[DeadLetter], dict[int, _Partition]]:
        """Every letter from the start point to the end as it was when reading began."""
        try:
            parts = self._partitions(consumer)
            if not parts:
                return [], {}  # no dead letter was ever written
            committed = {
                tp.partition: tp
                for tp in consumer.committed(
                    [TopicPartition(self.topic, p) for p in parts], timeout=self.timeout
                )
            }
            state: dict[int, _Partition] = {}
            for p in parts:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=self.timeout
                )
                mark = committed.get(p)
                at = mark.offset if mark is not None else -1
                start = low if include_replayed else max(low, at)
                done = _decode_done(mark.metadata if mark is not None and at >= 0 else None)
                if start < high:
                    state[p] = _Partition(start=start, end=high, done=done)
            if not state:
                return [], {}
            consumer.assign([TopicPartition(self.topic, p, s.start) for p, s in state.items()])
            read: list[DeadLetter] = []
            pending = set(state)
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
                        if tp.offset >= state[tp.partition].end
                    }
                    continue
                if msg.error() is not None:
                    refused = self._watch.classify(msg.error())
                    if refused is not None:
                        raise refused
                    log.warning("reading %s: %s", self.topic, msg.error().str())
                    continue
                p = msg.partition()
                if p in state and msg.offset() < state[p].end:
                    read.append(DeadLetter.from_message(msg))
                if p in pending and msg.offset() >= state[p].end - 1:
                    pending.discard(p)
        except KafkaException as exc:
            raise self._error(exc, f"reading {self.topic}") from None
        read.sort(key=_position)
        return read, state

    def _produce_all(self, letters: Sequence[DeadLetter], should_stop: Callable[[], bool]) -> int:
        """Write ``letters`` back (until ``should_stop``); how many were written and acked."""
        producer = Producer(self.settings.producer_config(error_cb=self._watch.observe))
        failed: list[str] = []
        refusals: list[SecurityError] = []

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                failed.append(err.str())
                refused = self._watch.classify(err, resource=msg.topic(), operation="WRITE")
                if refused is not None:
                    refusals.append(refused)

        sent = 0
        for letter in letters:
            if should_stop():
                break
            while True:
                try:
                    producer.produce(
                        letter.source_topic,
                        letter.value,
                        letter.key,
                        headers=letter.replay_headers(),
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.1)  # back-pressure: wait for the queue to drain
            sent += 1
        left = producer.flush(self.timeout * 3)
        if refusals:
            raise refusals[0]
        if left or failed:
            why = failed[0] if failed else f"{left} still queued after {self.timeout * 3:.0f}s"
            raise KafkaError(
                f"{left + len(failed)} of {sent} dead letter(s) were not written back "
                f"({why}); nothing was marked replayed, so run the replay again (records "
                "already written back will be written again: trackers are at-least-once)",
                retriable=True,
            )
        return sent

    def _error(self, exc: KafkaException, what: str) -> PayKafkaError:
        err = exc.args[0]
        refused = self._watch.classify(err) or self._watch.error
        if refused is not None:
            return refused
        if err.name() in _UNREACHABLE:
            return BrokerUnavailableError(
                f"no Kafka broker answered at {self.settings.bootstrap_servers} while {what} "
                f"({err.str()}); start one (paykafka stack up) or set PAYKAFKA_BOOTSTRAP_SERVERS",
                code=err.name(),
            )
        return KafkaError(f"{what} failed: {err.str()}", code=err.name(), retriable=err.retriable())
