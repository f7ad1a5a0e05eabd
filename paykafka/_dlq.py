"""Dead letters: records a tracker could not decode or handle, kept instead of dropped.

A dead letter is the original record (key, value and headers byte for byte) on the dead-letter
topic, with ``paykafka.*`` headers saying why it failed and where it came from, so it can be
inspected and replayed to the main topic once the cause is fixed. The tracker only moves past
a record after its dead letter is acknowledged by the broker.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs
from confluent_kafka import Producer

from paykafka._errors import KafkaError
from paykafka._settings import Settings

__all__ = ["HEADER_PREFIX", "DeadLetter", "DeadLetterWriter"]

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
            source_partition=int(ours.get(H_PARTITION, "-1")),
            source_offset=int(ours.get(H_OFFSET, "-1")),
            schema_id=int(schema_id) if schema_id and schema_id.isdigit() else None,
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
        self._producer = Producer(
            settings.producer_config()
        )

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
