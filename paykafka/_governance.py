"""The schema gate: may this process produce with this schema?

Producers call :meth:`SchemaGate.admit` before anything is sent. It returns the schema id to
frame events with, or raises with an explanation; nothing is produced with a schema the
subject's rule refuses. The level a team set on the subject is never lowered: paykafka sets
its own level only on a subject that has none.
"""

from __future__ import annotations

import logging

from paykafka._errors import (
    IncompatibleSchemaError,
    SchemaError,
    SchemaNotFoundError,
    SubjectNotFoundError,
)
from paykafka._registry import RegistryClient
from paykafka._schema import PaymentSchema
from paykafka._settings import Settings

__all__ = ["SchemaGate"]

log = logging.getLogger(__name__)


class SchemaGate:
    """Admits a schema for production under ``settings.subject``."""

    def __init__(self, registry: RegistryClient, settings: Settings) -> None:
        self._registry = registry
        self._settings = settings

    def admit(self, schema: PaymentSchema) -> int:
        """The id to produce with; registers first when ``auto_register`` allows it."""
        subject = self._settings.subject
        try:
            return self._registry.lookup(subject, schema.text).schema_id
        except (SubjectNotFoundError, SchemaNotFoundError):
            pass
        if not self._settings.auto_register:
            raise SchemaError(
                f"the schema from {schema.source or 'the given text'} is not registered under "
                f"{subject}, and auto_register is off (governed mode): register it first with "
                "`paykafka schema register`, or deploy the schema version that is registered"
            )
        if self._registry.versions_or_empty(subject):
            verdict = self._registry.test_compatibility(subject, schema.text)
            if not verdict.is_compatible:
                level = self._registry.compatibility(subject) or "the global level"
                raise IncompatibleSchemaError(
                    f"the schema from {schema.source or 'the given text'} breaks {subject}'s "
                    f"{level} rule; nothing was produced. Fix the schema or evolve it safely "
                    "(see README: schema evolution)",
                    verdict.messages,
                )
        else:
            self._ensure_level(subject)
        return self._registry.register(subject, schema.text)

    def _ensure_level(self, subject: str) -> None:
        current = self._registry.compatibility(subject)
        wanted = self._settings.compatibility
        if current is None:
            self._registry.set_compatibility(wanted, subject)
            log.info("set %s compatibility to %s", subject, wanted)
        elif current != wanted:
            log.info(
                "%s keeps its compatibility level %s (paykafka would set %s on a new subject)",
                subject,
                current,
                wanted,
            )
