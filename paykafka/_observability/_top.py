"""``paykafka top``: what the cluster is doing now, refreshed every second.

Split in three so most of it is testable without a terminal or a broker: :func:`collect`
reads one :class:`Snapshot` (the only I/O), :func:`view` turns two consecutive snapshots into
rows and rates (pure), and :func:`render` draws those rows with rich (the ``paykafka[top]``
extra). rich was chosen over curses or hand-written escape codes because it degrades by itself:
colour and live redraw on a terminal, plain text when piped, without a code path of our own
for each case.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from confluent_kafka import Consumer, TopicPartition

from paykafka._admin import KafkaAdmin
from paykafka._dlq import replay_group
from paykafka._errors import PayKafkaError, RegistryUnavailableError
from paykafka._registry import RegistryClient
from paykafka._settings import Settings

__all__ = ["GroupRow", "Snapshot", "TopView", "TopicRow", "collect", "render", "view"]

_REASON_HEADER = "paykafka.error.reason"


@attrs.frozen
class TopicState:
    """One topic as read at one instant."""

    name: str
    #: partition -> (oldest retained offset, next offset)
    marks: dict[int, tuple[int, int]]
    #: partition -> (replicas, in-sync replicas)
    replicas: dict[int, tuple[tuple[int, ...], tuple[int, ...]]]


@attrs.frozen
class Snapshot:
    """Everything ``top`` shows, read at ``at`` (seconds on a monotonic clock)."""

    at: float
    taken: datetime
    bootstrap: str
    topics: tuple[TopicState, ...]
    #: group -> {(topic, partition): committed offset}
    groups: dict[str, dict[tuple[str, int], int]]
    dlq_topic: str
    dlq_pending: int | None
    dlq_newest_reason: str | None
    registry: str


@attrs.frozen
class TopicRow:
    name: str
    partitions: int
    retained: int
    in_rate: float | None
    health: str


@attrs.frozen
class GroupRow:
    group: str
    topic: str
    partition: int
    #: ``None`` where the group never committed on the partition.
    committed: int | None
    end: int
    lag: int
    out_rate: float | None


@attrs.frozen
class TopView:
    """What one refresh draws."""

    title: str
    topics: tuple[TopicRow, ...]
    groups: tuple[GroupRow, ...]
    dlq: str
    registry: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _rate(now: int, before: int | None, seconds: float) -> float | None:
    if before is None or seconds <= 0:
        return None
    return max(0, now - before) / seconds


def _health(replicas: dict[int, tuple[tuple[int, ...], tuple[int, ...]]]) -> str:
    behind = sorted(p for p, (reps, isr) in replicas.items() if len(isr) < len(reps))
    offline = sorted(p for p, (_reps, isr) in replicas.items() if not isr)
    if offline:
        return f"OFFLINE partitions {','.join(map(str, offline))}"
    if behind:
        return f"UNDER-REPLICATED partitions {','.join(map(str, behind))}"
    return "healthy"


def view(current: Snapshot, previous: Snapshot | None = None) -> TopView:
    """Rows and rates from two consecutive snapshots (rates need both; first refresh: none).

    Events in per second are the growth of a topic's end offsets; events out per second are
    the growth of a group's committed offsets, both over the time between the snapshots.
    """
    seconds = current.at - previous.at if previous is not None else 0.0
    before_ends: dict[str, int] = {}
    if previous is not None:
        before_ends = {t.name: sum(hi for _lo, hi in t.marks.values()) for t in previous.topics}
    topic_rows = tuple(
        TopicRow(
            name=t.name,
            partitions=len(t.marks),
            retained=sum(hi - lo for lo, hi in t.marks.values()),
            in_rate=_rate(
                sum(hi for _lo, hi in t.marks.values()), before_ends.get(t.name), seconds
            ),
            health=_health(t.replicas),
        )
        for t in current.topics
    )
    marks = {t.name: t.marks for t in current.topics}
    group_rows: list[GroupRow] = []
    for group, offsets in sorted(current.groups.items()):
        before = previous.groups.get(group, {}) if previous is not None else {}
        # Every partition of a topic the group reads, also those it never committed on: it
        # will start there at the oldest retained record, so all of it counts as lag (as in
        # `paykafka lag`).
        for topic in sorted({t for t, _p in offsets if t in marks}):
            for partition, (start, end) in sorted(marks[topic].items()):
                committed = offsets.get((topic, partition))
                position = start if committed is None else max(committed, start)
                group_rows.append(
                    GroupRow(
                        group=group,
                        topic=topic,
                        partition=partition,
                        committed=committed,
                        end=end,
                        lag=max(0, end - position),
                        out_rate=_rate(position, before.get((topic, partition), start), seconds)
                        if previous is not None
                        else None,
                    )
                )
    if current.dlq_pending is None:
        dlq = f"{current.dlq_topic}: not created (no dead letters yet)"
    else:
        dlq = f"{current.dlq_topic}: {current.dlq_pending} pending"
        if current.dlq_newest_reason:
            dlq += f", newest reason {current.dlq_newest_reason}"
    title = f"paykafka top: {current.bootstrap}, {current.taken:%Y-%m-%d %H:%M:%S} UTC"
    return TopView(
        title=title,
        topics=topic_rows,
        groups=tuple(group_rows),
        dlq=dlq,
        registry=current.registry,
    )


def collect(
    settings: Settings,
    admin: KafkaAdmin,
    registry: RegistryClient,
    *,
    at: float,
    topics: Sequence[str] = (),
    groups: Sequence[str] = (),
) -> Snapshot:
    """Read one snapshot: topics' offsets and ISR, groups' commits, the DLQ, the registry."""
    known = {t.name: t for t in admin.list_topics() if not t.internal}
    names = [t for t in topics if t in known] if topics else sorted(known)
    states = []
    for name in names:
        with contextlib.suppress(PayKafkaError):  # deleted between the listing and now
            description = admin.describe_topic(name, configs=False)
            states.append(
                TopicState(
                    name=name,
                    marks=admin.watermarks(name),
                    replicas={p.partition: (p.replicas, p.isr) for p in description.partitions},
                )
            )
    shown = {s.name for s in states}
    group_offsets: dict[str, dict[tuple[str, int], int]] = {}
    for group in groups or admin.consumer_groups():
        with contextlib.suppress(PayKafkaError):
            offsets = {k: v for k, v in admin.group_offsets(group).items() if k[0] in shown}
            if offsets:
                group_offsets[group] = offsets
    pending: int | None = None
    newest: str | None = None
    if settings.dlq_topic in known:
        with contextlib.suppress(PayKafkaError):
            pending = admin.lag(group=replay_group(settings), topic=settings.dlq_topic).total
            newest = newest_reason(settings, admin.watermarks(settings.dlq_topic))
    try:
        registry.subjects()
        registry_state = f"registry up ({settings.registry_url})"
    except RegistryUnavailableError:
        registry_state = f"registry UNREACHABLE ({settings.registry_url})"
    return Snapshot(
        at=at,
        taken=datetime.now(UTC),
        bootstrap=settings.bootstrap_servers,
        topics=tuple(states),
        groups=group_offsets,
        dlq_topic=settings.dlq_topic,
        dlq_pending=pending,
        dlq_newest_reason=newest,
        registry=registry_state,
    )


def newest_reason(settings: Settings, marks: dict[int, tuple[int, int]]) -> str | None:
    """The reason header of the newest dead letter (by broker timestamp), read without a group."""
    wanted = [
        TopicPartition(settings.dlq_topic, p, hi - 1) for p, (lo, hi) in marks.items() if hi > lo
    ]
    if not wanted:
        return None
    consumer = Consumer(
        settings.consumer_config(
            **{
                "group.id": f"paykafka-top-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
            }
        )
    )
    try:
        consumer.assign(wanted)
        found: dict[int, tuple[int, str | None]] = {}
        for msg in _take(consumer, len(wanted)):
            reason = dict(msg.headers() or []).get(_REASON_HEADER)
            found[msg.partition()] = (
                msg.timestamp()[1],
                reason.decode("utf-8", "replace") if isinstance(reason, bytes) else None,
            )
        if not found:
            return None
        return max(found.values(), key=lambda item: item[0])[1]
    finally:
        consumer.close()


def _take(consumer: Consumer, count: int, *, timeout: float = 3.0) -> Iterable[Any]:
    got = 0
    for msg in consumer.consume(count, timeout):
        if msg.error() is None:
            got += 1
            yield msg
    if got < count:
        for msg in consumer.consume(count - got, 1.0):
            if msg.error() is None:
                yield msg


def render(top: TopView) -> Any:
    """A rich renderable of ``top`` (tables of topics and groups, DLQ and registry lines)."""
    from rich.console import Group  # noqa: PLC0415 - the optional paykafka[top] extra
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    topics = Table(title="topics", title_justify="left", expand=False)
    for column in ("topic", "partitions", "retained", "in/s", "health"):
        topics.add_column(column, justify="left" if column in {"topic", "health"} else "right")
    for t in top.topics:
        style = "green" if t.health == "healthy" else "bold red"
        topics.add_row(
            t.name,
            str(t.partitions),
            f"{t.retained:,}",
            _per_second(t.in_rate),
            Text(t.health, style),
        )
    groups = Table(title="groups", title_justify="left", expand=False)
    for column in ("group", "topic", "partition", "committed", "end", "lag", "out/s"):
        groups.add_column(column, justify="left" if column in {"group", "topic"} else "right")
    for g in top.groups:
        groups.add_row(
            g.group,
            g.topic,
            str(g.partition),
            "-" if g.committed is None else f"{g.committed:,}",
            f"{g.end:,}",
            Text(f"{g.lag:,}", "yellow" if g.lag else "green"),
            _per_second(g.out_rate),
        )
    registry_style = "green" if " up " in f" {top.registry} " else "bold red"
    return Group(
        Text(top.title, "bold"),
        topics,
        groups,
        Text(f"dead letters  {top.dlq}"),
        Text(top.registry, registry_style),
    )


def _per_second(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.1f}"
