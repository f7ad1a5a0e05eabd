"""``paykafka dlq list | replay``: look at dead letters, and send them back once fixed.

A thin view over :class:`paykafka._dlq.DeadLetterQueue`, which holds the logic (what is
pending, how a replay is recorded so it is never repeated); this module parses flags and
prints.
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
from collections.abc import Sequence
from typing import Any

import attrs

from paykafka._cli._common import (
    add_connection_flags,
    emit,
    print_table,
    settings_from_args,
    stop_on_signals,
)
from paykafka._dlq import DeadLetter, DeadLetterQueue
from paykafka._errors import ConfigError, PayKafkaError, RegistryUnavailableError
from paykafka._event import PaymentEvent
from paykafka._registry import RegistryClient
from paykafka._schema import load_schema
from paykafka._serde import EventDeserializer
from paykafka._settings import Settings

_MESSAGE_WIDTH = 70

_HOW = """\
Which dead letters are worth replaying: handler_failed (after the handler is fixed),
unknown_schema_id (after the schema is registered) and registry_unavailable. The others,
not_confluent_framing, corrupt_avro, wrong_schema and invalid_event, are about the bytes
themselves: replayed unchanged they are dead-lettered again, so replay leaves them pending and
refuses --reason of them unless --force.

A dead letter is pending until a replay passes it: the replay group <group>.dlq-replay commits
which letters are done only after every record it wrote back was acknowledged, so a letter is
never replayed twice (a replay that fails half-way is repeated whole) and never copied. A record
written back carries paykafka.attempts and paykafka.origin.* headers: if it fails again, its new
letter counts every attempt and names where the record was first written, and the older letter
is superseded (only the newest letter of a record is pending).

Ctrl+C or SIGTERM during replay: letters already written back are acknowledged and marked,
the rest stay pending; a summary says how many (exit 0).

exit codes: 0 success, 1 error (one line on stderr says what and what to do), 2 bad
arguments (a --reason that cannot succeed without --force), 5 no broker answered (start one:
paykafka stack up), 130 interrupted by a second signal
"""


def register(sub: Any) -> None:
    """Add the ``dlq`` command group to the top-level parser."""
    dlq = sub.add_parser(
        "dlq",
        help="list and replay dead letters (records trackers could not decode or handle)",
        description="Inspect the dead-letter topic and replay its records to their source topic.",
        epilog=_HOW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        help="pending dead letters: reason, source and origin, attempts, payment, message",
        description=(
            "List dead letters not replayed yet (all of them with --all). A letter whose value "
            "still decodes shows its payment (JSON: event, amount as an exact decimal string)."
        ),
        epilog=_HOW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_flags(listing)
    listing.add_argument(
        "--all", action="store_true", help="also letters already replayed (the whole topic)"
    )
    listing.add_argument("--reason", help="only letters of this reason (e.g. corrupt_avro)")
    listing.set_defaults(func=_list)

    replay = actions.add_parser(
        "replay",
        help="write pending dead letters back to their source topic",
        description=(
            "Re-produce each pending dead letter's original key, value and headers to the topic "
            "it came from, then mark it replayed. Fix the cause first (register the schema, "
            "deploy the fixed handler): a letter that fails again is dead-lettered again, with "
            "its attempts counted."
        ),
        epilog=_HOW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_flags(replay)
    replay.add_argument("--reason", help="replay only letters of this reason")
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="list the letters that would be replayed, and those kept; write nothing",
    )
    replay.add_argument(
        "--force",
        action="store_true",
        help="also replay reasons that cannot succeed (corrupt_avro...): they loop back",
    )
    replay.set_defaults(func=_replay)


def _common_flags(parser: argparse.ArgumentParser) -> None:
    add_connection_flags(parser)
    parser.add_argument("--dlq-topic", help="dead-letter topic (default PAYKAFKA_DLQ_TOPIC)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per broker call (default 10)"
    )


def _settings(args: argparse.Namespace) -> Settings:
    settings = settings_from_args(args)
    if args.dlq_topic:
        settings = attrs.evolve(settings, dlq_topic=args.dlq_topic)
    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be > 0 seconds, got {args.timeout}")
    return settings


class _Payments:
    """Decodes letters' values where possible, to show the payment (exact amount) they hold.

    Best effort: a value that does not decode shows no payment, and once the registry fails
    to answer nothing more is asked of it (a listing must not wait a timeout per letter).
    """

    def __init__(self, settings: Settings) -> None:
        self._registry = RegistryClient(settings)
        self._decode = EventDeserializer(load_schema(settings.schema_path), self._schema)
        self._registry_down = False

    def _schema(self, schema_id: int) -> str:
        if self._registry_down:
            raise RegistryUnavailableError("registry skipped after an earlier failure")
        try:
            return self._registry.schema_by_id(schema_id)
        except RegistryUnavailableError:
            self._registry_down = True
            raise

    def event(self, letter: DeadLetter) -> PaymentEvent | None:
        try:
            return self._decode.decode(letter.value)[1]
        except PayKafkaError:
            return None

    def close(self) -> None:
        self._registry.close()


def _row(letter: DeadLetter, event: PaymentEvent | None = None) -> dict[str, Any]:
    origin_topic, origin_partition, origin_offset = letter.origin_key
    return {
        "reason": letter.reason,
        "replayable": letter.replayable,
        "attempts": letter.attempts,
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "origin": {"topic": origin_topic, "partition": origin_partition, "offset": origin_offset},
        "schema_id": letter.schema_id,
        "message": letter.message,
        "dlq_partition": letter.dlq_partition,
        "dlq_offset": letter.dlq_offset,
        "key": letter.key.decode("utf-8", "replace") if letter.key is not None else None,
        "value_base64": base64.b64encode(letter.value).decode() if letter.value else None,
        "event": json.loads(event.to_json()) if event is not None else None,
    }


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MESSAGE_WIDTH else line[: _MESSAGE_WIDTH - 3] + "..."


def _where(topic: str, partition: int, offset: int) -> str:
    return f"{topic}[{partition}]@{offset}"


def _origin_text(letter: DeadLetter) -> str:
    source = (letter.source_topic, letter.source_partition, letter.source_offset)
    return "same" if letter.origin_key == source else _where(*letter.origin_key)


def _table(letters: Sequence[DeadLetter], events: Sequence[PaymentEvent | None]) -> str:
    return print_table(
        [
            {
                "DLQ": f"{d.dlq_partition}@{d.dlq_offset}",
                "REASON": d.reason,
                "SOURCE": _where(d.source_topic, d.source_partition, d.source_offset),
                "ORIGIN": _origin_text(d),
                "ATTEMPTS": d.attempts,
                "SCHEMA ID": "-" if d.schema_id is None else d.schema_id,
                "PAYMENT": f"{e.amount:f} {e.currency}" if e is not None else "-",
                "MESSAGE": _short(d.message),
            }
            for d, e in zip(letters, events, strict=True)
        ],
        ["DLQ", "REASON", "SOURCE", "ORIGIN", "ATTEMPTS", "SCHEMA ID", "PAYMENT", "MESSAGE"],
    )


def _list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    queue = DeadLetterQueue(settings, timeout=args.timeout)
    letters = queue.letters(include_replayed=args.all)
    if args.reason:
        letters = [d for d in letters if d.reason == args.reason]
    payments = _Payments(settings)
    try:
        events = [payments.event(d) for d in letters]
    finally:
        payments.close()
    rows = [_row(d, e) for d, e in zip(letters, events, strict=True)]
    which = "dead letters" if args.all else "pending dead letters"
    if not letters:
        human = f"no {which} on {queue.topic}"
    else:
        human = f"{len(letters)} {which} on {queue.topic}\n{_table(letters, events)}"
    emit(args, rows, human)
    return 0


def _replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    queue = DeadLetterQueue(settings, timeout=args.timeout)
    stopping = threading.Event()
    with stop_on_signals(stopping.set) as received:
        result = queue.replay(
            reason=args.reason,
            dry_run=args.dry_run,
            force=args.force,
            should_stop=stopping.is_set,
        )
    verb = "would replay" if result.dry_run else "replayed"
    where = ", ".join(f"{n} to {topic}" for topic, n in sorted(result.by_topic.items()))
    human = f"{verb} {result.replayed} dead letter(s)" + (f" ({where})" if where else "")
    if args.reason:
        human += f" of reason {args.reason}"
    refused = sum(result.refused.values())
    others = result.kept - refused - result.deferred
    stay = "would stay" if result.dry_run else "stay"
    if others:
        human += f"; {others} of other reasons {stay} pending on {queue.topic}"
    if refused:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(result.refused.items()))
        human += (
            f"; {refused} {stay} pending because replaying cannot cure them ({reasons}); "
            "--reason R --force replays them anyway"
        )
    if result.deferred:
        human += f"; {result.deferred} left for the next run"
    if received:
        human = f"Stopped by {received[0]}: " + human
    if result.dry_run and result.letters:
        human += "\n" + _table(result.letters, [None] * len(result.letters))
    emit(
        args,
        {
            "replayed": result.replayed,
            "kept": result.kept,
            "refused": dict(result.refused),
            "deferred": result.deferred,
            "superseded": result.superseded,
            "by_topic": dict(result.by_topic),
            "dry_run": result.dry_run,
            "stopped": result.stopped,
            "reason": args.reason,
            "letters": [_row(d) for d in result.letters],
        },
        human,
    )
    return 0
