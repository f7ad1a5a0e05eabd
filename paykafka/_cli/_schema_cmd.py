"""``paykafka schema check | register | versions | show | diff | compat | delete``: governance.

The commands share the producer's gate (:class:`~paykafka._governance.SchemaGate`), so
``check`` prints exactly why a producer would refuse to start. Exit codes are part of the
interface (scripts and CI branch on them), listed in ``paykafka schema --help``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from paykafka import _compat
from paykafka._admin import _UNKNOWN_TOPIC, TopicReader
from paykafka._cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNREACHABLE,
    add_connection_flags,
    emit,
    fail,
    print_table,
    settings_from_args,
)
from paykafka._errors import (
    ConfigError,
    IncompatibleSchemaError,
    KafkaError,
    RegistryUnavailableError,
    SchemaError,
    SubjectNotFoundError,
)
from paykafka._governance import (
    SchemaGate,
    Verdict,
    check_offline,
    history_file,
    history_names,
)
from paykafka._registry import RegisteredSchema, RegistryClient
from paykafka._schema import load_schema
from paykafka._serde import EventDeserializer
from paykafka._settings import Settings

# An incompatible schema is the command failing at its one job.
EXIT_INCOMPATIBLE = EXIT_FAILURE

_EXIT_HELP = """\
exit codes:
  0  ok (compatible, registered, shown)
  1  incompatible schema, refused change, or another failure (explained on stderr)
  2  usage error (bad arguments, unknown version or file)
  5  schema registry unreachable (`check` too, unless --offline or --fallback-offline)
"""

_Handler = Callable[[argparse.Namespace], int]


def register(sub: Any) -> None:
    """Add the ``schema`` command group to the top-level parser's subparsers."""
    schema = sub.add_parser(
        "schema",
        help="check, register and inspect the payment schema's versions",
        description=(
            "Govern schemas/payment.avsc under the <topic>-value subject: check compatibility "
            "(against the registry, or offline against schemas/history/), register, inspect."
        ),
        epilog=_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = schema.add_subparsers(dest="schema_command", metavar="ACTION", required=True)

    def command(name: str, handler: _Handler, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_EXIT_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_connection_flags(parser)
        parser.set_defaults(func=handler)
        return parser

    check = command(
        "check",
        _check,
        "is this schema file compatible with every version under the subject's rule?",
    )
    check.add_argument(
        "path",
        nargs="?",
        help="schema file (default: PAYKAFKA_SCHEMA_PATH or the packaged schemas/payment.avsc)",
    )
    check.add_argument(
        "--offline",
        action="store_true",
        help="check against schemas/history/ only, without the registry",
    )
    check.add_argument(
        "--fallback-offline",
        action="store_true",
        help="when the registry cannot be reached, check offline instead of exiting 5 "
        "(without it an unreachable registry never passes a CI gate)",
    )
    check.add_argument(
        "--level",
        choices=_compat.LEVELS,
        help="level for offline checks (default: PAYKAFKA_COMPATIBILITY, FULL_TRANSITIVE); "
        "online, the subject's own level always applies",
    )
    check.add_argument("--history", type=Path, help="history folder (default schemas/history/)")

    reg = command("register", _register, "check, then register this schema file under the subject")
    reg.add_argument("path", nargs="?", help="schema file (default: the packaged contract)")

    command("versions", _versions, "registered versions with ids and what each changed")

    show = command("show", _show, "print one registered version (default: latest)")
    show.add_argument("version", nargs="?", default="latest", help="version number or latest")

    diff = command("diff", _diff, "field-level differences between two schemas")
    diff.add_argument("a", metavar="A", help="registry version (number or latest) or .avsc path")
    diff.add_argument("b", metavar="B", help="registry version (number or latest) or .avsc path")

    delete = command(
        "delete",
        _delete,
        "delete a registered version (soft; --permanent for good), refusing while events "
        "written with it are still on the topic",
    )
    delete.add_argument("version", help="the version number to delete")
    delete.add_argument(
        "--permanent", action="store_true", help="delete for good (after the soft delete)"
    )
    delete.add_argument(
        "--force",
        action="store_true",
        help="delete even though events written with it are still on the topic (they become "
        "unreadable: unknown schema id)",
    )

    compat = command("compat", _compat_level, "read, or set, the subject's compatibility level")
    compat.add_argument("level", nargs="?", choices=_compat.LEVELS, help="the level to set")
    compat.add_argument(
        "--force",
        action="store_true",
        help="allow setting a level weaker than the current one (never done silently)",
    )


# -- check ---------------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    schema = load_schema(args.path or settings.schema_path)
    level = args.level or settings.compatibility
    fell_back = False
    if args.offline:
        verdict = check_offline(schema, level, history_dir=args.history)
    else:
        try:
            with RegistryClient(settings) as registry:
                verdict = SchemaGate(registry, settings).check(schema)
        except RegistryUnavailableError as exc:
            if not args.fallback_offline:
                return fail(
                    f"{exc}; nothing was checked. Pass --offline to check against "
                    "schemas/history/ only, or --fallback-offline to do so whenever the "
                    "registry cannot be reached",
                    EXIT_UNREACHABLE,
                )
            fell_back = True
            verdict = check_offline(
                schema,
                level,
                history_dir=args.history,
                notes=(f"{exc}; so checked offline against the repository's history instead",),
            )
    emit(
        args,
        _verdict_data(verdict, settings, fell_back),
        _verdict_text(verdict, settings, fell_back),
    )
    return EXIT_OK if verdict.compatible else EXIT_INCOMPATIBLE


def _verdict_data(verdict: Verdict, settings: Settings, fell_back: bool) -> dict[str, Any]:
    data = attrs.asdict(verdict)
    data["registry_url"] = settings.registry_url if verdict.mode == "registry" else None
    data["registry_unreachable"] = fell_back
    return data


def _verdict_text(verdict: Verdict, settings: Settings, fell_back: bool) -> str:
    if verdict.mode == "registry":
        mode = f"registry ({settings.registry_url}, subject {verdict.where})"
    elif fell_back:
        mode = f"offline, registry unreachable (history in {verdict.where})"
    else:
        mode = f"offline (history in {verdict.where}, no registry asked)"
    registry = ""
    if verdict.registry_compatible is not None:
        registry = f" (registry says: {'compatible' if verdict.registry_compatible else 'no'})"
    lines = [
        f"schema:          {verdict.candidate}",
        f"mode:            {mode}",
        f"level:           {verdict.level}",
        f"checked against: {', '.join(verdict.checked_against) or 'nothing'}",
        f"result:          {'compatible' if verdict.compatible else 'INCOMPATIBLE'}{registry}",
    ]
    if verdict.problems:
        lines.append("problems:")
        lines += [f"  - {p}" for p in verdict.problems]
    if verdict.registry_messages:
        lines.append("registry said:")
        lines += [f"  - {m}" for m in verdict.registry_messages]
    if verdict.notes:
        lines.append("notes:")
        lines += [f"  - {n}" for n in verdict.notes]
    return "\n".join(lines)


# -- register ------------------------------------------------------------------------------------


def _register(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    schema = load_schema(args.path or settings.schema_path)
    with RegistryClient(settings) as registry:
        # An explicit `register` is the governed way in, whatever auto_register says.
        gate = SchemaGate(registry, attrs.evolve(settings, auto_register=True))
        try:
            gate.register(schema)
        except IncompatibleSchemaError as exc:
            emit(
                args,
                {"registered": False, "subject": settings.subject, "problems": exc.problems},
                f"refused: {exc}",
            )
            return EXIT_INCOMPATIBLE
        found = registry.lookup(settings.subject, schema.text)
        level = gate.level()
    emit(
        args,
        {
            "registered": True,
            "subject": found.subject,
            "version": found.version,
            "id": found.schema_id,
            "level": level,
        },
        f"{schema.source} is {found.subject} version {found.version} (id {found.schema_id}); "
        f"level {level}",
    )
    return EXIT_OK


# -- versions, show ------------------------------------------------------------------------------


def _all_versions(registry: RegistryClient, subject: str) -> list[RegisteredSchema]:
    return [registry.version(subject, n) for n in registry.versions(subject)]


def _versions(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with RegistryClient(settings) as registry:
        try:
            registered = _all_versions(registry, settings.subject)
        except SubjectNotFoundError:
            return fail(f"nothing is registered under {settings.subject}", EXIT_INCOMPATIBLE)
    rows: list[dict[str, Any]] = []
    names = history_names()
    previous: RegisteredSchema | None = None
    for r in registered:
        changes = (
            "first version"
            if previous is None
            else "; ".join(str(c) for c in _compat.diff(previous.schema, r.schema)) or "no change"
        )
        fields = len(json.loads(r.schema).get("fields", []))
        rows.append(
            {
                "version": r.version,
                "file": history_file(r.schema, names) or "-",
                "id": r.schema_id,
                "fields": fields,
                "changes": changes,
            }
        )
        previous = r
    emit(
        args,
        {"subject": settings.subject, "versions": rows},
        f"{settings.subject}:\n"
        + print_table(rows, ("version", "file", "id", "fields", "changes")),
    )
    return EXIT_OK


def _version_arg(raw: str) -> int | str:
    if raw == "latest":
        return raw
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    raise ConfigError(f"{raw!r} is not a version: give a number (1, 2...) or latest")


def _show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    version = _version_arg(args.version)
    with RegistryClient(settings) as registry:
        found = _registered_version(registry, settings.subject, version)
    parsed = json.loads(found.schema)
    if not getattr(args, "json", False):
        # The header goes to stderr, so `paykafka schema show 1 > v1.avsc` writes pure schema.
        print(f"{found.subject} version {found.version} (id {found.schema_id})", file=sys.stderr)
    emit(
        args,
        {
            "subject": found.subject,
            "version": found.version,
            "id": found.schema_id,
            "schema": parsed,
        },
        json.dumps(parsed, indent=2, ensure_ascii=False),
    )
    return EXIT_OK


def _registered_version(
    registry: RegistryClient, subject: str, version: int | str
) -> RegisteredSchema:
    try:
        return registry.version(subject, version)
    except SubjectNotFoundError:
        known = registry.versions_or_empty(subject)
        raise ConfigError(
            f"{subject} has no version {version} (registered: "
            f"{', '.join(map(str, known)) or 'none'})"
        ) from None


# -- diff ----------------------------------------------------------------------------------------


def _diff(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    registry: RegistryClient | None = None
    try:
        sides = []
        for raw in (args.a, args.b):
            if raw.endswith(".avsc") or Path(raw).is_file():
                try:
                    schema = load_schema(raw)
                except SchemaError as exc:
                    raise ConfigError(str(exc)) from None
                sides.append((raw, schema.text))
            else:
                version = _version_arg(raw)
                registry = registry or RegistryClient(settings)
                found = _registered_version(registry, settings.subject, version)
                sides.append((f"version {found.version} (id {found.schema_id})", found.schema))
    finally:
        if registry is not None:
            registry.close()
    (a_label, a_text), (b_label, b_text) = sides
    changes = _compat.diff(a_text, b_text)
    full = _compat.check(b_text, [(a_label, a_text)], "FULL")
    data = {
        "a": a_label,
        "b": b_label,
        "changes": [attrs.asdict(c) for c in changes],
        "full_compatible": full.compatible,
        "problems": list(full.messages()),
    }
    lines = [f"--- {a_label}", f"+++ {b_label}"]
    lines += [f"  {c}" for c in changes] or ["  no field-level changes"]
    lines.append(
        "FULL compatible (each reads the other): "
        + ("yes" if full.compatible else "no\n" + "\n".join(f"  - {m}" for m in full.messages()))
    )
    emit(args, data, "\n".join(lines))
    return EXIT_OK


# -- compat --------------------------------------------------------------------------------------


def _compat_level(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    subject = settings.subject
    with RegistryClient(settings) as registry:
        own = registry.compatibility(subject)
        global_level = registry.compatibility(None)
        current = own or global_level or "BACKWARD"
        if args.level is None:
            human = f"{subject}: {current}" + (
                ""
                if own
                else f" (global level; paykafka sets {settings.compatibility} when it "
                "first registers the subject)"
            )
            emit(
                args,
                {
                    "subject": subject,
                    "level": current,
                    "own": own is not None,
                    "global": global_level,
                },
                human,
            )
            return EXIT_OK
        if _compat.level_is_weaker(args.level, current) and not args.force:
            return fail(
                f"{args.level} is weaker than {subject}'s current {current}: consumers and "
                "producers rely on that promise; pass --force if the teams reading "
                f"{settings.topic} agreed",
                EXIT_INCOMPATIBLE,
            )
        level = registry.set_compatibility(args.level, subject)
    emit(
        args,
        {"subject": subject, "level": level, "previous": current},
        f"{subject}: {current} -> {level}",
    )
    return EXIT_OK


# -- delete --------------------------------------------------------------------------------------


def _delete(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    version = _version_arg(args.version)
    if not isinstance(version, int):
        raise ConfigError(
            "name the version to delete by its number (see `paykafka schema versions`)"
        )
    subject = settings.subject
    with RegistryClient(settings) as registry:
        try:
            found = registry.deleted_or_live_version(subject, version)
        except SubjectNotFoundError:
            known = registry.versions_or_empty(subject)
            raise ConfigError(
                f"{subject} has no version {version} (registered: "
                f"{', '.join(map(str, known)) or 'none'})"
            ) from None
        count = events_written_with(settings, registry, found.schema_id)
        on_topic = (
            f"{count} event(s) on {settings.topic} were written with version {version} "
            f"(id {found.schema_id})"
        )
        if count and not args.force:
            return fail(
                f"{on_topic}; deleting it would make them unreadable (unknown schema id, dead "
                "letters). Wait until retention removes them, or pass --force",
                EXIT_INCOMPATIBLE,
            )
        registry.delete_version(subject, version, permanent=args.permanent)
    how = (
        "permanently"
        if args.permanent
        else "soft (registering the same schema restores it; --permanent removes it for good)"
    )
    emit(
        args,
        {
            "deleted": True,
            "subject": subject,
            "version": version,
            "id": found.schema_id,
            "permanent": args.permanent,
            "events_on_topic": count,
        },
        f"deleted {subject} version {version} (id {found.schema_id}), {how}; {on_topic}",
    )
    return EXIT_OK


def events_written_with(settings: Settings, registry: RegistryClient, schema_id: int) -> int:
    """How many records on the topic carry ``schema_id`` in their frame (a full scan)."""
    decoder = EventDeserializer(load_schema(settings.schema_path), registry.schema_by_id)
    with TopicReader(settings, decoder) as reader:
        try:
            reader.open(from_beginning=True)
        except KafkaError as exc:
            if exc.code == _UNKNOWN_TOPIC:
                return 0  # no topic, no events
            raise
        return sum(1 for view in reader.records(until_end=True) if view.schema_id == schema_id)
