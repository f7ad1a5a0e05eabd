"""A small, typed client for the Confluent Schema Registry REST API.

Why not confluent-kafka's ``SchemaRegistryClient``: it reports an unreachable registry, a
timeout and a 404 through the same generic error, which is how a registry outage ends up
treated as a bad message. Here every failure maps to one branch of
:class:`~paykafka.RegistryError`, with ``retriable`` set only for outages, and every call has a
timeout. It speaks to Confluent Schema Registry and to Apicurio's ``/apis/ccompat/v7``.

Schemas by id never change once registered, so they are cached for the client's lifetime;
nothing else is cached here.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs
import httpx

from paykafka._errors import (
    RegistryAuthenticationError,
    RegistryAuthorizationError,
    RegistryError,
    RegistryIncompatibleError,
    RegistryUnavailableError,
    SchemaNotFoundError,
    SubjectNotFoundError,
    TlsError,
)
from paykafka._schema_cache import SchemaCache
from paykafka._security import speaks_tls, tls_context
from paykafka._settings import Settings

__all__ = ["CompatibilityResult", "RegisteredSchema", "RegistryClient"]

log = logging.getLogger(__name__)

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

# Confluent's error codes (Apicurio's ccompat API reuses most of them).
_SUBJECT_NOT_FOUND = 40401
_VERSION_NOT_FOUND = 40402
_SCHEMA_NOT_FOUND = 40403
_SUBJECT_LEVEL_NOT_CONFIGURED = 40408
_INVALID_SCHEMA = 42201
_ALREADY_SOFT_DELETED = 40406


@attrs.frozen
class RegisteredSchema:
    """A schema version as the registry holds it."""

    subject: str
    version: int
    schema_id: int
    schema: str


@attrs.frozen
class CompatibilityResult:
    """The registry's verdict on a candidate schema, with its explanations."""

    is_compatible: bool
    messages: tuple[str, ...] = ()


class RegistryClient:
    """Synchronous registry client; thread-safe, one connection pool.

    Pass ``transport`` only in tests of pure logic (an ``httpx.MockTransport``).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings or Settings.from_env()
        headers = {"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE}
        auth: httpx.Auth | None = None
        s = self._settings
        if s.registry_token:
            headers["Authorization"] = f"Bearer {s.registry_token}"
        elif s.registry_username is not None:
            auth = httpx.BasicAuth(s.registry_username, s.registry_password or "")
        verify: ssl.SSLContext | bool = True
        if s.registry_ca_location:
            verify = tls_context(s.registry_ca_location, "PAYKAFKA_REGISTRY_CA_LOCATION")
        self._http = httpx.Client(
            base_url=s.registry_url,
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(s.registry_timeout),
            transport=transport,
            verify=verify,
        )
        self._by_id: dict[int, str] = {}
        self._lock = threading.Lock()
        self._disk = SchemaCache(s.schema_cache_dir, s.registry_url) if s.schema_cache_dir else None

    @property
    def url(self) -> str:
        """The registry base URL (never contains credentials)."""
        return self._settings.registry_url

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- schemas -----------------------------------------------------------------------------

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` under ``subject`` (idempotent); returns its id."""
        body = self._request("POST", f"/subjects/{_q(subject)}/versions", {"schema": schema})
        schema_id = int(body["id"])
        with self._lock:
            self._by_id.setdefault(schema_id, schema)
        if self._disk is not None:
            self._disk.put_schema_id(subject, schema, schema_id)
        log.info(
            "registered schema under %s as id %d", subject, schema_id, extra={"subject": subject}
        )
        return schema_id

    def lookup(self, subject: str, schema: str) -> RegisteredSchema:
        """The registered version of ``subject`` equal to ``schema``; never registers.

        Raises :class:`SubjectNotFoundError` or :class:`SchemaNotFoundError` when absent.
        With a schema cache, an unreachable registry is answered from the cache when this
        schema was seen before (``version`` is then ``-1``: unknown).
        """
        try:
            body = self._request("POST", f"/subjects/{_q(subject)}", {"schema": schema})
        except RegistryUnavailableError:
            cached = self._disk.schema_id(subject, schema) if self._disk is not None else None
            if cached is None:
                raise
            log.warning(
                "the schema registry at %s is unreachable; %s uses schema id %d from the "
                "schema cache",
                self.url,
                subject,
                cached,
                extra={"subject": subject, "schema_id": cached},
            )
            return RegisteredSchema(subject=subject, version=-1, schema_id=cached, schema=schema)
        found = _registered(body, subject)
        with self._lock:
            self._by_id.setdefault(found.schema_id, found.schema)
        if self._disk is not None:
            self._disk.put_schema_id(subject, schema, found.schema_id)
        return found

    def schema_by_id(self, schema_id: int) -> str:
        """The schema text registered under ``schema_id`` (cached: ids are immutable)."""
        with self._lock:
            cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        text = self._disk.schema(schema_id) if self._disk is not None else None
        if text is None:
            body = self._request("GET", f"/schemas/ids/{int(schema_id)}")
            text = str(body["schema"])
            if self._disk is not None:
                self._disk.put_schema(schema_id, text)
        with self._lock:
            self._by_id[schema_id] = text
        return text

    def cached_schema(self, schema_id: int) -> str | None:
        """The schema for ``schema_id`` if this client has already seen it, without a call."""
        with self._lock:
            return self._by_id.get(schema_id)

    def version(self, subject: str, version: int | str = "latest") -> RegisteredSchema:
        """One version of a subject (``"latest"`` by default)."""
        body = self._request("GET", f"/subjects/{_q(subject)}/versions/{_q(str(version))}")
        return _registered(body, subject)

    def versions(self, subject: str) -> list[int]:
        """Version numbers registered under ``subject``, oldest first."""
        body = self._request("GET", f"/subjects/{_q(subject)}/versions")
        return sorted(int(v) for v in body)

    def versions_or_empty(self, subject: str) -> list[int]:
        """Like :meth:`versions`, but an unknown subject has no versions instead of failing."""
        try:
            return self.versions(subject)
        except SubjectNotFoundError:
            return []

    def subjects(self) -> list[str]:
        """All subjects."""
        body = self._request("GET", "/subjects")
        return sorted(str(s) for s in body)

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Delete a subject (soft, then hard when ``permanent``); returns the versions removed."""
        body = self._request("DELETE", f"/subjects/{_q(subject)}")
        if permanent:
            body = self._request("DELETE", f"/subjects/{_q(subject)}", params={"permanent": "true"})
        return [int(v) for v in body]

    def deleted_or_live_version(self, subject: str, version: int) -> RegisteredSchema:
        """One version, soft-deleted or not (``?deleted=true``), e.g. to say what a delete
        removes."""
        body = self._request(
            "GET",
            f"/subjects/{_q(subject)}/versions/{int(version)}",
            params={"deleted": "true"},
        )
        return _registered(body, subject)

    def delete_version(self, subject: str, version: int, *, permanent: bool = False) -> None:
        """Delete one version: soft (hidden, restored by registering it again), then hard.

        Permanent deletion needs a soft one first on both registries; an already soft-deleted
        version (``40406``) just goes on to the hard delete.
        """
        path = f"/subjects/{_q(subject)}/versions/{int(version)}"
        try:
            self._request("DELETE", path)
        except RegistryError as exc:
            if not (permanent and exc.error_code == _ALREADY_SOFT_DELETED):
                raise
        if permanent:
            self._request("DELETE", path, params={"permanent": "true"})
        log.info("deleted %s version %d%s", subject, version, " permanently" if permanent else "")

    # -- compatibility -----------------------------------------------------------------------

    def test_compatibility(
        self, subject: str, schema: str, version: int | str | None = "latest"
    ) -> CompatibilityResult:
        """Would ``schema`` be accepted under ``subject``'s rule? Asks for explanations.

        ``version=None`` checks against every version: Confluent then follows the subject's
        level (all versions only for ``*_TRANSITIVE``), Apicurio always checks all of them,
        and both check the latest only when asked for ``"latest"`` whatever the level. So ask
        for ``None`` exactly when the level is transitive to get the same answer from both.
        """
        where = "" if version is None else f"/{_q(str(version))}"
        body = self._request(
            "POST",
            f"/compatibility/subjects/{_q(subject)}/versions{where}",
            {"schema": schema},
            params={"verbose": "true"},
        )
        messages = body.get("messages") or []
        return CompatibilityResult(
            is_compatible=bool(body.get("is_compatible")),
            messages=tuple(str(m) for m in messages),
        )

    def compatibility(self, subject: str | None = None) -> str | None:
        """The level set on ``subject`` (``None`` if only the global default applies), or the
        global level when ``subject`` is ``None``."""
        path = "/config" if subject is None else f"/config/{_q(subject)}"
        try:
            body = self._request("GET", path)
        except SubjectNotFoundError:
            return None
        level = body.get("compatibilityLevel") or body.get("compatibility")
        return str(level) if level else None

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        """Set the compatibility level on ``subject`` (or globally); returns the level set."""
        path = "/config" if subject is None else f"/config/{_q(subject)}"
        body = self._request("PUT", path, {"compatibility": level})
        return str(body.get("compatibility") or body.get("compatibilityLevel") or level)

    # -- transport ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            response = self._http.request(
                method,
                path,
                content=None if payload is None else json.dumps(payload),
                params=params,
            )
        except httpx.TimeoutException:
            raise RegistryUnavailableError(
                f"the schema registry at {self.url} did not answer {method} {path} within "
                f"{self._settings.registry_timeout}s; check it is running "
                "(paykafka stack status) or raise PAYKAFKA_REGISTRY_TIMEOUT"
            ) from None
        except httpx.TransportError as exc:
            refused = self._tls_refusal(exc)
            if refused is not None:
                raise refused from None
            raise RegistryUnavailableError(
                f"cannot reach the schema registry at {self.url} ({type(exc).__name__}); "
                "start it (paykafka stack up) or set PAYKAFKA_REGISTRY_URL"
            ) from None
        if response.is_success:
            return response.json() if response.content else {}
        raise _error_for(response, method, path, self.url)

    def _tls_refusal(self, exc: httpx.TransportError) -> TlsError | None:
        """A TLS failure behind a transport error: untrusted, expired or wrong-host
        certificate, or plain HTTP sent to an HTTPS-only registry."""
        text = str(exc)
        ca = self._settings.registry_ca_location
        trusted = f"the CA file {ca}" if ca else "the system's CA certificates"
        if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(exc.__context__, ssl.SSLError):
            lowered = text.lower()
            if "expired" in lowered:
                why = "its certificate has expired"
            elif "hostname" in lowered or "ip address mismatch" in lowered:
                why = "its certificate does not name that host"
            else:
                why = (
                    f"its certificate is not trusted by {trusted}; point "
                    "PAYKAFKA_REGISTRY_CA_LOCATION at the CA that signed it"
                )
            return TlsError(
                f"TLS to the schema registry at {self.url} failed: {why}",
                ca_location=ca,
                code="SSL",
            )
        url = self._http.base_url
        if url.scheme == "http" and url.host and url.port and speaks_tls(url.host, url.port):
            return TlsError(
                f"the schema registry at {self.url} expects HTTPS; use an https:// "
                "PAYKAFKA_REGISTRY_URL (and PAYKAFKA_REGISTRY_CA_LOCATION for a private CA)",
                code="SSL",
            )
        return None


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _registered(body: Mapping[str, Any], subject: str) -> RegisteredSchema:
    return RegisteredSchema(
        subject=str(body.get("subject", subject)),
        version=int(body["version"]),
        schema_id=int(body["id"]),
        schema=str(body["schema"]),
    )


def _error_for(response: httpx.Response, method: str, path: str, url: str) -> RegistryError:
    status = response.status_code
    code: int | None = None
    detail = response.text.strip()[:300]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw_code = body.get("error_code")
        code = (
            int(raw_code) if isinstance(raw_code, int | str) and str(raw_code).isdigit() else None
        )
        detail = str(body.get("message") or detail)
    where = f"{method} {url}{path}"
    if status >= 500 or status == 429:
        return RegistryUnavailableError(
            f"the schema registry failed on its side ({status}) for {where}: {detail}; "
            "retry later or check the registry's logs",
            status=status,
            error_code=code,
        )
    if status == 401:
        return RegistryAuthenticationError(
            f"the schema registry refused the credentials ({status}) for {where}; check "
            "PAYKAFKA_REGISTRY_USERNAME / PAYKAFKA_REGISTRY_PASSWORD or PAYKAFKA_REGISTRY_TOKEN",
            status=status,
            error_code=code,
        )
    if status == 403:
        return RegistryAuthorizationError(
            f"the schema registry does not allow {method} {path} to this user ({status}); "
            "ask its operator for the role, or use PAYKAFKA_REGISTRY_USERNAME of a user who "
            "may",
            status=status,
            error_code=code,
            resource=path,
            operation=method,
        )
    if status == 404:
        if code == _SCHEMA_NOT_FOUND or path.startswith("/schemas/ids/"):
            return SchemaNotFoundError(
                f"no such schema: {detail} ({where})", status=status, error_code=code
            )
        if code == _SUBJECT_LEVEL_NOT_CONFIGURED or path.startswith("/config/"):
            return SubjectNotFoundError(
                f"no compatibility level is set: {detail}", status=status, error_code=code
            )
        return SubjectNotFoundError(
            f"not registered: {detail} ({where}); register the schema first "
            "(paykafka schema register) or enable auto_register",
            status=status,
            error_code=code,
        )
    if status == 409:
        return RegistryIncompatibleError(
            f"the schema registry refused the schema as incompatible ({where})",
            [detail] if detail else [],
            status=status,
            error_code=code,
        )
    if status == 422 or code == _INVALID_SCHEMA:
        return RegistryError(
            f"the schema registry rejected the request as invalid ({status}) for {where}: {detail}",
            status=status,
            error_code=code,
        )
    return RegistryError(
        f"unexpected answer {status} from the schema registry for {where}: {detail}",
        status=status,
        error_code=code,
    )
