"""The secured stack's pure parts, without a JVM: what goes into the broker's and the registry's
configuration, what reaches command lines, file modes, and the CLI's exit code for refusals."""

from __future__ import annotations

import base64
import hashlib
import re
import stat
from pathlib import Path

import pytest

from paykafka import AuthenticationError, AuthorizationError, SecurityError, TlsError
from paykafka._cli import exit_code_for
from paykafka._cli._common import EXIT_SECURITY
from paykafka._stack import StackConfig, _kafka, _secure


@pytest.fixture
def config(tmp_path: Path) -> StackConfig:
    """A secured stack config in a temp dir, its certificates and passwords made."""
    secured = StackConfig.from_env(
        {}, state_dir=tmp_path, cache_dir=tmp_path / "cache", secure=True
    )
    _secure.ensure_material(secured)
    return secured


def test_secure_comes_from_the_environment_and_switches_the_registry_to_https(
    tmp_path: Path,
) -> None:
    """PAYKAFKA_STACK_SECURE=true secures the stack; its registry URL is https."""
    config = StackConfig.from_env(
        {"PAYKAFKA_STACK_SECURE": "true", "PAYKAFKA_STACK_DIR": str(tmp_path)}
    )
    assert config.secure
    assert config.registry_url.startswith("https://localhost:")
    assert not StackConfig.from_env({"PAYKAFKA_STACK_DIR": str(tmp_path)}).secure


def test_secrets_are_owner_only(config: StackConfig) -> None:
    """The CA key, server key, keystore, passwords and user files are mode 0600 in a 0700 dir."""
    _secure.write_user_files(config)
    directory = _secure.secure_dir(config)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    private = [
        directory / "ca.key",
        _secure.server_key_file(config),
        _secure.broker_keystore(config),
        directory / "passwords.json",
        *(_secure.user_file(config, u) for u in _secure.USERS),
    ]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_material_is_made_once(config: StackConfig) -> None:
    """A second `up` keeps the passwords and certificates: formatted logs depend on them."""
    before = (_secure.passwords(config), _secure.ca_file(config).read_bytes())
    _secure.ensure_material(config)
    assert (_secure.passwords(config), _secure.ca_file(config).read_bytes()) == before


def test_broker_listens_on_tls_only_with_the_authorizer(config: StackConfig) -> None:
    """server.properties: SASL_SSL and mTLS listeners only, StandardAuthorizer, deny by default,
    owner-only (it holds the brokers' own login)."""
    server = _kafka.write_node_config(config, 1)
    props = dict(line.split("=", 1) for line in server.read_text().splitlines() if "=" in line)
    assert props["listener.security.protocol.map"] == "SECURE:SASL_SSL,CONTROLLER:SSL"
    assert "PLAINTEXT" not in props["listeners"]
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:CN=paykafka-broker"
    assert stat.S_IMODE(server.stat().st_mode) == 0o600
    assert _kafka.cluster_dir(config).name == "secure-cluster-1"


def test_scram_credentials_are_salted_and_verifiable(config: StackConfig) -> None:
    """--add-scram gets SaltedPassword = PBKDF2-SHA-512(password, salt, i), never the password."""
    args = _secure.scram_format_args(config)
    passwords = _secure.passwords(config)
    joined = " ".join(args)
    assert not [p for p in passwords.values() if p in joined]
    for value in args[1::2]:
        found = re.fullmatch(
            r'SCRAM-SHA-512=\[name=([^,]+),iterations=(\d+),salt="([^"]+)",saltedpassword="([^"]+)"\]',
            value,
        )
        assert found is not None
        user, iterations, salt, salted = found.groups()
        expected = hashlib.pbkdf2_hmac(
            "sha512", passwords[user].encode(), base64.b64decode(salt), int(iterations)
        )
        assert base64.b64decode(salted) == expected


def test_registry_command_line_holds_no_password(config: StackConfig) -> None:
    """The registry's -D properties point at an owner-only users file; no password in them."""
    props = _secure.registry_properties(config)
    text = " ".join(f"{k}={v}" for k, v in props.items())
    assert not [p for p in _secure.passwords(config).values() if p in text]
    users = Path(props["smallrye.config.locations"])
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert props["quarkus.http.insecure-requests"] == "disabled"


def test_user_env_without_password_is_what_the_terminal_shows(config: StackConfig) -> None:
    """The printable settings hold no password; the file's settings add exactly the two."""
    shown = _secure.user_env(config, _secure.PRODUCER, with_password=False)
    full = _secure.user_env(config, _secure.PRODUCER)
    assert set(full) - set(shown) == {"PAYKAFKA_SASL_PASSWORD", "PAYKAFKA_REGISTRY_PASSWORD"}
    assert shown["PAYKAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


def test_argfile_quoting_survives_quotes_and_backslashes() -> None:
    """A java @argfile argument keeps quotes and backslashes (the salted SCRAM form has quotes)."""
    quoted = _kafka._argfile_quote('a="b"\\c')
    assert quoted == '"a=\\"b\\"\\\\c"'


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("x"),
        AuthorizationError("x", resource_type="topic", resource="t", operation="WRITE"),
        TlsError("x"),
    ],
)
def test_every_refusal_has_one_exit_code(error: SecurityError) -> None:
    """Login, ACL and TLS refusals all exit with EXIT_SECURITY (6), never retriable."""
    assert exit_code_for(error) == EXIT_SECURITY == 6
    assert not error.retriable
