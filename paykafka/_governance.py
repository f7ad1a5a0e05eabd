"""The schema gate: may this process produce with this schema?

Producers call :meth:`SchemaGate.admit` before anything is sent. It returns the schema id to
frame events with, or raises with an explanation; nothing is produced with a schema the
subject's rule refuses. ``paykafka schema check`` and ``register`` use the same gate, so a
producer refuses to start with exactly the explanation the command line prints.

Who decides: online, both the registry and paykafka's own checker (:mod:`paykafka._compat`)
are asked, and a schema either refuses is refused. The checker says *which field* breaks *which
rule* (Apicurio answers only yes or no), applies paykafka's policy, which the registry does not
know (enum symbols are never removed, logical types never change meaning), and is stricter than
the registry in a few deliberate places (docs/schema-evolution.md lists them): the gate must
refuse online whatever ``paykafka schema check --offline`` refuses. Offline, the checker alone
decides, against the released versions kept in ``schemas/history/``.

A schema already registered as version N is judged against the versions before it, by the
checker alone: it was admissible when it arrived or it is not, whatever came later, and the
registry cannot be asked about "the versions before N". So a producer never starts with a
schema ``check`` calls incompatible just because someone registered it by hand.

The level a team set on the subject is never lowered: paykafka sets its own level only on a
subject that has none, and warns when the level it finds is weaker than the configured one.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import attrs

from paykafka import _compat
from paykafka._errors import (
    IncompatibleSchemaError,
    RegistryIncompatibleError,
    SchemaError,
    SchemaNotFoundError,
    SubjectNotFoundError,
)
from paykafka._registry import RegisteredSchema, RegistryClient
from paykafka._schema import PaymentSchema, default_schema_path, load_schema
from paykafka._settings import Settings

__all__ = [
    "HistoryVersion",
    "SchemaGate",
    "Verdict",
    "check_offline",
    "default_history_dir",
    "history_file",
    "history_names",
    "load_history",
]

log = logging.getLogger(__name__)

_HISTORY_FILE = re.compile(r"^payment\.v(\d+)\.avsc$")


def default_history_dir() -> Path:
    """``schemas/history/`` next to the contract in use (the checkout's, or the wheel's copy)."""
    return default_schema_path().parent / "history"


@attrs.frozen
class HistoryVersion:
    """A released schema version kept in the repository."""

    version: int
    path: Path
    schema: PaymentSchema


def load_history(directory: str | Path | None = None) -> list[HistoryVersion]:
    """The released versions in ``directory`` (``payment.v<N>.avsc``), oldest first.

    Numbering must run 1, 2, 3... without gaps: a missing file would silently drop the one
    version a reader in production might still use from every check.
    """
    folder = Path(directory) if directory is not None else default_history_dir()
    if not folder.is_dir():
        raise SchemaError(
            f"no schema history folder at {folder}; released versions are kept there as "
            "payment.v1.avsc, payment.v2.avsc... (pass --history DIR or create it)"
        )
    found: dict[int, Path] = {}
    for path in folder.iterdir():
        match = _HISTORY_FILE.match(path.name)
        if match:
            found[int(match.group(1))] = path
    if not found:
        raise SchemaError(f"{folder} holds no payment.v<N>.avsc files; nothing to check against")
    expected = list(range(1, max(found) + 1))
    missing = [n for n in expected if n not in found]
    if missing:
        raise SchemaError(
            f"{folder} lacks payment.v{missing[0]}.avsc: history must number versions "
            f"1..{max(found)} without gaps; restore the missing release"
        )
    return [HistoryVersion(n, found[n], load_schema(found[n])) for n in expected]


@attrs.frozen
class Verdict:
    """Whether a schema may be used under a subject's rule, with every reason why not."""

    compatible: bool
    #: The level applied (the subject's own in the registry, or the configured one offline).
    level: str
    #: ``registry`` when the registry was asked, ``offline`` for schemas/history/ alone.
    mode: Literal["registry", "offline"]
    #: What the candidate was read from.
    candidate: str
    #: Versions checked against, oldest first (``version 2`` or ``payment.v2.avsc``).
    checked_against: tuple[str, ...]
    #: One sentence per problem, naming the field and the rule.
    problems: tuple[str, ...] = ()
    #: The registry's own answer (``None`` offline or when it was not asked).
    registry_compatible: bool | None = None
    #: Reasons the registry gave, verbatim (Apicurio gives none).
    registry_messages: tuple[str, ...] = ()
    #: Anything else worth knowing (fallbacks, disagreements, an empty subject).
    notes: tuple[str, ...] = ()
    #: The subject in the registry, or the history folder offline.
    where: str = ""

    def headline(self) -> str:
        """One line saying what was checked and the outcome."""
        against = ", ".join(self.checked_against) or "nothing (no earlier version)"
        outcome = "compatible" if self.compatible else "INCOMPATIBLE"
        return (
            f"{self.candidate} is {outcome} under {self.where}'s {self.level} rule "
            f"(checked {self.mode}: against {against})"
        )


def check_offline(
    schema: PaymentSchema,
    level: str,
    history: Sequence[HistoryVersion] | None = None,
    *,
    history_dir: str | Path | None = None,
    notes: Sequence[str] = (),
) -> Verdict:
    """Check ``schema`` against the released versions in the repository under ``level``."""
    versions = list(history) if history is not None else load_history(history_dir)
    report = _compat.check(schema.text, [(v.path.name, v.schema.text) for v in versions], level)
    where = str(versions[0].path.parent) if versions else str(history_dir or "history")
    return Verdict(
        compatible=report.compatible,
        level=level,
        mode="offline",
        candidate=schema.source or "the schema",
        checked_against=report.checked_against,
        problems=report.messages(),
        notes=tuple(notes),
        where=where,
    )


class SchemaGate:
    """Admits a schema for production under ``settings.subject``."""

    def __init__(self, registry: RegistryClient, settings: Settings) -> None:
        self._registry = registry
        self._settings = settings

    @property
    def subject(self) -> str:
        """The subject governed: ``<topic>-value``."""
        return self._settings.subject

    def admit(self, schema: PaymentSchema) -> int:
        """The id to produce with; registers first when ``auto_register`` allows it.

        A schema registered already is still checked (against the versions before it): being
        registered is no proof it passed the gate.
        """
        subject = self.subject
        action = "the producer did not start; nothing was produced"
        found = self._lookup(schema)
        if found is not None:
            if found.version > 1:  # -1: answered from the schema cache, registry unreachable
                verdict = self.check(schema)
                if not verdict.compatible:
                    raise IncompatibleSchemaError(_refusal(verdict, action), verdict.problems)
            return found.schema_id
        if not self._settings.auto_register:
            raise SchemaError(
                f"the schema from {schema.source or 'the given text'} is not registered under "
                f"{subject}, and auto_register is off (governed mode): register it first with "
                "`paykafka schema register`, or deploy the schema version that is registered"
            )
        return self.register(schema, action=action)

    def _lookup(self, schema: PaymentSchema) -> RegisteredSchema | None:
        try:
            return self._registry.lookup(self.subject, schema.text)
        except (SubjectNotFoundError, SchemaNotFoundError):
            return None

    def register(self, schema: PaymentSchema, *, action: str = "nothing was registered") -> int:
        """Check ``schema`` like ``paykafka schema check``, then register it; returns its id.

        ``action`` finishes the refusal message (what did not happen because of it).
        """
        subject = self.subject
        verdict = self.check(schema)
        if not verdict.compatible:
            raise IncompatibleSchemaError(_refusal(verdict, action), verdict.problems)
        if not verdict.checked_against:
            self._ensure_level(subject)
        try:
            return self._registry.register(subject, schema.text)
        except RegistryIncompatibleError as exc:
            # Someone registered in between, or the registry applies a rule we do not model:
            # still explain in fields when we can.
            verdict = self.check(schema)
            raise RegistryIncompatibleError(
                _refusal(verdict, action),
                verdict.problems or exc.problems,
                status=exc.status,
                error_code=exc.error_code,
            ) from exc

    def level(self) -> str:
        """The level the registry applies to the subject: its own, else the global one."""
        return (
            self._registry.compatibility(self.subject)
            or self._registry.compatibility(None)
            or "BACKWARD"  # both registries' documented default when nothing is configured
        )

    def check(self, schema: PaymentSchema) -> Verdict:
        """Ask the registry, and explain its verdict field by field with our own checker."""
        subject = self.subject
        candidate = schema.source or "the schema"
        invalid = _compat.schema_errors(schema.text)
        if invalid:
            return Verdict(
                compatible=False,
                level=self._settings.compatibility,
                mode="registry",
                candidate=candidate,
                checked_against=(),
                problems=tuple(dict.fromkeys(str(p) for p in invalid)),
                notes=("not a valid Avro schema, so the registry was not asked",),
                where=subject,
            )
        numbers = self._registry.versions_or_empty(subject)
        if not numbers:
            return Verdict(
                compatible=True,
                level=self._settings.compatibility,
                mode="registry",
                candidate=candidate,
                checked_against=(),
                notes=(
                    (
                        f"{subject} has no versions yet: the first registration sets its level "
                        f"to {self._settings.compatibility} (unless one is set already); use "
                        "--offline to check against schemas/history/"
                    ),
                ),
                where=subject,
            )
        level = self.level()
        registered = [self._registry.version(subject, n) for n in numbers]
        found = self._lookup(schema)
        if found is not None and found.version > 0:
            return self._check_registered(schema, found.version, registered, level)
        transitive = level.endswith("_TRANSITIVE")
        said = self._registry.test_compatibility(
            subject, schema.text, version=None if transitive else "latest"
        )
        names = history_names()
        report = _compat.check(
            schema.text, [(_label(r, names), r.schema) for r in registered], level
        )
        return _combine(said.is_compatible, said.messages, report, candidate, subject)

    def _check_registered(
        self,
        schema: PaymentSchema,
        version: int,
        registered: Sequence[RegisteredSchema],
        level: str,
    ) -> Verdict:
        """A registered version, judged against the ones before it by our checker alone."""
        names = history_names()
        earlier = [(_label(r, names), r.schema) for r in registered if r.version < version]
        report = _compat.check(schema.text, earlier, level)
        return Verdict(
            compatible=report.compatible,
            level=level,
            mode="registry",
            candidate=schema.source or "the schema",
            checked_against=report.checked_against,
            problems=report.messages(),
            notes=(
                (
                    f"already registered as version {version}: checked against the versions "
                    "before it by paykafka's checker (the registry cannot be asked about those)"
                ),
            ),
            where=self.subject,
        )

    def _ensure_level(self, subject: str) -> None:
        current = self._registry.compatibility(subject)
        wanted = self._settings.compatibility
        if current is None:
            self._registry.set_compatibility(wanted, subject)
            log.info("set %s compatibility to %s", subject, wanted)
        elif _compat.level_is_weaker(current, wanted):
            log.warning(
                "%s keeps the level %s someone set, which is weaker than the configured %s; "
                "paykafka never lowers or overrides a level (raise it with "
                "`paykafka schema compat %s`)",
                subject,
                current,
                wanted,
                wanted,
            )
        elif current != wanted:
            log.info(
                "%s keeps its compatibility level %s (paykafka would set %s on a new subject)",
                subject,
                current,
                wanted,
            )


def _same(text: str) -> str:
    """A schema text in a form equal for equal schemas, however they were formatted."""
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def history_names() -> dict[str, str]:
    """Released files by schema (``schemas/history/``), to name registry versions with them:
    file numbers and registry versions need not line up (a version registered by hand, or
    one the registry folded into an earlier one), so listings show both."""
    try:
        return {_same(v.schema.text): v.path.name for v in load_history()}
    except SchemaError:
        return {}


def history_file(schema: str, names: Mapping[str, str]) -> str | None:
    """The released file holding ``schema`` (from :func:`history_names`), if any."""
    return names.get(_same(schema))


def _label(registered: RegisteredSchema, names: Mapping[str, str]) -> str:
    """``version 2``, or ``version 2 (payment.v3.avsc)`` when a released file holds it."""
    name = history_file(registered.schema, names)
    return f"version {registered.version}" + (f" ({name})" if name else "")


def _combine(
    registry_ok: bool,
    registry_messages: Sequence[str],
    report: _compat.CompatReport,
    candidate: str,
    subject: str,
) -> Verdict:
    """Merge the registry's verdict with our checker's: either one refusing refuses."""
    avro = [p for p in report.problems if p.rule != _compat.POLICY]
    policy = [p for p in report.problems if p.rule == _compat.POLICY]
    notes: list[str] = []
    problems: list[str] = [str(p) for p in avro]
    if registry_ok:
        if avro:
            notes.append(
                "the registry alone would accept it; paykafka's checker is stricter here on "
                "purpose (docs/schema-evolution.md: deliberate differences)"
            )
    else:
        if not avro:
            reason = "; ".join(registry_messages) or "it gave no reason"
            problems.append(
                f"the registry refused it under {report.level} ({reason}), and paykafka's "
                "checker found no field-level cause; compare with `paykafka schema diff`"
            )
        if not registry_messages:
            notes.append("the registry gave no reasons; the explanations are paykafka's")
    problems.extend(str(p) for p in policy)
    if policy:
        notes.append("paykafka policy breaks are refused even where the registry would accept")
    return Verdict(
        compatible=registry_ok and not report.problems,
        level=report.level,
        mode="registry",
        candidate=candidate,
        checked_against=report.checked_against,
        problems=tuple(dict.fromkeys(problems)),
        registry_compatible=registry_ok,
        registry_messages=tuple(registry_messages),
        notes=tuple(notes),
        where=subject,
    )


def _refusal(verdict: Verdict, action: str) -> str:
    return (
        f"{verdict.candidate} breaks {verdict.where}'s {verdict.level} rule (checked against "
        f"{_compat.join_labels(verdict.checked_against)}); {action}. Fix the schema or evolve it "
        "safely (README: schema evolution; `paykafka schema check` explains)"
    )
