"""Expired and wrong-host certificates, against a real TLS server in a thread: librdkafka and the
registry client each fail with a TlsError that says which, within seconds, and never retry on."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from paykafka import KafkaAdmin, RegistryClient, Settings, TlsError
from paykafka._errors import security_error
from paykafka._stack._secure import make_certificate

WITHIN = 10.0


def _pem(key: Any, cert: Any) -> tuple[bytes, bytes]:
    return (
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.PEM),
    )


@contextlib.contextmanager
def tls_server(
    tmp_path: Path, *, hosts: tuple[str, ...], expired: bool
) -> Iterator[tuple[int, Path]]:
    """A TLS server on 127.0.0.1 whose certificate (from our own CA) names ``hosts``; yields
    its port and the CA file."""
    ca_key, ca_cert = make_certificate(common_name="test CA", ca=True)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=40) if expired else None
    key, cert = make_certificate(
        common_name="server", hosts=hosts, issuer=(ca_cert, ca_key), not_before=start, days=30
    )
    key_pem, cert_pem = _pem(key, cert)
    (tmp_path / "server.key").write_bytes(key_pem)
    (tmp_path / "server.crt").write_bytes(cert_pem)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(_pem(ca_key, ca_cert)[1])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1024)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], ca_file
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(
    ("case", "hosts", "expired", "says"),
    [
        ("expired", ("localhost", "127.0.0.1"), True, "expired"),
        ("wrong host", ("elsewhere.example",), False, "does not name that host"),
    ],
    ids=["expired", "wrong host"],
)
def test_kafka_client_names_the_certificate_problem(
    tmp_path: Path, case: str, hosts: tuple[str, ...], expired: bool, says: str
) -> None:
    """A SASL_SSL admin client facing a bad certificate raises TlsError saying why, fast."""
    del case
    with tls_server(tmp_path, hosts=hosts, expired=expired) as (port, ca_file):
        settings = Settings(
            bootstrap_servers=f"localhost:{port}",
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="alice",
            sasl_password="S3CRET-not-shown",
            ssl_ca_location=str(ca_file),
        )
        started = time.monotonic()
        with pytest.raises(TlsError) as info:
            KafkaAdmin(settings, timeout=WITHIN).brokers()
        assert time.monotonic() - started < WITHIN
    assert says in str(info.value)
    assert "S3CRET" not in str(info.value)
    assert not info.value.retriable


@pytest.mark.parametrize(
    ("hosts", "expired", "says"),
    [
        (("localhost", "127.0.0.1"), True, "expired"),
        (("elsewhere.example",), False, "does not name that host"),
        (("localhost",), False, None),
    ],
    ids=["expired", "wrong host", "untrusted"],
)
def test_registry_client_names_the_certificate_problem(
    tmp_path: Path, hosts: tuple[str, ...], expired: bool, says: str | None
) -> None:
    """The registry client over HTTPS: expired, wrong-host and untrusted (no CA given)
    certificates are each a TlsError saying which."""
    with tls_server(tmp_path, hosts=hosts, expired=expired) as (port, ca_file):
        settings = Settings(
            registry_url=f"https://localhost:{port}/apis/ccompat/v7",
            registry_ca_location=str(ca_file) if says else None,
            registry_timeout=5,
        )
        with RegistryClient(settings) as registry, pytest.raises(TlsError) as info:
            registry.subjects()
    assert (says or "not trusted by the system's CA certificates") in str(info.value)


def test_unreadable_registry_ca_file_is_named(tmp_path: Path) -> None:
    """A registry CA file that does not exist is a TlsError naming it, before any request."""
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsError) as info:
        RegistryClient(Settings(registry_ca_location=str(missing)))
    assert str(missing) in str(info.value)
    assert info.value.ca_location == str(missing)


def test_unreadable_kafka_ca_file_is_named(tmp_path: Path) -> None:
    """An ssl.ca.location librdkafka cannot load is a TlsError naming the file."""
    missing = tmp_path / "nope.pem"
    settings = Settings(security_protocol="SSL", ssl_ca_location=str(missing))
    with pytest.raises(TlsError) as info:
        KafkaAdmin(settings)
    assert str(missing) in str(info.value)


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        ("_AUTHENTICATION", "SASL authentication error: invalid credentials", "Authentication"),
        ("TOPIC_AUTHORIZATION_FAILED", "Broker: Topic authorization failed", "Authorization"),
        ("GROUP_AUTHORIZATION_FAILED", "Broker: Group authorization failed", "Authorization"),
        ("_SSL", "SSL handshake failed: certificate verify failed", "Tls"),
        ("_TRANSPORT", "Disconnected (connecting to a SSL listener?)", "Tls"),
        ("_TRANSPORT", "Connection refused", None),
        ("_SSL", "SSL transport error: unexpected eof while reading", None),
        ("_AUTHENTICATION", "SASL authentication error: Disconnected (in state AUTH_REQ)", None),
        ("_MSG_TIMED_OUT", "Local: Message timed out", None),
    ],
)
def test_security_error_classifies_librdkafka_codes(code: str, text: str, kind: str | None) -> None:
    """security_error maps exactly the login, ACL and TLS refusals; a connection cut by a
    crashing broker (even mid-handshake) stays an outage."""
    found = security_error(
        code, text, servers="b:9093", username="alice", resource="payments", operation="WRITE"
    )
    assert (type(found).__name__.removesuffix("Error") if found else None) == kind
