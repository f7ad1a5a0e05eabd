"""The opt-in schema cache: a restarted client works from disk while the registry is down."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paykafka import RegistryClient, RegistryUnavailableError, Settings
from paykafka._schema_cache import SchemaCache

SCHEMA = '{"type": "string"}'


class _Registry(http.server.BaseHTTPRequestHandler):
    """Knows one subject ``s-value`` with ``SCHEMA`` as id 5; counts the calls it gets."""

    calls: list[str]

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.calls.append(f"GET {self.path}")
        self._answer({"schema": SCHEMA})

    def do_POST(self) -> None:
        self.calls.append(f"POST {self.path}")
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer({"subject": "s-value", "version": 1, "id": 5, "schema": SCHEMA})

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def registry() -> Iterator[tuple[str, list[str], http.server.ThreadingHTTPServer]]:
    """A real registry stand-in in a thread; the test may shut it down to make an outage."""
    calls: list[str] = []
    handler = type("Handler", (_Registry,), {"calls": calls})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7", calls, server
    server.shutdown()
    server.server_close()


def test_a_restarted_client_starts_from_the_cache_while_the_registry_is_down(
    registry: tuple[str, list[str], http.server.ThreadingHTTPServer], tmp_path: Path
) -> None:
    """What one client learnt (lookup, schema by id) a new client gets from disk in an outage."""
    url, _calls, server = registry
    settings = Settings(registry_url=url, schema_cache_dir=tmp_path, registry_timeout=2)
    with RegistryClient(settings) as first:
        assert first.lookup("s-value", SCHEMA).schema_id == 5
        assert first.schema_by_id(9) == SCHEMA
    server.shutdown()
    server.server_close()
    with RegistryClient(settings) as restarted:
        found = restarted.lookup("s-value", SCHEMA)
        assert (found.schema_id, found.version) == (5, -1)
        assert restarted.schema_by_id(9) == SCHEMA
        with pytest.raises(RegistryUnavailableError):
            restarted.schema_by_id(10)  # never seen: the outage is reported, not hidden
        with pytest.raises(RegistryUnavailableError):
            restarted.lookup("s-value", '{"type": "int"}')


def test_without_a_cache_dir_nothing_is_kept(
    registry: tuple[str, list[str], http.server.ThreadingHTTPServer], tmp_path: Path
) -> None:
    """The cache is opt-in: without schema_cache_dir a restarted client must ask again."""
    url, _calls, server = registry
    settings = Settings(registry_url=url, registry_timeout=2)
    with RegistryClient(settings) as first:
        first.lookup("s-value", SCHEMA)
    server.shutdown()
    server.server_close()
    with RegistryClient(settings) as restarted, pytest.raises(RegistryUnavailableError):
        restarted.lookup("s-value", SCHEMA)
    assert list(tmp_path.iterdir()) == []


def test_a_cached_id_schema_is_not_fetched_again(
    registry: tuple[str, list[str], http.server.ThreadingHTTPServer], tmp_path: Path
) -> None:
    """Schemas by id never change, so a new client reads a cached one without a call."""
    url, calls, _server = registry
    settings = Settings(registry_url=url, schema_cache_dir=tmp_path)
    with RegistryClient(settings) as first:
        first.schema_by_id(3)
    with RegistryClient(settings) as second:
        assert second.schema_by_id(3) == SCHEMA
    assert calls == ["GET /apis/ccompat/v7/schemas/ids/3"]


def test_entries_are_per_registry(tmp_path: Path) -> None:
    """Ids from two registries are unrelated, so one registry's cache never answers another."""
    SchemaCache(tmp_path, "http://a:8081").put_schema_id("s-value", SCHEMA, 5)
    assert SchemaCache(tmp_path, "http://a:8081").schema_id("s-value", SCHEMA) == 5
    assert SchemaCache(tmp_path, "http://b:8081").schema_id("s-value", SCHEMA) is None
    assert SchemaCache(tmp_path, "http://b:8081").schema(5) is None


def test_damaged_entries_are_ignored_and_unwritable_dirs_are_not_fatal(tmp_path: Path) -> None:
    """A corrupt cache file reads as a miss; a cache that cannot be written only logs."""
    cache = SchemaCache(tmp_path, "http://a:8081")
    cache.put_schema_id("s-value", SCHEMA, 5)
    (entry,) = (cache.root / "subjects").iterdir()
    entry.write_text("{not json", encoding="utf-8")
    assert cache.schema_id("s-value", SCHEMA) is None
    blocked = tmp_path / "file"
    blocked.write_text("", encoding="utf-8")
    SchemaCache(blocked, "http://a:8081").put_schema(1, SCHEMA)  # no exception


def test_cache_dir_comes_from_the_environment(tmp_path: Path) -> None:
    """PAYKAFKA_SCHEMA_CACHE_DIR turns the cache on; empty leaves it off."""
    assert Settings.from_env({"PAYKAFKA_SCHEMA_CACHE_DIR": str(tmp_path)}).schema_cache_dir == (
        tmp_path
    )
    assert Settings.from_env({"PAYKAFKA_SCHEMA_CACHE_DIR": ""}).schema_cache_dir is None
