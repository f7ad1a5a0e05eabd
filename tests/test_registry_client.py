"""RegistryClient's mapping of HTTP answers to typed errors (pure logic, mock transport)."""

import json
from collections.abc import Callable

import httpx
import pytest

from paykafka import (
    RegistryClient,
    RegistryError,
    RegistryIncompatibleError,
    RegistryUnavailableError,
    SchemaNotFoundError,
    Settings,
    SubjectNotFoundError,
)


def client(handler: Callable[[httpx.Request], httpx.Response], **kw: object) -> RegistryClient:
    settings = Settings(registry_url="http://registry.test/apis/ccompat/v7", **kw)  # type: ignore[arg-type]
    return RegistryClient(settings, transport=httpx.MockTransport(handler))


def answer(status: int, body: object) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _req: httpx.Response(status, json=body)


def test_register_posts_schema_and_caches_by_id() -> None:
    """register() sends the schema to the subject and remembers the id's text."""
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"id": 41})

    c = client(handler)
    assert c.register("payments-value", '"string"') == 41
    assert seen[0].url.path == "/apis/ccompat/v7/subjects/payments-value/versions"
    assert json.loads(seen[0].content) == {"schema": '"string"'}
    assert c.schema_by_id(41) == '"string"'
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("status", "body", "error", "retriable"),
    [
        (404, {"error_code": 40401, "message": "Subject not found"}, SubjectNotFoundError, False),
        (404, {"error_code": 40403, "message": "Schema not found"}, SchemaNotFoundError, False),
        (409, {"error_code": 409, "message": "incompatible"}, RegistryIncompatibleError, False),
        (500, {"error_code": 50001, "message": "boom"}, RegistryUnavailableError, True),
        (503, "unavailable", RegistryUnavailableError, True),
        (401, {"message": "no"}, RegistryError, False),
        (422, {"error_code": 42201, "message": "Invalid schema"}, RegistryError, False),
    ],
)
def test_http_errors_map_to_typed_errors(
    status: int, body: object, error: type[RegistryError], retriable: bool
) -> None:
    """Each registry answer becomes its own error, keeping status and error code."""
    c = client(answer(status, body))
    with pytest.raises(error) as info:
        c.lookup("payments-value", '"string"')
    assert info.value.status == status
    assert info.value.retriable is retriable


def test_unknown_schema_id_is_schema_not_found() -> None:
    """GET /schemas/ids/N answering 404 is SchemaNotFoundError (Apicurio omits the code)."""
    c = client(answer(404, {"message": "No content with id 99"}))
    with pytest.raises(SchemaNotFoundError):
        c.schema_by_id(99)


def test_unreachable_registry_is_retriable_and_says_what_to_do() -> None:
    """A connection failure is RegistryUnavailableError pointing at stack up and the URL."""

    def refuse(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    with pytest.raises(RegistryUnavailableError) as info:
        client(refuse).subjects()
    assert info.value.retriable
    assert "paykafka stack up" in str(info.value)
    assert "PAYKAFKA_REGISTRY_URL" in str(info.value)


def test_timeout_is_retriable_and_names_the_setting() -> None:
    """A timed-out call is an outage and names PAYKAFKA_REGISTRY_TIMEOUT."""

    def slow(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=req)

    with pytest.raises(RegistryUnavailableError, match="PAYKAFKA_REGISTRY_TIMEOUT"):
        client(slow).versions("payments-value")


def test_auth_headers_are_sent_but_never_in_errors() -> None:
    """Basic auth reaches the registry; the password never appears in an error."""
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(401, json={"message": "bad credentials"})

    c = client(handler, registry_username="svc", registry_password="pw-registry-123")
    with pytest.raises(RegistryError) as info:
        c.subjects()
    assert seen[0].headers["authorization"].startswith("Basic ")
    assert "pw-registry-123" not in str(info.value)


def test_bearer_token_is_sent() -> None:
    """A registry token is sent as a bearer Authorization header."""
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=[])

    client(handler, registry_token="tok-456").subjects()
    assert seen[0].headers["authorization"] == "Bearer tok-456"


def test_unset_subject_level_reads_as_none() -> None:
    """A subject with no level of its own reports None, not an error."""
    c = client(answer(404, {"error_code": 40408, "message": "not configured"}))
    assert c.compatibility("payments-value") is None
