"""A schema cache on disk, so a restarted producer or tracker starts while the registry is down.

Opt-in with ``Settings.schema_cache_dir`` (``PAYKAFKA_SCHEMA_CACHE_DIR``). Two things are
kept, both safe to keep forever because the registry never changes them:

* the schema text of an id (``GET /schemas/ids/<id>``): a tracker that read an id once can
  decode its records after a restart without asking;
* the id a subject gave to a schema text (``POST /subjects/<subject>``): a producer that
  started once can start again without asking.

Entries live under a directory per registry URL, because ids from two registries are
unrelated. Writes are atomic (write, then rename), so a crash never leaves half a file and
two processes may share one directory. The cache is only read when the registry cannot be
reached or when the answer is immutable (an id's schema), never to override the registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

__all__ = ["SchemaCache"]

log = logging.getLogger(__name__)


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


class SchemaCache:
    """Immutable registry answers kept under ``directory`` for the registry at ``registry_url``."""

    def __init__(self, directory: Path, registry_url: str) -> None:
        self.root = Path(directory) / _digest(registry_url)[:16]

    def schema(self, schema_id: int) -> str | None:
        """The cached schema text of ``schema_id``, if any."""
        return self._read(self.root / "ids" / f"{int(schema_id)}.avsc")

    def put_schema(self, schema_id: int, text: str) -> None:
        """Remember the schema text of ``schema_id``."""
        self._write(self.root / "ids" / f"{int(schema_id)}.avsc", text)

    def schema_id(self, subject: str, text: str) -> int | None:
        """The id ``subject`` gave to the schema ``text``, if it was seen before."""
        raw = self._read(self._lookup_path(subject, text))
        if raw is None:
            return None
        try:
            value = json.loads(raw)["id"]
        except (ValueError, KeyError, TypeError):
            return None
        return value if isinstance(value, int) and value >= 0 else None

    def put_schema_id(self, subject: str, text: str, schema_id: int) -> None:
        """Remember that ``subject`` registered ``text`` as ``schema_id``."""
        self._write(
            self._lookup_path(subject, text), json.dumps({"subject": subject, "id": schema_id})
        )
        self.put_schema(schema_id, text)

    def _lookup_path(self, subject: str, text: str) -> Path:
        return self.root / "subjects" / f"{_digest(subject, text)}.json"

    def _read(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read schema cache file %s: %s", path, exc.strerror)
            return None

    def _write(self, path: Path, text: str) -> None:
        # A cache that cannot be written only costs a registry call later: never fatal.
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                Path(tmp).replace(path)
            except BaseException:
                with contextlib.suppress(OSError):
                    Path(tmp).unlink()
                raise
        except OSError as exc:
            log.warning("cannot write schema cache file %s: %s", path, exc.strerror)
