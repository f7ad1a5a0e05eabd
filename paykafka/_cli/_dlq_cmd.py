"""``paykafka dlq list | replay``: look at dead letters, and send them back once fixed.

A thin view over :class:`paykafka._dlq.DeadLetterQueue`, which holds the logic (what is
pending, how a replay is recorded so it is never repeated); this module parses flags and
prints.
"""

from __future__ import annotations

import argparse
import base64
from typing import Any

import attrs

from paykafka._cli._common import add_connection_flags, emit, print_table, settings_from_args
from paykafka._dlq import DeadLetter, DeadLetterQueue
from paykafka._errors import ConfigError
from paykafka._settings import Settings

_MESSAGE_WIDTH = 70

_HOW = """\
A dead letter is pending until a replay passes it: the replay commits the offsets of the
consumer group <group>.dlq-replay on the dead-letter topic only after every record it wrote
back was acknowledged, so the same letter is never replayed twice (a replay that fails
half-way is repeated whole). With --reason, letters of other reasons stay pending (those the
replay's offsets pass are appended again at the end of the dead-letter topic).

exit codes: 0 success, 1 error (one line on stderr says what and what to do), 2 bad
arguments, 5 no broker answered (start one: paykafka stack up)
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
        help="pending dead letters: reason, source topic/partition/offset, schema id, message",
        description="List dead letters not replayed yet (all of them with --all).",
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
            "deploy the fixed handler): a letter that fails again is dead-lettered again."
        ),
        epilog=_HOW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_flags(replay)
    replay.add_argument("--reason", help="replay only letters of this reason")
    replay.add_argument(
        "--dry-run", action="store_true", help="say what would be replayed; write nothing"
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


def _row(letter: DeadLetter) -> dict[str, Any]:
    return {
        "reason": letter.reason,
        "source_topic": letter.source_topic,
        "source_partition": letter.source_partition,
        "source_offset": letter.source_offset,
        "schema_id": letter.schema_id,
        "message": letter.message,
        "dlq_partition": letter.dlq_partition,
        "dlq_offset": letter.dlq_offset,
        "key": letter.key.decode("utf-8", "replace") if letter.key is not None else None,
        "value_base64": base64.b64encode(letter.value).decode() if letter.value else None,
    }


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MESSAGE_WIDTH else line[: _MESSAGE_WIDTH - 3] + "..."


def _list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    queue = DeadLetterQueue(settings, timeout=args.timeout)
    letters = queue.letters(include_replayed=args.all)
    if args.reason:
        letters = [d for d in letters if d.reason == args.reason]
    rows = [_row(d) for d in letters]
    which = "dead letters" if args.all else "pending dead letters"
    if not letters:
        human = f"no {which} on {queue.topic}"
    else:
        table = print_table(
            [
                {
                    "DLQ": f"{d.dlq_partition}@{d.dlq_offset}",
                    "REASON": d.reason,
                    "SOURCE": f"{d.source_topic}[{d.source_partition}]@{d.source_offset}",
                    "SCHEMA ID": "-" if d.schema_id is None else d.schema_id,
                    "MESSAGE": _short(d.message),
                }
                for d in letters
            ],
            ["DLQ", "REASON", "SOURCE", "SCHEMA ID", "MESSAGE"],
        )
        human = f"{len(letters)} {which} on {queue.topic}\n{table}"
    emit(args, rows, human)
    return 0


def _replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    queue = DeadLetterQueue(settings, timeout=args.timeout)
    result = queue.replay(reason=args.reason, dry_run=args.dry_run)
    verb = "would replay" if result.dry_run else "replayed"
    where = ", ".join(f"{n} to {topic}" for topic, n in sorted(result.by_topic.items()))
    human = f"{verb} {result.replayed} dead letter(s)" + (f" ({where})" if where else "")
    if args.reason:
        human += f" of reason {args.reason}"
    if result.kept:
        kept = "would stay" if result.dry_run else "stay"
        human += f"; {result.kept} of other reasons {kept} pending on {queue.topic}"
    emit(
        args,
        {
            "replayed": result.replayed,
            "kept": result.kept,
            "by_topic": dict(result.by_topic),
            "dry_run": result.dry_run,
            "reason": args.reason,
        },
        human,
    )
    return 0
