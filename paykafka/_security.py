"""Failing fast on a secured cluster: wrong password, missing ACL, TLS trouble.

librdkafka treats a refused login or a failed TLS handshake as a connection problem: it logs,
calls ``error_cb`` and reconnects forever, so a wrong password looks like a hang or a
"transport failure" after the timeout. Each client here feeds its ``error_cb`` to a
:class:`SecurityWatch`, which keeps the first security error (classified by
:func:`paykafka._errors.security_error`); the clients wait in short slices and raise it at the
next check, so the caller gets the real reason within about a second, once.

A plaintext client against a TLS listener gets no error from librdkafka at all (the broker just
closes the connection), so when a non-TLS client cannot connect, :func:`plaintext_against_tls`
asks the first bootstrap server for a TLS handshake itself: if one succeeds, that is the answer.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any

from confluent_kafka import KafkaException

from paykafka._errors import ConfigError, SecurityError, TlsError, security_error
from paykafka._settings import Settings

__all__ = [
    "SecurityWatch",
    "client_creation_error",
    "plaintext_against_tls",
    "speaks_tls",
    "tls_context",
    "verify_failure",
    "wait_for_metadata",
]

log = logging.getLogger(__name__)

_TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
_PROBE_TIMEOUT = 1.0
_METADATA_SLICE = 0.5


class SecurityWatch:
    """Remembers the first security error a client reported; :meth:`check` raises it."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str | None = None,
        operation: str | None = None,
        group: str | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topic or settings.topic
        self._group = group or settings.group_id
        self._operation = operation
        self.error: SecurityError | None = None

    def classify(
        self, err: Any, *, resource: str | None = None, operation: str | None = None
    ) -> SecurityError | None:
        """The :class:`SecurityError` a confluent ``KafkaError`` means, or None.

        Without ``resource``, a group refusal names the settings' group and any other the
        watched topic; without ``operation``, the one the client was made for.
        """
        s = self._settings
        name = err.name()
        text = err.str()
        if resource is None:
            resource = self._group if name == "GROUP_AUTHORIZATION_FAILED" else self._topic
        if name == "_SSL" and "certificate verify failed" in text and self.error is None:
            # librdkafka does not say why; ask the server once ourselves, the same way.
            reason = verify_failure(s.bootstrap_servers, s.ssl_ca_location)
            text = f"{reason}; {text}" if reason else text
        return security_error(
            name,
            text,
            servers=s.bootstrap_servers,
            protocol=s.security_protocol,
            username=s.sasl_username,
            ca_location=s.ssl_ca_location,
            resource=resource,
            operation=operation or self._operation,
        )

    def observe(self, err: Any) -> bool:
        """Feed one ``error_cb`` error; True when it was a security error (kept if first)."""
        found = self.classify(err)
        if found is None:
            return False
        if self.error is None:
            self.error = found
        return True

    def check(self) -> None:
        """Raise the security error seen so far, if any."""
        if self.error is not None:
            raise self.error

    def diagnose(self) -> None:
        """After a failed connection: raise a security error if one explains it."""
        self.check()
        found = plaintext_against_tls(self._settings)
        if found is not None:
            self.error = found
            raise found


def wait_for_metadata(
    client: Any, watch: SecurityWatch, timeout: float, *, topic: str | None = None
) -> Any:
    """Cluster metadata from an admin client or consumer, raising a security error early.

    Asked in short slices: between them the client's errors are served, so a refused login
    or a TLS failure is raised as such within about a second, not as a timeout; a client that
    cannot connect at all is checked once for plaintext-against-TLS. At the deadline the last
    ``KafkaException`` is raised for the caller to translate.
    """
    deadline = time.monotonic() + timeout
    diagnosed = False
    while True:
        left = deadline - time.monotonic()
        try:
            return client.list_topics(topic, timeout=max(0.05, min(_METADATA_SLICE, left)))
        except KafkaException:
            client.poll(0)  # serves error_cb
            watch.check()
            if not diagnosed:
                diagnosed = True
                watch.diagnose()
            if time.monotonic() >= deadline:
                raise


def verify_failure(servers: str, ca_location: str | None) -> str | None:
    """Why the first of ``servers`` fails certificate verification with ``ca_location``
    (expired, hostname mismatch, unknown issuer...), as OpenSSL words it; None if it passes."""
    host, _, port = servers.split(",", maxsplit=1)[0].strip().rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        context = ssl.create_default_context(cafile=ca_location)
        with (
            socket.create_connection((host, int(port)), timeout=_PROBE_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message)
    except (OSError, ssl.SSLError):
        return None


def speaks_tls(host: str, port: int) -> bool:
    """Whether ``host:port`` completes a TLS handshake (no certificate check, no data sent)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asking "is this TLS?"
    try:
        with (
            socket.create_connection((host, port), timeout=_PROBE_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            pass
    except (OSError, ssl.SSLError):
        return False
    log.debug("%s:%d completed a TLS handshake: it is a TLS listener", host, port)
    return True


def tls_context(ca_location: str, variable: str) -> ssl.SSLContext:
    """A verifying TLS context trusting ``ca_location``; a TlsError naming it if unreadable."""
    try:
        return ssl.create_default_context(cafile=ca_location)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(
            f"cannot load the CA file {ca_location!r} ({type(exc).__name__}: {exc}); point "
            f"{variable} at a readable PEM file",
            ca_location=ca_location,
        ) from None


def client_creation_error(settings: Settings, exc: KafkaException) -> Exception:
    """Why librdkafka refused to create a client: an unreadable CA file becomes a TlsError,
    any other refused option (an unknown key, a bad value) a one-line ConfigError."""
    err = exc.args[0] if exc.args else None
    text = err.str() if err is not None and hasattr(err, "str") else str(exc)
    if "ssl.ca.location" in text:
        return TlsError(
            f"cannot load the CA file {settings.ssl_ca_location!r} ({text}); point "
            "PAYKAFKA_SSL_CA_LOCATION at a readable PEM file",
            ca_location=settings.ssl_ca_location,
            code=err.name() if err is not None and hasattr(err, "name") else None,
        )
    return ConfigError(
        f"librdkafka refused the client settings: {text}; check PAYKAFKA_KAFKA_OPTIONS and the "
        "client's own kafka_options="
    )


def plaintext_against_tls(settings: Settings) -> TlsError | None:
    """A TlsError when a non-TLS client faces a server that completes a TLS handshake."""
    protocol = (settings.security_protocol or "PLAINTEXT").upper()
    if protocol in _TLS_PROTOCOLS:
        return None
    first = settings.bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit() or not speaks_tls(host, int(port)):
        return None
    return TlsError(
        f"{settings.bootstrap_servers} expects TLS but this client connects with "
        f"{protocol}; set PAYKAFKA_SECURITY_PROTOCOL=SASL_SSL (or SSL) and "
        "PAYKAFKA_SSL_CA_LOCATION to the CA that signed the broker's certificate",
        code="_TRANSPORT",
    )
