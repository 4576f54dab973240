"""Schemathesis against the generated OpenAPI document: whatever it sends, never a 5xx."""

import threading
import time
from collections.abc import Iterator

import httpx
import hypothesis
import jwt
import pytest
import schemathesis
import uvicorn

from db_connect.app import create_app
from db_connect.settings import Settings
from tests.integration.conftest import DB_CONNECT_JWT_SECRET, DbConnectWarehouse, free_port

SETUP_SQL = """
CREATE TABLE consumption.fuzz (
    id integer PRIMARY KEY,
    label text,
    amount numeric(8, 2),
    seen_at timestamptz,
    flags jsonb,
    active boolean NOT NULL DEFAULT true
);
INSERT INTO consumption.fuzz (id, label, amount) SELECT i, 'label ' || i, i / 3.0 FROM generate_series(1, 50) AS i;
GRANT SELECT, INSERT, UPDATE, DELETE ON consumption.fuzz TO api_writer;
"""
WRITER = {"Authorization": "Bearer " + jwt.encode({"role": "api_writer"}, DB_CONNECT_JWT_SECRET, algorithm="HS256")}


@pytest.fixture(scope="module")
def base_url(db_connect_warehouse: DbConnectWarehouse) -> Iterator[str]:
    db_connect_warehouse.execute(SETUP_SQL)
    port = free_port()
    app = create_app(Settings(**db_connect_warehouse.environment(), statement_timeout_ms=2000))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    # the schema cache loads in the background (requests never wait for it): wait until it has the table
    while "/consumption/fuzz" not in httpx.get(f"{url}/openapi.json", headers=WRITER).json().get("paths", {}):
        assert time.monotonic() < deadline, "the schema cache never listed consumption.fuzz"
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    db_connect_warehouse.execute("DROP TABLE consumption.fuzz")


@pytest.fixture(scope="module")
def api_schema(base_url: str) -> schemathesis.BaseSchema:
    document = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=WRITER)
    return document.include(path_regex="^/consumption/fuzz$")


def test_no_request_the_document_allows_gets_a_server_error(api_schema: schemathesis.BaseSchema, base_url: str) -> None:
    """Every operation of the table's path, with cases generated from its parameters and body schemas."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.method.upper() for op in operations} == {"GET", "POST", "PATCH", "DELETE"}
    calls: list[int] = []
    for operation in operations:

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=60, deadline=None, suppress_health_check=list(hypothesis.HealthCheck), derandomize=True
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, headers=WRITER, timeout=10)
            calls.append(response.status_code)
            assert response.status_code < 500, (
                f"{case.method} {case.path} {case.query} {case.body!r} -> {response.text}"
            )
            if response.status_code >= 400:
                assert set(response.json()) == {"code", "message", "details", "hint"}

        call()
    assert len(calls) >= 4 * 20, "every operation was exercised"
