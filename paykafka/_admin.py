"""Topics, partitions and offsets as an operator sees them: list, describe, create, lag, replay.

The CLI's ``topics``, ``describe``, ``create-topic``, ``events`` and ``lag`` are thin views over
this module, and :class:`~paykafka.PaymentProducer` calls :func:`ensure_topic` so the payments
topic exists before the first event. Results are frozen value objects, so the health reading
of a topic (the tutorial's ``Isr == Replicas``) is computed in one place and tested without a
broker.

Every broker call has a deadline: an unreachable cluster becomes a
:class:`~paykafka.BrokerUnavailableError` naming the bootstrap address after ``timeout``
seconds, instead of librdkafka retrying quietly forever.
"""

from __future__ import annotations

import concurrent.futures
import enum
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka import KafkaError as _RdKafkaError
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported, just not in __all__
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from paykafka._errors import (
    BrokerUnavailableError,
    ConfigError,
    DecodeError,
    KafkaError,
    RegistryUnavailableError,
    SecurityError,
    SubjectNotFoundError,
)
from paykafka._event import PaymentEvent
from paykafka._registry import RegistryClient
from paykafka._security import SecurityWatch, client_creation_error, wait_for_metadata
from paykafka._serde import EventDeserializer
from paykafka._settings import Settings

__all__ = [
    "IMPORTANT_CONFIGS",
    "GroupLag",
    "KafkaAdmin",
    "PartitionInfo",
    "PartitionLag",
    "RecordView",
    "SubjectStatus",
    "TopicConfig",
    "TopicDescription",
    "TopicHealth",
    "TopicInfo",
    "TopicReader",
    "describe_subject",
    "ensure_topic",
    "min_insync_for",
    "partition_health",
    "replication_for",
]

log = logging.getLogger(__name__)

#: The topic settings that decide whether payments are durable and how long they are kept.
IMPORTANT_CONFIGS = ("retention.ms", "min.insync.replicas", "cleanup.policy")

DEFAULT_TIMEOUT = 10.0

# librdkafka codes that mean "nobody answered", not "the broker said no".
_UNREACHABLE = frozenset({"_TRANSPORT", "_TIMED_OUT", "_ALL_BROKERS_DOWN", "_RESOLVE"})
_UNKNOWN_TOPIC = "UNKNOWN_TOPIC_OR_PART"
_TOPIC_EXISTS = "TOPIC_ALREADY_EXISTS"


# -- value objects -------------------------------------------------------------------------------


class TopicHealth(enum.StrEnum):
    """How a partition (or a whole topic, by its worst partition) stands.

    ``under-replicated`` is the tutorial's ``Isr < Replicas``: a copy is lagging or its broker
    is down; reads and writes still work while the ISR holds at least ``min.insync.replicas``.
    ``offline`` means no leader: nobody can read or write the partition.
    """

    HEALTHY = "healthy"
    UNDER_REPLICATED = "under-replicated"
    OFFLINE = "offline"


_SEVERITY = {TopicHealth.HEALTHY: 0, TopicHealth.UNDER_REPLICATED: 1, TopicHealth.OFFLINE: 2}


def partition_health(
    leader: int | None, replicas: Sequence[int], isr: Sequence[int]
) -> TopicHealth:
    """The tutorial's reading: ISR equal to the replicas is healthy, fewer is lagging."""
    if leader is None or leader < 0:
        return TopicHealth.OFFLINE
    if set(replicas) <= set(isr):
        return TopicHealth.HEALTHY
    return TopicHealth.UNDER_REPLICATED


def replication_for(wanted: int, brokers: int) -> int:
    """The replication factor a new topic can have: ``wanted``, capped at the live brokers.

    So the same default (3) gives durable topics on a real cluster and still works on a
    one-broker development stack.
    """
    return max(1, min(wanted, brokers))


def min_insync_for(replication_factor: int) -> int:
    """``min.insync.replicas`` for a new topic: one copy may be down without refusing writes.

    With ``acks=all`` (the producer's default) an event is acknowledged only once this many
    copies hold it; ``replication_factor - 1`` survives one broker loss with no data loss.
    """
    return max(1, replication_factor - 1)


@attrs.frozen
class TopicInfo:
    """One line of ``paykafka topics``."""

    name: str
    partitions: int
    replication_factor: int
    #: Kafka's own bookkeeping topics (``__consumer_offsets``...), not application data.
    internal: bool


@attrs.frozen
class PartitionInfo:
    """Where one partition lives: its leader, the brokers holding copies, those in sync."""

    partition: int
    #: Broker id handling reads and writes; ``None`` when the partition has no leader.
    leader: int | None
    replicas: tuple[int, ...]
    isr: tuple[int, ...]

    @property
    def health(self) -> TopicHealth:
        """See :class:`TopicHealth`."""
        return partition_health(self.leader, self.replicas, self.isr)

    @property
    def out_of_sync(self) -> tuple[int, ...]:
        """Replicas not in the ISR: the brokers that are lagging or down."""
        return tuple(r for r in self.replicas if r not in self.isr)


@attrs.frozen
class TopicConfig:
    """One topic setting and where its value comes from."""

    name: str
    value: str | None
    #: ``topic`` (set on this topic), ``broker`` (a broker-wide setting) or ``default``.
    source: str


@attrs.frozen
class TopicDescription:
    """``paykafka describe``: the tutorial's ``kafka-topics --describe``, with its reading."""

    name: str
    internal: bool
    partitions: tuple[PartitionInfo, ...]
    configs: tuple[TopicConfig, ...] = ()

    @property
    def partition_count(self) -> int:
        return len(self.partitions)

    @property
    def replication_factor(self) -> int:
        """Copies per partition (the largest replica set, as ``kafka-topics`` reports it)."""
        return max((len(p.replicas) for p in self.partitions), default=0)

    @property
    def health(self) -> TopicHealth:
        """The worst partition's health."""
        return max(
            (p.health for p in self.partitions),
            key=_SEVERITY.__getitem__,
            default=TopicHealth.HEALTHY,
        )

    @property
    def min_insync_replicas(self) -> int | None:
        value = self.config("min.insync.replicas")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def unwritable(self) -> tuple[PartitionInfo, ...]:
        """Partitions refusing ``acks=all`` writes: no leader, or fewer in sync than required."""
        need = self.min_insync_replicas or 1
        return tuple(
            p for p in self.partitions if p.health is TopicHealth.OFFLINE or len(p.isr) < need
        )

    def config(self, name: str) -> str | None:
        """The value of one topic setting, if it was fetched."""
        return next((c.value for c in self.configs if c.name == name), None)


@attrs.frozen
class PartitionLag:
    """How far a group is behind on one partition."""

    partition: int
    #: The group's committed offset (the next event it will read); ``None`` if never committed.
    committed: int | None
    #: Oldest offset still retained.
    start: int
    #: Offset the next event will get (the high watermark).
    end: int

    @property
    def lag(self) -> int:
        """Events retained but not yet read by the group.

        With no commit (or one older than what is retained) the group starts at the oldest
        retained event (``auto.offset.reset=earliest``), so all of those count as unread.
        """
        position = self.start if self.committed is None else max(self.committed, self.start)
        return max(0, self.end - position)


@attrs.frozen
class GroupLag:
    """``paykafka lag``: one group's position on one topic."""

    group: str
    topic: str
    partitions: tuple[PartitionLag, ...]

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def has_commits(self) -> bool:
        """Whether the group ever committed on this topic (a typo'd group name has not)."""
        return any(p.committed is not None for p in self.partitions)


@attrs.frozen
class SubjectStatus:
    """The registry side of a topic, as ``describe`` shows it.

    ``state`` is ``registered``, ``not_registered`` or ``unreachable``; the registry being down
    must not hide what the broker says about the topic, so it is a state, not an exception.
    """

    subject: str
    state: str
    version: int | None = None
    schema_id: int | None = None
    compatibility: str | None = None
    #: Whether ``compatibility`` is the registry-wide default rather than set on the subject.
    compatibility_is_global: bool = False
    error: str | None = None


@attrs.frozen
class RecordView:
    """One record as ``paykafka events`` shows it: decoded, or why it could not be."""

    partition: int
    offset: int
    key: str | None
    timestamp: datetime | None
    schema_id: int | None
    event: PaymentEvent | None
    error: DecodeError | None


# -- errors --------------------------------------------------------------------------------------


def _unreachable(settings: Settings, timeout: float, detail: str) -> BrokerUnavailableError:
    return BrokerUnavailableError(
        f"no Kafka broker answered at {settings.bootstrap_servers} within {timeout:g}s "
        f"({detail}); start one with `paykafka stack up` or point PAYKAFKA_BOOTSTRAP_SERVERS "
        "(--bootstrap-servers) at a running cluster",
        code="_TRANSPORT",
    )


def _unknown_topic(settings: Settings, topic: str) -> KafkaError:
    return KafkaError(
        f"topic {topic!r} does not exist on {settings.bootstrap_servers}; see "
        f"`paykafka topics`, or create it with `paykafka create-topic {topic}`",
        code=_UNKNOWN_TOPIC,
    )


def _metadata(client: Any, watch: SecurityWatch, settings: Settings, timeout: float) -> Any:
    """Cluster metadata, or the security error / unreachable cluster that prevents it."""
    try:
        return wait_for_metadata(client, watch, timeout)
    except KafkaException as exc:
        raise _translate(settings, timeout, exc, "reading cluster metadata") from None


def _refused(
    watch: SecurityWatch, exc: BaseException, resource: str | None, operation: str
) -> SecurityError | None:
    """The security error behind a failed call, if it was one (ACL, login, TLS)."""
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if not isinstance(err, _RdKafkaError):
        return watch.error
    return watch.classify(err, resource=resource, operation=operation) or watch.error


def _translate(settings: Settings, timeout: float, exc: BaseException, what: str) -> Exception:
    """One paykafka error for a failed admin call, keeping confluent's error code."""
    if isinstance(exc, concurrent.futures.TimeoutError | TimeoutError):
        return _unreachable(settings, timeout, f"{what} timed out")
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if not isinstance(err, _RdKafkaError):
        return KafkaError(f"{what} failed: {exc}")
    name = err.name()
    if name in _UNREACHABLE:
        return _unreachable(settings, timeout, err.str())
    return KafkaError(f"{what} failed: {err.str()} ({name})", code=name, retriable=err.retriable())


# -- the admin client ----------------------------------------------------------------------------


class KafkaAdmin:
    """Read and shape the cluster's topics; every call gives up after ``timeout`` seconds.

    Wraps confluent's ``AdminClient`` built from :meth:`Settings.admin_config`, so security
    settings and the librdkafka log routing are the library's.
    """

    def __init__(
        self, settings: Settings | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        if timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.settings = settings or Settings.from_env()
        self.timeout = timeout
        self._watch = SecurityWatch(self.settings)
        try:
            self._admin = AdminClient(self.settings.admin_config(error_cb=self._on_error))
        except KafkaException as exc:
            raise client_creation_error(self.settings, exc) from None

    def _on_error(self, err: Any) -> None:
        if not self._watch.observe(err):
            log.debug("admin client: %s", err.str())

    # -- cluster and topics ----------------------------------------------------------------------

    def brokers(self) -> tuple[int, ...]:
        """Ids of the brokers the cluster lists as alive."""
        return tuple(sorted(self._metadata().brokers))

    def topic_names(self) -> frozenset[str]:
        return frozenset(self._metadata().topics)

    def list_topics(self) -> tuple[TopicInfo, ...]:
        """Every topic, internal ones flagged, sorted by name."""
        metadata = self._metadata()
        names = sorted(metadata.topics)
        internal = self._internal_flags(names)
        return tuple(
            TopicInfo(
                name=name,
                partitions=len(metadata.topics[name].partitions),
                replication_factor=max(
                    (len(p.replicas) for p in metadata.topics[name].partitions.values()),
                    default=0,
                ),
                internal=internal.get(name, name.startswith("__")),
            )
            for name in names
        )

    def describe_topic(self, topic: str, *, configs: bool = True) -> TopicDescription:
        """Partitions with leader, replicas and ISR, plus :data:`IMPORTANT_CONFIGS`.

        Raises :class:`KafkaError` with code ``UNKNOWN_TOPIC_OR_PART`` for a missing topic.
        """
        if topic not in self._metadata().topics:
            raise _unknown_topic(self.settings, topic)
        futures = self._admin.describe_topics(
            TopicCollection([topic]), request_timeout=self.timeout
        )
        found = self._result(futures[topic], f"describing topic {topic!r}", topic=topic)
        partitions = tuple(
            PartitionInfo(
                partition=p.id,
                leader=p.leader.id if p.leader is not None and p.leader.id >= 0 else None,
                replicas=tuple(r.id for r in p.replicas),
                isr=tuple(r.id for r in p.isr),
            )
            for p in sorted(found.partitions, key=lambda p: p.id)
        )
        return TopicDescription(
            name=topic,
            internal=bool(found.is_internal),
            partitions=partitions,
            configs=self.topic_configs(topic) if configs else (),
        )

    def topic_configs(
        self, topic: str, names: Sequence[str] = IMPORTANT_CONFIGS
    ) -> tuple[TopicConfig, ...]:
        """The named settings of ``topic`` with their source (topic, broker or default)."""
        resource = ConfigResource(ResourceType.TOPIC, topic)
        futures = self._admin.describe_configs([resource], request_timeout=self.timeout)
        entries = self._result(
            next(iter(futures.values())),
            f"reading the configs of {topic!r}",
            topic=topic,
            operation="DESCRIBE_CONFIGS",
        )
        found = []
        for name in names:
            entry = entries.get(name)
            if entry is not None:
                found.append(TopicConfig(name, entry.value, _source(entry.source)))
        return tuple(found)

    def create_topic(
        self,
        topic: str,
        *,
        partitions: int,
        replication_factor: int,
        configs: Mapping[str, str] | None = None,
    ) -> None:
        """Create ``topic`` and wait until every partition has a leader.

        Raises :class:`ConfigError` when the cluster has fewer brokers than
        ``replication_factor``, and :class:`KafkaError` with code ``TOPIC_ALREADY_EXISTS``
        when the topic is there already.
        """
        if partitions < 1 or replication_factor < 1:
            raise ConfigError(
                f"partitions and replication factor must be >= 1, got {partitions} and "
                f"{replication_factor}"
            )
        brokers = self.brokers()
        if replication_factor > len(brokers):
            raise ConfigError(
                f"replication factor {replication_factor} needs {replication_factor} brokers, "
                f"but {self.settings.bootstrap_servers} has {len(brokers)} alive "
                f"({_ids(brokers)}); use --replication-factor {len(brokers)} or start more "
                "brokers (paykafka stack up --brokers 3)"
            )
        config = {"min.insync.replicas": str(min_insync_for(replication_factor))}
        config.update(configs or {})
        new = NewTopic(
            topic,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=config,
        )
        futures = self._admin.create_topics(
            [new], operation_timeout=self.timeout, request_timeout=self.timeout
        )
        try:
            self._result(
                futures[topic], f"creating topic {topic!r}", resource=topic, operation="CREATE"
            )
        except KafkaError as exc:
            if exc.code == _TOPIC_EXISTS:
                raise KafkaError(
                    f"topic {topic!r} already exists; see it with `paykafka describe {topic}`",
                    code=_TOPIC_EXISTS,
                ) from None
            raise
        log.info(
            "created topic %s: %d partition(s), replication factor %d",
            topic,
            partitions,
            replication_factor,
            extra={"topic": topic},
        )
        self._wait_for_leaders(topic, partitions)

    def ensure_topic(self, topic: str | None = None) -> bool:
        """Create ``topic`` (default: the settings' topic) if missing; True if it was created.

        Uses the settings' ``topic_partitions`` and ``topic_replication_factor`` (capped at the
        brokers alive). Losing a creation race to another producer is not an error.
        """
        name = topic or self.settings.topic
        metadata = self._metadata()
        if name in metadata.topics:
            return False
        replication = replication_for(self.settings.topic_replication_factor, len(metadata.brokers))
        try:
            self.create_topic(
                name,
                partitions=self.settings.topic_partitions,
                replication_factor=replication,
            )
        except KafkaError as exc:
            if exc.code == _TOPIC_EXISTS:
                return False
            raise
        return True

    # -- offsets ---------------------------------------------------------------------------------

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """(oldest retained offset, next offset) of every partition of ``topic``."""
        metadata = self._metadata()
        if topic not in metadata.topics:
            raise _unknown_topic(self.settings, topic)
        parts = sorted(metadata.topics[topic].partitions)
        start = self._list_offsets(topic, parts, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        end = self._list_offsets(topic, parts, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        return {p: (start[p], end[p]) for p in parts}

    def committed(self, group: str, topic: str, partitions: Sequence[int]) -> dict[int, int | None]:
        """The group's committed offset per partition; ``None`` where it never committed."""
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p) for p in partitions]
        )
        futures = self._admin.list_consumer_group_offsets([request], request_timeout=self.timeout)
        answer = self._result(
            futures[group], f"reading the offsets of group {group!r}", resource=group
        )
        found: dict[int, int | None] = dict.fromkeys(partitions)
        for tp in answer.topic_partitions or []:
            if tp.topic == topic and tp.error is None and tp.offset >= 0:
                found[tp.partition] = tp.offset
        return found

    def lag(self, group: str | None = None, topic: str | None = None) -> GroupLag:
        """How far ``group`` (default: the settings' group) is behind on ``topic``."""
        group = group or self.settings.group_id
        topic = topic or self.settings.topic
        marks = self.watermarks(topic)
        committed = self.committed(group, topic, sorted(marks))
        return GroupLag(
            group=group,
            topic=topic,
            partitions=tuple(
                PartitionLag(partition=p, committed=committed[p], start=lo, end=hi)
                for p, (lo, hi) in sorted(marks.items())
            ),
        )

    def consumer_groups(self) -> tuple[str, ...]:
        """Ids of every consumer group the cluster knows, sorted."""
        future = self._admin.list_consumer_groups(request_timeout=self.timeout)
        answer = self._result(future, "listing consumer groups")
        return tuple(sorted(g.group_id for g in answer.valid))

    def group_offsets(self, group: str) -> dict[tuple[str, int], int]:
        """Every committed offset of ``group``, by (topic, partition)."""
        request = ConsumerGroupTopicPartitions(group)
        futures = self._admin.list_consumer_group_offsets([request], request_timeout=self.timeout)
        answer = self._result(futures[group], f"reading the offsets of group {group!r}")
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in answer.topic_partitions or []
            if tp.error is None and tp.offset >= 0
        }

    # -- internals -------------------------------------------------------------------------------

    def _metadata(self) -> Any:
        """Cluster metadata; the one call that tells "no broker" apart quickly."""
        return _metadata(self._admin, self._watch, self.settings, self.timeout)

    def _internal_flags(self, names: Sequence[str]) -> dict[str, bool]:
        if not names:
            return {}
        futures = self._admin.describe_topics(
            TopicCollection(list(names)), request_timeout=self.timeout
        )
        flags: dict[str, bool] = {}
        for name, future in futures.items():
            try:
                flags[name] = bool(future.result(timeout=self.timeout).is_internal)
            except (KafkaException, concurrent.futures.TimeoutError):
                # Deleted meanwhile, or not authorized to describe: fall back on the naming rule.
                continue
        return flags

    def _list_offsets(self, topic: str, partitions: Sequence[int], spec: Any) -> dict[int, int]:
        request = {TopicPartition(topic, p): spec for p in partitions}
        futures = self._admin.list_offsets(request, request_timeout=self.timeout)
        return {
            tp.partition: int(self._result(f, f"reading offsets of {topic!r}", topic=topic).offset)
            for tp, f in futures.items()
        }

    def _result(
        self,
        future: Any,
        what: str,
        *,
        topic: str | None = None,
        resource: str | None = None,
        operation: str = "DESCRIBE",
    ) -> Any:
        try:
            return future.result(timeout=self.timeout + 1)
        except (KafkaException, concurrent.futures.TimeoutError) as exc:
            refused = _refused(self._watch, exc, resource or topic, operation)
            if refused is not None:
                raise refused from None
            error = _translate(self.settings, self.timeout, exc, what)
            if topic is not None and getattr(error, "code", None) == _UNKNOWN_TOPIC:
                error = _unknown_topic(self.settings, topic)
            raise error from None

    def _wait_for_leaders(self, topic: str, partitions: int) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            found = self._metadata().topics.get(topic)
            if (
                found is not None
                and len(found.partitions) >= partitions
                and all(p.leader >= 0 for p in found.partitions.values())
            ):
                return
            time.sleep(0.2)
        log.warning("topic %s was created but not every partition has a leader yet", topic)


def ensure_topic(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Make sure the settings' topic exists (see :meth:`KafkaAdmin.ensure_topic`)."""
    return KafkaAdmin(settings, timeout=timeout).ensure_topic()


def _source(source: Any) -> str:
    # confluent-kafka hands the source over as a plain int or as the enum, depending on version.
    code = int(getattr(source, "value", source))
    if code == ConfigSource.DYNAMIC_TOPIC_CONFIG.value:
        return "topic"
    if code == ConfigSource.DEFAULT_CONFIG.value:
        return "default"
    return "broker"


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids) or "none"


# -- the registry side ---------------------------------------------------------------------------


def describe_subject(registry: RegistryClient, subject: str) -> SubjectStatus:
    """Latest version, id and compatibility of ``subject``; never raises for an outage."""
    try:
        latest = registry.version(subject)
        level = registry.compatibility(subject)
        is_global = level is None
        if level is None:
            level = registry.compatibility(None)
    except SubjectNotFoundError:
        return SubjectStatus(subject=subject, state="not_registered")
    except RegistryUnavailableError as exc:
        return SubjectStatus(subject=subject, state="unreachable", error=str(exc))
    return SubjectStatus(
        subject=subject,
        state="registered",
        version=latest.version,
        schema_id=latest.schema_id,
        compatibility=level,
        compatibility_is_global=is_global,
    )


# -- reading records without a group -------------------------------------------------------------


class TopicReader:
    """Reads a topic decoded, from any position, without joining a group.

    What ``paykafka events`` (the tutorial's console consumer) runs on: partitions are assigned
    by hand under a throwaway group id, offsets are never committed and nothing is
    dead-lettered, so looking at a topic can never move a tracker's position. A record that
    does not decode is yielded with its :class:`DecodeError` instead of stopping the replay.
    Like the console consumer it shows every record, those of aborted or still open
    transactions too, unless ``read_committed``.
    """

    def __init__(
        self,
        settings: Settings,
        decoder: EventDeserializer,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        read_committed: bool = False,
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self._read_committed = read_committed
        self._decode = decoder
        self._consumer: Consumer | None = None
        self._watch = SecurityWatch(settings)
        self._assigned: set[int] = set()
        self._done: set[int] = set()
        self._last: dict[int, int] = {}

    def open(
        self,
        *,
        from_beginning: bool = False,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        """Assign the topic's partitions: all, or only ``partition`` (from ``offset``).

        Without ``from_beginning`` or ``offset`` reading starts at the end: only new events.
        """
        if offset is not None and partition is None:
            raise ConfigError("an offset needs a partition: add --partition P to --offset O")
        conf = self.settings.consumer_config(
            **{
                "group.id": f"paykafka-events-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed" if self._read_committed else "read_uncommitted",
            }
        )
        conf["error_cb"] = self._watch.observe
        try:
            consumer = Consumer(conf)
        except KafkaException as exc:
            raise client_creation_error(self.settings, exc) from None
        self._consumer = consumer
        try:
            self._assign(consumer, from_beginning, partition, offset)
        except BaseException:
            self.close()
            raise

    def _assign(
        self,
        consumer: Consumer,
        from_beginning: bool,
        partition: int | None,
        offset: int | None,
    ) -> None:
        topic = self.settings.topic
        metadata = _metadata(consumer, self._watch, self.settings, self.timeout)
        if topic not in metadata.topics:
            raise _unknown_topic(self.settings, topic)
        partitions = sorted(metadata.topics[topic].partitions)
        if partition is not None:
            if partition not in partitions:
                raise ConfigError(
                    f"topic {topic!r} has partitions {_ids(partitions)}, not {partition}"
                )
            partitions = [partition]
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        assignment = []
        for p in partitions:
            low, high = self._watermarks(consumer, p)
            position = start
            if offset is not None:
                if not low <= offset <= high:
                    held = f"offsets {low}..{high - 1}" if high > low else "no events"
                    raise ConfigError(
                        f"offset {offset} is outside partition {p} of {topic!r}, which holds "
                        f"{held} (the next event gets offset {high})"
                    )
                position = offset
            first = {OFFSET_BEGINNING: low, OFFSET_END: high}.get(position, position)
            if first >= high:
                self._done.add(p)  # nothing to read before the end as it is now
            else:
                self._last[p] = high - 1
            assignment.append(TopicPartition(topic, p, position))
        consumer.assign(assignment)
        self._assigned = set(partitions)

    def _watermarks(self, consumer: Consumer, partition: int) -> tuple[int, int]:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.settings.topic, partition), timeout=self.timeout
            )
        except KafkaException as exc:
            refused = _refused(self._watch, exc, self.settings.topic, "DESCRIBE")
            if refused is not None:
                raise refused from None
            raise _translate(
                self.settings, self.timeout, exc, f"reading offsets of partition {partition}"
            ) from None
        return int(low), int(high)

    @property
    def at_end(self) -> bool:
        """Every assigned partition read up to where it ended when reading began (or later)."""
        return self._assigned <= self._done

    def records(
        self,
        *,
        max_records: int | None = None,
        until_end: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[RecordView]:
        """Records in arrival order until ``max_records``, the end (``until_end``) or
        ``should_stop()``; otherwise forever, like the console consumer."""
        consumer = self._started()
        count = 0
        while not should_stop():
            if max_records is not None and count >= max_records:
                return
            if until_end and self.at_end:
                return
            msg = consumer.poll(0.2)
            self._watch.check()
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == _RdKafkaError._PARTITION_EOF:
                    self._done.add(msg.partition() or 0)
                    continue
                refused = self._watch.classify(err, resource=self.settings.topic, operation="READ")
                if refused is not None:
                    raise refused
                if err.fatal():
                    raise KafkaError(f"fatal consumer error: {err.str()}", code=err.name())
                log.warning("consumer: %s", err.str(), extra={"code": err.name()})
                continue
            view = self._view(msg)
            if view.offset >= self._last.get(view.partition, view.offset + 1):
                self._done.add(view.partition)
            count += 1
            yield view

    def _view(self, msg: Any) -> RecordView:
        key = msg.key()
        ts_type, ts = msg.timestamp()
        view = RecordView(
            partition=int(msg.partition()),
            offset=int(msg.offset()),
            key=key.decode("utf-8", "replace") if key is not None else None,
            timestamp=datetime.fromtimestamp(ts / 1000, UTC) if ts_type and ts > 0 else None,
            schema_id=None,
            event=None,
            error=None,
        )
        try:
            schema_id, event = self._decode.decode(msg.value())
        except DecodeError as exc:
            return attrs.evolve(view, schema_id=exc.schema_id, error=exc)
        return attrs.evolve(view, schema_id=schema_id, event=event)

    def close(self) -> None:
        """Leave without committing anything."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _started(self) -> Consumer:
        if self._consumer is None:
            raise KafkaError("the reader is not open: call open() first")
        return self._consumer
