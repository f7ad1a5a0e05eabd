"""The operator commands: the tutorial's Kafka CLI moves, decoded and without Docker.

``topics``, ``describe``, ``create-topic``, ``events``, ``lag``, ``produce`` and ``track``. Each is
a thin view over the library (:mod:`paykafka._admin`, ``PaymentProducer``, ``PaymentTracker``):
the logic lives there, this module only parses flags, prints and picks the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from paykafka._admin import (
    DEFAULT_TIMEOUT,
    GroupLag,
    KafkaAdmin,
    PartitionInfo,
    RecordView,
    SubjectStatus,
    TopicDescription,
    TopicHealth,
    TopicReader,
    describe_subject,
    replication_for,
)
from paykafka._cli._common import (
    EXIT_OK,
    EXIT_TROUBLE,
    add_connection_flags,
    emit,
    print_table,
    settings_from_args,
    stop_on_signals,
)
from paykafka._errors import ConfigError, KafkaError
from paykafka._event import PaymentEvent, optional_fields
from paykafka._producer import PaymentProducer
from paykafka._registry import RegistryClient
from paykafka._schema import load_schema
from paykafka._serde import EventDeserializer
from paykafka._settings import Settings
from paykafka._tracking import PaymentTracker, TrackedEvent

_EXIT_CODES = """\
exit codes:
  0  success
  1  any other error (one line on stderr says what and what to do)
  2  bad arguments or settings (a replication factor above the brokers alive, an invalid
     amount or currency, an offset outside the partition...)
  3  worked, but found trouble: describe saw under-replicated or leaderless partitions;
     events showed records that do not decode
  4  the topic does not exist (create-topic: it already exists)
  5  no Kafka broker answered (start one: paykafka stack up)
  130  interrupted before it could stop cleanly (a signal during start-up, or a second one)
  141  stdout was closed by its reader (`paykafka events | head -1`): ended quietly
Ctrl+C (SIGINT) or SIGTERM is the normal way to end events and track: the record in hand is
finished, track commits what it handled, a summary goes to stderr, exit 0 (3 if events saw
undecodable records). A second signal interrupts at once.
"""

Command = Callable[[argparse.Namespace], int]


def register(sub: Any) -> None:
    """Add the operator commands to the top-level parser."""
    topics = _parser(
        sub,
        "topics",
        "list topics (internal ones marked)",
        "List every topic with its partitions and replication factor; Kafka's internal topics "
        "(__consumer_offsets...) are marked. Tutorial: kafka-topics --list.",
    )
    topics.set_defaults(func=_topics)

    describe = _parser(
        sub,
        "describe",
        "partitions, leaders, replicas, ISR and health of a topic",
        "Describe a topic: PartitionCount, ReplicationFactor, the settings that decide "
        "durability (retention.ms, min.insync.replicas, cleanup.policy), each partition's "
        "Leader, Replicas and Isr with the health reading (Isr == Replicas healthy, Isr < "
        "Replicas under-replicated), and the topic's registry subject. Tutorial: kafka-topics "
        "--describe --topic payments.",
    )
    describe.add_argument("topic_arg", nargs="?", metavar="TOPIC", help="default: --topic")
    describe.set_defaults(func=_describe)

    create = _parser(
        sub,
        "create-topic",
        "create a topic",
        "Create a topic. min.insync.replicas is set to replication factor - 1 (at least 1) so "
        "acks=all writes survive one broker loss; --config overrides it.",
    )
    create.add_argument("topic_arg", nargs="?", metavar="TOPIC", help="default: --topic")
    create.add_argument(
        "--partitions", type=_positive_int, help="default: PAYKAFKA_TOPIC_PARTITIONS (3)"
    )
    create.add_argument(
        "--replication-factor",
        type=_positive_int,
        help="default: PAYKAFKA_TOPIC_REPLICATION_FACTOR (3), capped at the brokers alive",
    )
    create.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a topic setting, e.g. retention.ms=86400000 (repeatable)",
    )
    create.add_argument(
        "--if-not-exists", action="store_true", help="an existing topic is success (exit 0)"
    )
    create.set_defaults(func=_create_topic)

    events = _parser(
        sub,
        "events",
        "print decoded events, one JSON line each",
        "Print the topic's events decoded from Avro, one JSON line each with partition and "
        "offset; a record that does not decode is printed with the reason instead. Reads "
        "without a consumer group (nothing committed, nothing dead-lettered) and, like the "
        "console consumer, follows new events until Ctrl+C unless --until-end or "
        "--max-messages. Output is JSON whether or not --json is given. Tutorial: "
        "kafka-console-consumer --from-beginning.",
    )
    start = events.add_mutually_exclusive_group()
    start.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest retained event"
    )
    start.add_argument(
        "--offset", type=_non_negative_int, help="start at this offset (needs --partition)"
    )
    events.add_argument("--partition", type=_non_negative_int, help="read only this partition")
    events.add_argument("--max-messages", type=_positive_int, help="stop after N records")
    events.add_argument(
        "--until-end",
        action="store_true",
        help="stop once every partition is read up to where it ended when reading began",
    )
    events.add_argument(
        "--read-committed",
        action="store_true",
        help="show only records of committed transactions, as trackers and processors read "
        "(default: every record, aborted ones too, like the console consumer)",
    )
    events.set_defaults(func=_events)

    lag = _parser(
        sub,
        "lag",
        "how far a consumer group is behind",
        "Per partition: the group's committed offset, the end offset and the lag (events not "
        "yet read), and the total. Tutorial equivalent: kafka-consumer-groups --describe "
        "--group payment-tracker.",
    )
    lag.set_defaults(func=_lag)

    produce = _parser(
        sub,
        "produce",
        "send payment events",
        "Send payment events (the tutorial's producer.py): validated, Avro-encoded with the "
        "registered schema, keyed by user. Creates the topic if missing (PAYKAFKA_CREATE_TOPIC).",
        group_flag=False,
    )
    produce.add_argument("--user", required=True)
    produce.add_argument("--amount", required=True, help="exact decimal, e.g. 249.99")
    produce.add_argument("--currency", required=True, help="ISO 4217 code, e.g. PLN")
    produce.add_argument("--method", required=True, help="e.g. credit_card, blik, paypal")
    produce.add_argument("--count", type=_positive_int, default=1, help="events to send")
    produce.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an optional field of the schema, e.g. --set note=rent (repeatable)",
    )
    produce.set_defaults(func=_produce)

    track = _parser(
        sub,
        "track",
        "follow payment events as the tracker group",
        "Follow payment events as a member of the tracker group (the tutorial's tracker.py): "
        "offsets are committed, undecodable records go to the dead-letter topic. Ctrl+C stops "
        "cleanly.",
    )
    track.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest event where the group has no committed offset yet",
    )
    track.add_argument("--max-events", type=_positive_int, help="stop after N events")
    track.add_argument(
        "--until-end", action="store_true", help="stop once every partition is read to its end"
    )
    track.set_defaults(func=_track)


def _parser(
    sub: Any, name: str, help_text: str, description: str, *, group_flag: bool = True
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=textwrap.fill(description, 88, break_on_hyphens=False),
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_flags(parser, group_flag=group_flag)
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the brokers (default {DEFAULT_TIMEOUT:g})",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    topic = getattr(args, "topic_arg", None)
    if topic:
        args.topic = topic
    return settings_from_args(args)


# -- topics --------------------------------------------------------------------------------------


def _topics(args: argparse.Namespace) -> int:
    found = KafkaAdmin(_settings(args), timeout=args.timeout).list_topics()
    rows = [
        {
            "Topic": t.name,
            "Partitions": t.partitions,
            "Replication": t.replication_factor,
            "Internal": "internal" if t.internal else "",
        }
        for t in found
    ]
    data = [
        {
            "topic": t.name,
            "partitions": t.partitions,
            "replication_factor": t.replication_factor,
            "internal": t.internal,
        }
        for t in found
    ]
    emit(args, data, print_table(rows, ["Topic", "Partitions", "Replication", "Internal"]))
    return EXIT_OK


# -- describe ------------------------------------------------------------------------------------


def _describe(args: argparse.Namespace) -> int:
    settings = _settings(args)
    topic = KafkaAdmin(settings, timeout=args.timeout).describe_topic(settings.topic)
    with RegistryClient(settings) as registry:
        subject = describe_subject(registry, settings.subject)
    emit(args, _description_data(topic, subject), _description_text(topic, subject))
    return EXIT_OK if topic.health is TopicHealth.HEALTHY else EXIT_TROUBLE


def _description_data(topic: TopicDescription, subject: SubjectStatus) -> dict[str, Any]:
    return {
        "topic": topic.name,
        "internal": topic.internal,
        "partition_count": topic.partition_count,
        "replication_factor": topic.replication_factor,
        "configs": {c.name: {"value": c.value, "source": c.source} for c in topic.configs},
        "health": topic.health.value,
        "partitions": [
            {
                "partition": p.partition,
                "leader": p.leader,
                "replicas": list(p.replicas),
                "isr": list(p.isr),
                "health": p.health.value,
                "out_of_sync": list(p.out_of_sync),
            }
            for p in topic.partitions
        ],
        "unwritable_partitions": [p.partition for p in topic.unwritable],
        "registry": {
            "subject": subject.subject,
            "state": subject.state,
            "version": subject.version,
            "schema_id": subject.schema_id,
            "compatibility": subject.compatibility,
            "compatibility_is_global": subject.compatibility_is_global,
            "error": subject.error,
        },
    }


def _description_text(topic: TopicDescription, subject: SubjectStatus) -> str:
    lines = [
        f"Topic: {topic.name}   PartitionCount: {topic.partition_count}   "
        f"ReplicationFactor: {topic.replication_factor}"
        + ("   (internal)" if topic.internal else ""),
        "Configs: "
        + "   ".join(
            f"{c.name}={c.value} ({_config_note(c.name, c.value, c.source)})" for c in topic.configs
        ),
        "",
        print_table(
            [
                {
                    "Partition": p.partition,
                    "Leader": "none" if p.leader is None else p.leader,
                    "Replicas": _ids(p.replicas),
                    "Isr": _ids(p.isr),
                    "Health": _partition_health(p),
                }
                for p in topic.partitions
            ],
            ["Partition", "Leader", "Replicas", "Isr", "Health"],
        ),
        "",
        _health_text(topic),
        "",
        _subject_text(subject),
    ]
    return "\n".join(lines)


def _partition_health(p: PartitionInfo) -> str:
    if p.health is TopicHealth.OFFLINE:
        return "OFFLINE: no leader"
    if p.health is TopicHealth.UNDER_REPLICATED:
        lagging = sorted(p.out_of_sync)
        return f"UNDER-REPLICATED: {_brokers(lagging)} {_ids(lagging)} not in sync"
    return "healthy"


def _health_text(topic: TopicDescription) -> str:
    total = topic.partition_count
    if topic.health is TopicHealth.HEALTHY:
        text = f"Health: healthy - Isr == Replicas on all {total} partition(s)."
    else:
        lagging = sorted({b for p in topic.partitions for b in p.out_of_sync})
        offline = [p.partition for p in topic.partitions if p.health is TopicHealth.OFFLINE]
        under = [p for p in topic.partitions if p.health is not TopicHealth.HEALTHY]
        text = (
            f"Health: {topic.health.value.upper()} - {len(under)} of {total} partition(s) have "
            f"Isr < Replicas"
        )
        if lagging:
            text += f"; {_brokers(lagging)} {_ids(lagging)} lagging or down"
        text += "."
        if offline:
            text += (
                f"\n  Partition(s) {_ids(offline)} have no leader: nobody can read or write "
                "them until a broker holding a replica returns."
            )
    need = topic.min_insync_replicas or 1
    unwritable = [p.partition for p in topic.unwritable]
    if unwritable:
        text += (
            f"\nWrites: partition(s) {_ids(unwritable)} refuse acks=all writes "
            f"(fewer than min.insync.replicas={need} replicas in sync)."
        )
    elif topic.health is not TopicHealth.HEALTHY:
        text += (
            f"\nWrites: still accepted (every partition has >= min.insync.replicas={need} "
            "in sync), but with fewer copies until the ISR is whole again."
        )
    return text


def _subject_text(subject: SubjectStatus) -> str:
    if subject.state == "unreachable":
        return (
            f"Registry: subject {subject.subject}: registry unreachable ({subject.error}). "
            "The topic details above come from the brokers and are current."
        )
    if subject.state == "not_registered":
        return (
            f"Registry: subject {subject.subject} is not registered yet (the first producer "
            "registers it: paykafka produce)."
        )
    scope = " (registry default)" if subject.compatibility_is_global else ""
    return (
        f"Registry: subject {subject.subject}   latest version {subject.version}   "
        f"schema id {subject.schema_id}   compatibility {subject.compatibility or '?'}{scope}"
    )


def _config_note(name: str, value: str | None, source: str) -> str:
    """Where a setting comes from, and a millisecond value in words (7d, not 604800000)."""
    if value is not None and name.endswith(".ms") and value.lstrip("-").isdigit():
        return f"{_duration(int(value))}, {source}"
    return source


def _duration(ms: int) -> str:
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _brokers(ids: Sequence[int]) -> str:
    return "broker" if len(ids) == 1 else "brokers"


def _ids(ids: Sequence[int]) -> str:
    return ",".join(str(i) for i in ids) or "-"


# -- create-topic --------------------------------------------------------------------------------


def _create_topic(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configs = dict(_key_value(item) for item in args.config)
    admin = KafkaAdmin(settings, timeout=args.timeout)
    partitions = args.partitions or settings.topic_partitions
    replication = args.replication_factor or replication_for(
        settings.topic_replication_factor, len(admin.brokers())
    )
    try:
        admin.create_topic(
            settings.topic,
            partitions=partitions,
            replication_factor=replication,
            configs=configs,
        )
    except KafkaError as exc:
        if exc.code == "TOPIC_ALREADY_EXISTS" and args.if_not_exists:
            emit(
                args,
                {"topic": settings.topic, "created": False},
                f"Topic {settings.topic} already exists.",
            )
            return EXIT_OK
        raise
    emit(
        args,
        {
            "topic": settings.topic,
            "created": True,
            "partitions": partitions,
            "replication_factor": replication,
        },
        f"Created topic {settings.topic}: {partitions} partition(s), replication factor "
        f"{replication}.",
    )
    return EXIT_OK


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--config takes KEY=VALUE, e.g. retention.ms=86400000; got {item!r}")
    return key.strip(), value.strip()


# -- events --------------------------------------------------------------------------------------


def _events(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.offset is not None and args.partition is None:
        raise ConfigError("--offset needs --partition: offsets are per partition")
    shown = undecodable = 0
    progress = _Progress(sys.stderr, enabled=sys.stderr.isatty())
    stopping = threading.Event()
    with RegistryClient(settings) as registry:
        decoder = EventDeserializer(load_schema(settings.schema_path), registry.schema_by_id)
        with TopicReader(
            settings, decoder, timeout=args.timeout, read_committed=args.read_committed
        ) as reader:
            reader.open(
                from_beginning=args.from_beginning,
                partition=args.partition,
                offset=args.offset,
            )
            # Ctrl+C or SIGTERM is how following ends, as with the console consumer.
            with stop_on_signals(stopping.set) as received:
                try:
                    for view in reader.records(
                        max_records=args.max_messages,
                        until_end=args.until_end,
                        should_stop=stopping.is_set,
                    ):
                        progress.clear()
                        print(record_line(view), flush=True)
                        shown += 1
                        undecodable += view.error is not None
                        progress.update(shown)
                finally:
                    progress.clear()
    summary = f"Processed a total of {shown} messages"
    if received:
        summary = f"Stopped by {received[0]}. " + summary
    if undecodable:
        summary += f" ({undecodable} could not be decoded)"
    print(summary, file=sys.stderr)
    return EXIT_TROUBLE if undecodable else EXIT_OK


def record_line(view: RecordView | TrackedEvent) -> str:
    """One JSON line: position, key, schema id, then the event (exact amount) or the error."""
    head: dict[str, Any] = {
        "partition": view.partition,
        "offset": view.offset,
        "key": view.key,
        "timestamp": None,
        "schema_id": view.schema_id,
    }
    stamp = view.appended_at if isinstance(view, TrackedEvent) else view.timestamp
    head["timestamp"] = stamp.isoformat() if stamp is not None else None
    event = view.event
    if event is None:
        error = view.error if isinstance(view, RecordView) else None
        head["error"] = {
            "reason": error.reason.value if error is not None else "unknown",
            "message": str(error) if error is not None else "",
        }
        return json.dumps(head, ensure_ascii=False)
    # The event keeps its own JSON (amount as an exact number, never a float).
    return json.dumps(head, ensure_ascii=False)[:-1] + f', "event": {event.to_json()}}}'


class _Progress:
    """Count and rate of a long replay on a terminal's stderr, redrawn in place."""

    def __init__(self, stream: TextIO, *, enabled: bool, every: float = 0.5) -> None:
        self._stream = stream
        self._enabled = enabled
        self._every = every
        self._started = time.monotonic()
        self._drawn_at = self._started
        self._visible = False

    def update(self, count: int) -> None:
        now = time.monotonic()
        if not self._enabled or now - self._drawn_at < self._every:
            return
        rate = count / max(now - self._started, 1e-9)
        self._stream.write(f"\r{count} events, {rate:,.0f}/s\x1b[K")
        self._stream.flush()
        self._drawn_at = now
        self._visible = True

    def clear(self) -> None:
        if self._visible:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._visible = False


# -- lag -----------------------------------------------------------------------------------------


def _lag(args: argparse.Namespace) -> int:
    settings = _settings(args)
    lag = KafkaAdmin(settings, timeout=args.timeout).lag(settings.group_id, settings.topic)
    emit(args, _lag_data(lag), _lag_text(lag))
    return EXIT_OK


def _lag_data(lag: GroupLag) -> dict[str, Any]:
    return {
        "group": lag.group,
        "topic": lag.topic,
        "total_lag": lag.total,
        "has_commits": lag.has_commits,
        "partitions": [
            {
                "partition": p.partition,
                "committed": p.committed,
                "start": p.start,
                "end": p.end,
                "lag": p.lag,
            }
            for p in lag.partitions
        ],
    }


def _lag_text(lag: GroupLag) -> str:
    rows = [
        {
            "Partition": p.partition,
            "Committed": "-" if p.committed is None else p.committed,
            "End": p.end,
            "Lag": p.lag,
        }
        for p in lag.partitions
    ]
    lines = [
        f"Group: {lag.group}   Topic: {lag.topic}",
        "",
        print_table(rows, ["Partition", "Committed", "End", "Lag"]),
        "",
        f"Total lag: {lag.total}",
    ]
    if not lag.has_commits:
        lines.append(
            f"Group {lag.group} has committed nothing on {lag.topic}: when it starts it reads "
            "from the oldest retained event, so every retained event counts as lag."
        )
    return "\n".join(lines)


# -- produce and track ---------------------------------------------------------------------------


def _produce(args: argparse.Namespace) -> int:
    settings = _settings(args)
    events = [
        PaymentEvent(
            user=args.user,
            amount=args.amount,
            currency=args.currency,
            method=args.method,
            **optional_fields(args.set),
        )
        for _ in range(args.count)
    ]
    KafkaAdmin(settings, timeout=args.timeout).brokers()  # fail fast, not at the flush deadline
    stopping = threading.Event()
    futures = []
    # A signal stops sending; what was sent is flushed (delivered or raised) and reported.
    with PaymentProducer(settings) as producer, stop_on_signals(stopping.set) as received:
        for event in events:
            if stopping.is_set():
                break
            futures.append(producer.send(event))
    for future in futures:
        delivery = future.result(0)
        emit(
            args,
            {
                "topic": delivery.topic,
                "partition": delivery.partition,
                "offset": delivery.offset,
                "event": json.loads(delivery.event.to_json()),
            },
            f"Delivered {delivery.event.to_json()} to {delivery.topic}[{delivery.partition}] "
            f"at offset {delivery.offset}",
        )
    if received:
        print(
            f"Stopped by {received[0]}: sent {len(futures)} of {len(events)} events",
            file=sys.stderr,
        )
    return EXIT_OK


def _track(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # Fail fast on a missing broker or topic instead of waiting for an assignment forever.
    KafkaAdmin(settings, timeout=args.timeout).describe_topic(settings.topic, configs=False)
    with (
        PaymentTracker(settings, from_beginning=args.from_beginning) as tracker,
        stop_on_signals(tracker.stop) as received,
    ):
        print(
            f"Tracking {settings.topic} as group {settings.group_id} (Ctrl+C to stop)",
            file=sys.stderr,
            flush=True,
        )
        # A signal stops the loop after the record in hand; closing commits what was shown.
        for record in tracker.records(max_records=args.max_events, stop_at_end=args.until_end):
            if args.json:
                print(record_line(record), flush=True)
            else:
                e = record.event
                print(
                    f"Payment: {e.amount:f} {e.currency} via {e.method} from {e.user} at "
                    f"{e.timestamp.isoformat()}  ({record.topic}[{record.partition}] "
                    f"offset {record.offset})",
                    flush=True,
                )
        handled, dead = tracker.handled, tracker.dead_lettered
    summary = f"Tracked {handled} events"
    if received:
        summary = f"Stopped by {received[0]}. " + summary
    if dead:
        summary += f"; {dead} undecodable record(s) sent to {settings.dlq_topic}"
    print(summary, file=sys.stderr)
    return EXIT_OK


# -- argument types ------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value
