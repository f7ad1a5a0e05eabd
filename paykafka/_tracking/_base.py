"""What every tracker shell shares and that is not I/O: options, the core, decoding, verdicts.

Like httpx's ``BaseClient``: ``PaymentTracker`` (threads) and an asyncio tracker subclass
:class:`TrackerBase` and only add the reading, handling and committing, so the decisions
(:mod:`._core`) and their side effects (logging, counting) exist once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import attrs

from paykafka._errors import ConfigError, DecodeError
from paykafka._event import PaymentEvent
from paykafka._exactly_once import AsyncInbox, Inbox, InboxOutcome
from paykafka._observability import Telemetry, telemetry_for
from paykafka._observability._telemetry import STATISTICS_INTERVAL_MS
from paykafka._registry import RegistryClient
from paykafka._schema import PaymentSchema, require_agreement
from paykafka._security import SecurityWatch
from paykafka._serde import EventDeserializer
from paykafka._settings import Settings, client_kafka_options
from paykafka._tracking._core import Policy, TrackerCore, Verdict, Work

__all__ = ["Decoded", "TrackedEvent", "TrackerBase"]

log = logging.getLogger("paykafka.tracker")

# Seconds without any partition before a tracker checks for plaintext-against-TLS.
_DIAGNOSE_AFTER = 2.0

#: What a shell keeps in ``Work.value`` once a record is decoded: (schema id, event).
Decoded = tuple[int, PaymentEvent]


@attrs.frozen
class TrackedEvent:
    """An event with where it was read from."""

    event: PaymentEvent
    topic: str
    partition: int
    offset: int
    key: str | None
    schema_id: int
    #: When the broker appended the record (UTC), if it says.
    appended_at: datetime | None

    @classmethod
    def of(cls, work: Work[Any], decoded: Decoded) -> TrackedEvent:
        """The tracked event for a handed-out record and its decoded value."""
        msg = work.record
        key = msg.key()
        ts_type, ts = msg.timestamp()
        return cls(
            event=decoded[1],
            topic=work.topic,
            partition=work.partition,
            offset=work.offset,
            key=key.decode("utf-8", "replace") if key is not None else None,
            schema_id=decoded[0],
            appended_at=datetime.fromtimestamp(ts / 1000, UTC) if ts_type and ts > 0 else None,
        )


class TrackerBase:
    """Options, the core and the decisions' bookkeeping shared by every tracker shell.

    ``from_beginning``: a partition for which the group has *no committed offset* is read
    from its first record (like ``kafka-console-consumer --from-beginning``); a committed
    offset is always honoured, so a new member of a running group never replays what the group
    already handled. Without it, such a partition starts where ``auto.offset.reset`` says
    (``earliest`` in paykafka's consumer settings, so in practice the same unless overridden).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        registry: RegistryClient | None = None,
        schema: PaymentSchema | None = None,
        from_beginning: bool = False,
        dead_letters: bool = True,
        handler_retries: int = 3,
        retry_backoff: float = 0.5,
        concurrency: int = 1,
        max_buffered: int | None = None,
        kafka_options: Mapping[str, Any] | None = None,
        kafka_overrides: dict[str, Any] | None = None,
        inbox: Inbox | AsyncInbox | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        #: Traces and metrics, or ``None`` (the usual case: one ``is None`` test per record).
        self._telemetry = telemetry_for(self.settings, telemetry)
        self._inbox = inbox
        # A refused login, TLS failure or missing ACL stops the tracker (never retried).
        self._watch = SecurityWatch(self.settings, operation="READ")
        self._started_at = time.monotonic()
        self._diagnosed = False
        self._old_warned_at = float("-inf")
        self._old_records = 0
        self._registry = registry
        self._owns_registry = registry is None
        self._schema = schema
        self._from_beginning = from_beginning
        self._overrides = client_kafka_options(kafka_options, kafka_overrides, type(self).__name__)
        try:
            self.policy = Policy(
                concurrency=concurrency,
                max_buffered=max_buffered or max(2000, 4 * concurrency),
                handler_retries=handler_retries,
                retry_backoff=retry_backoff,
                dead_letters=dead_letters,
                commit_interval=self.settings.commit_interval,
                # A fast handler drains a full buffer in moments: pause only when it does
                # not, because a pause makes librdkafka drop what it had fetched ahead.
                pause_after=0.5,
            )
        except ValueError as exc:
            raise ConfigError(
                f"{type(self).__name__}: {exc} (concurrency and max_buffered must be >= 1, "
                "handler_retries and retry_backoff >= 0)"
            ) from None
        self._core: TrackerCore[Any] = TrackerCore(self.policy)
        self._init_shell()

    def _init_shell(self) -> None:
        """A shell's own state (its consumer, locks...), set up at the end of ``__init__``."""

    @property
    def handled(self) -> int:
        """Events handled (acknowledged) so far."""
        return self._core.handled_count

    @property
    def dead_lettered(self) -> int:
        """Records sent to the dead-letter topic so far."""
        return self._core.dead_lettered_count

    def _check_access(self) -> None:
        """Raise a refused login or TLS failure; and if no partition came after a while,
        check once whether this plaintext client is talking to a TLS listener."""
        self._watch.check()
        if (
            not self._diagnosed
            and not self._core.assignment
            and time.monotonic() - self._started_at > _DIAGNOSE_AFTER
        ):
            self._diagnosed = True
            self._watch.diagnose()

    def _refused(self, err: Any) -> bool:
        """Feed a client error to the security watch; True when it was a refusal (logged once,
        raised by the next :meth:`_check_access`)."""
        first = self._watch.error is None
        if self._watch.observe(err):
            if first:  # librdkafka repeats it on every reconnect: one line is enough
                log.error("tracker refused: %s", self._watch.error)
            return True
        return False

    @property
    def duplicates(self) -> int:
        """Redelivered payments the inbox found applied before and skipped (with an inbox)."""
        return self._core.duplicate_count

    def _check_age(self, work: Work[Any]) -> None:
        """Warn (at most once a minute) about records older than the inbox's window: their
        inbox rows may have been pruned, so a redelivery of them could be applied again."""
        inbox = self._inbox
        if inbox is None:
            return
        ts_type, ts = work.record.timestamp()
        if not ts_type or ts <= 0:
            return
        now = time.time()
        if now - ts / 1000 <= inbox.window.total_seconds():
            return
        self._old_records += 1
        if time.monotonic() - self._old_warned_at >= 60.0:
            self._old_warned_at = time.monotonic()
            log.warning(
                "%s[%d]@%d is older than the inbox window (%s; %d such record(s) so far): its "
                "inbox row may be pruned, so a redelivery could apply it twice. Keep the window "
                "longer than the topic's retention plus the longest dead-letter replay delay",
                work.topic,
                work.partition,
                work.offset,
                inbox.window,
                self._old_records,
            )

    def _settle_outcome(
        self, work: Work[Any], outcome: InboxOutcome, *, stopping: bool = False
    ) -> Verdict | None:
        """Tell the core what the inbox did when it did not apply the record; the verdict for a
        conflict (the shell dead-letters or raises), None otherwise. ``APPLIED`` is reported by
        the shell like any handled record. A shell with threads holds its lock around this."""
        core = self._core
        if outcome is InboxOutcome.APPLIED:
            return None
        if outcome is InboxOutcome.DUPLICATE:
            core.duplicate(work)
            log.debug(
                "%s[%d]@%d was applied before: skipped", work.topic, work.partition, work.offset
            )
            return None
        log.warning(
            "%s[%d]@%d reuses a payment id applied before with other content: not applied",
            work.topic,
            work.partition,
            work.offset,
        )
        return core.rejected(work, stopping=stopping)

    def _prepare(self, schema: PaymentSchema) -> tuple[EventDeserializer, dict[str, Any]]:
        """The start-up both shells share before their consumer exists: the schema must agree
        with ``PaymentEvent``, the decoder reads writer schemas through the registry, and the
        consumer config says whether partitions are handed over one by one."""
        require_agreement(schema)
        if self._registry is None:
            self._registry = RegistryClient(self.settings)
        decoder = EventDeserializer(schema, self._registry.schema_by_id)
        conf = self._consumer_config(error_cb=self._on_error, on_commit=self._on_commit)
        self._incremental = self._incremental_protocol(conf)
        return decoder, conf

    def _on_error(self, err: Any) -> None:
        """librdkafka's error callback (each shell reacts in its own way)."""
        raise NotImplementedError

    def _on_commit(self, err: Any, partitions: list[Any]) -> None:
        """librdkafka's commit callback (each shell reacts in its own way)."""
        raise NotImplementedError

    def _consumer_config(self, **library: Any) -> dict[str, Any]:
        """The consumer settings every shell uses: offsets are committed by the shell, only
        up to the handled prefix the core computes, never by librdkafka on its own."""
        telemetry = self._telemetry
        if telemetry is not None and telemetry.wants_statistics:
            # Lag for the metrics comes from librdkafka's statistics, not from admin calls.
            group, topic, core = self.settings.group_id, self.settings.topic, self._core

            def on_statistics(stats: str) -> None:
                telemetry.statistics(group, stats)
                # Sampled with the statistics, not per record: a gauge needs no more.
                telemetry.in_flight(topic, group, core.in_flight)

            library["stats_cb"] = on_statistics
            if "statistics.interval.ms" not in self._overrides:
                library["statistics.interval.ms"] = STATISTICS_INTERVAL_MS
        conf = self.settings.consumer_config(
            **{"enable.partition.eof": True, "enable.auto.commit": False},
            **library,
            **self._overrides,
        )
        if self._from_beginning:
            conf["auto.offset.reset"] = "earliest"
        return conf

    @staticmethod
    def _log_decode_verdict(work: Work[Any], exc: DecodeError, verdict: Verdict) -> None:
        if verdict is Verdict.RETRY:
            log.warning(
                "cannot decode %s[%d]@%d yet (%s); retrying, the record is kept",
                work.topic,
                work.partition,
                work.offset,
                exc,
            )

    @staticmethod
    def _log_unavailable_verdict(work: Work[Any], exc: BaseException, verdict: Verdict) -> None:
        if verdict is Verdict.RETRY:
            log.warning(
                "cannot apply %s[%d]@%d yet (%s); retrying, the record is kept",
                work.topic,
                work.partition,
                work.offset,
                exc,
            )

    @staticmethod
    def _incremental_protocol(conf: Mapping[str, Any]) -> bool:
        """Whether the group protocol hands partitions over one by one (incremental assign):
        the cooperative assignors, or the new consumer group protocol."""
        return (
            "cooperative" in str(conf.get("partition.assignment.strategy", ""))
            or str(conf.get("group.protocol", "")).lower() == "consumer"
        )

    def _observed(
        self, work: Work[Any], event: PaymentEvent, counted: bool = False
    ) -> AbstractContextManager[object]:
        """Around one handler call when telemetry is on: the ``process`` span (continuing the
        sender's trace from the record's headers) and the handler-duration timer."""
        assert self._telemetry is not None
        return self._telemetry.handling(
            work.topic, self.settings.group_id, event, work.record, counted
        )

    def _traced_call(
        self, handler: Callable[[PaymentEvent], object], work: Work[Any], event: PaymentEvent
    ) -> None:
        """``handler(event)`` inside its span; counted as handled when it returns."""
        assert self._telemetry is not None
        self._telemetry.call(handler, event, work.topic, self.settings.group_id, work.record)

    def _count_handled(self, work: Work[Any]) -> None:
        if self._telemetry is not None:
            self._telemetry.handled(work.topic, self.settings.group_id)

    def _count_dead_letter(self, work: Work[Any], reason: str) -> None:
        if self._telemetry is not None:
            self._telemetry.dead_lettered(work.topic, self.settings.group_id, reason)

    def _log_handler_verdict(self, work: Work[Any], exc: BaseException, verdict: Verdict) -> None:
        if verdict is Verdict.RETRY and self._telemetry is not None:
            self._telemetry.retried(work.topic, self.settings.group_id)
        if verdict is Verdict.RETRY:
            log.warning(
                "handler failed on %s[%d]@%d (attempt %d): %r; retrying",
                work.topic,
                work.partition,
                work.offset,
                work.attempts,
                exc,
            )
        elif verdict is Verdict.RELEASED:
            log.info(
                "handler failed on %s[%d]@%d while stopping: %r; left unacknowledged",
                work.topic,
                work.partition,
                work.offset,
                exc,
            )
