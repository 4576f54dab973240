"""db_connect against a real Postgres: what a client of the REST API can rely on."""

import logging
import select
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from db_connect.app import create_app
from db_connect.settings import Settings
from tests.integration.conftest import (
    DB_CONNECT_API_KEY,
    DB_CONNECT_PASSWORD,
    DbConnectWarehouse,
    free_port,
    serve_db_connect,
)

API_KEY = DB_CONNECT_API_KEY
DB_PASSWORD = DB_CONNECT_PASSWORD
MAX_PAGE_SIZE = 50
ROW_COUNT = 25

WAREHOUSE_SQL = f"""
CREATE TABLE consumption.meter_readings (
    id integer PRIMARY KEY,
    meter text NOT NULL,
    kwh numeric(20, 3),
    read_at timestamptz,
    read_on date,
    device uuid,
    raw_payload bytea,
    attributes jsonb
);
-- Inserted in reverse, so only an ORDER BY on the key gives ascending pages.
INSERT INTO consumption.meter_readings (id, meter, kwh, read_at, read_on)
SELECT i, 'meter-' || (i % 3), CASE WHEN i % 5 = 0 THEN NULL ELSE i * 1.5 END,
       timestamptz '2024-03-01 00:00+00' + i * interval '1 hour', date '2024-03-01' + i
FROM generate_series({ROW_COUNT}, 2, -1) AS i;
INSERT INTO consumption.meter_readings VALUES (
    1, 'meter-1', 12345678901234567.891, '2024-03-01 12:30:00+02', '2024-03-01',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x6869', '{{"phase": 3, "tags": ["a"]}}'
);

CREATE VIEW consumption.usage_per_meter AS
SELECT meter, sum(kwh) AS total_kwh, count(*) AS readings FROM consumption.meter_readings GROUP BY meter;

CREATE TABLE consumption."Weekly Report" (week integer PRIMARY KEY, "Total kWh" numeric);
INSERT INTO consumption."Weekly Report" VALUES (1, 10.5);

CREATE VIEW consumption.slow_view AS SELECT 1 AS n FROM pg_sleep(1);

CREATE TABLE consumption.internal_notes (id integer PRIMARY KEY, note text);

CREATE TABLE raw.meter_events (id integer PRIMARY KEY, payload text);
INSERT INTO raw.meter_events VALUES (1, 'not for clients');

-- The role may read raw too: only EXPOSED_SCHEMAS may keep raw out of the API.
GRANT USAGE ON SCHEMA raw TO api_reader;
GRANT SELECT ON consumption.meter_readings, consumption.usage_per_meter, consumption."Weekly Report",
                consumption.slow_view, raw.meter_events TO api_reader;
"""
DROP_SQL = """
DROP VIEW consumption.usage_per_meter, consumption.slow_view;
DROP TABLE consumption.meter_readings, consumption."Weekly Report", consumption.internal_notes, raw.meter_events;
"""


@pytest.fixture(scope="module")
def warehouse(db_connect_warehouse: DbConnectWarehouse) -> Iterator[DbConnectWarehouse]:
    db_connect_warehouse.execute(WAREHOUSE_SQL)
    yield db_connect_warehouse
    db_connect_warehouse.execute(DROP_SQL)


def make_settings(warehouse: DbConnectWarehouse, port: int | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "pghost": "127.0.0.1",
        "pgport": port or warehouse.server.port,
        "pgdatabase": warehouse.dbname,
        "pguser": "db_connect",
        "pgpassword_file": warehouse.secrets / "db_password",
        "api_key_file": warehouse.secrets / "api_key",
        "exposed_schemas": "consumption",
        "max_page_size": MAX_PAGE_SIZE,
    }
    return Settings(**(values | overrides))


@pytest.fixture(scope="module")
def client(warehouse: DbConnectWarehouse) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(warehouse))) as test_client:
        test_client.headers["Authorization"] = f"Bearer {API_KEY}"
        yield test_client


@pytest.fixture
def anonymous(client: TestClient) -> Iterator[TestClient]:
    """The same app, without the key."""
    del client.headers["Authorization"]
    yield client
    client.headers["Authorization"] = f"Bearer {API_KEY}"


def row_count(warehouse: DbConnectWarehouse, table: str) -> int:
    return warehouse.execute(f"SELECT count(*) FROM {table}")[0][0]


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details", "hint"}
    assert body["code"] == code
    return body


# --- health -------------------------------------------------------------------------------------------


def test_health_is_ok_without_a_key_when_the_database_answers(anonymous: TestClient) -> None:
    response = anonymous.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_service_starts_without_a_database_and_health_says_503_quickly(
    warehouse: DbConnectWarehouse, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(make_settings(warehouse, free_port()))) as client:
        started = time.monotonic()
        response = client.get("/health")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert elapsed < 3, "the image's HEALTHCHECK gives up after 3 s"
    for secret in (DB_PASSWORD, API_KEY):
        assert secret not in response.text
        assert secret not in caplog.text
    assert "SELECT" not in response.text


def test_data_requests_answer_503_json_while_the_database_is_down(warehouse: DbConnectWarehouse) -> None:
    with TestClient(create_app(make_settings(warehouse, free_port()))) as client:
        response = client.get("/consumption/meter_readings", headers={"X-API-Key": API_KEY})
    body = assert_error(response, 503, "database_unavailable")
    assert DB_PASSWORD not in response.text
    assert "Traceback" not in body["message"]


class TcpForwarder(socketserver.ThreadingTCPServer):
    """Stands in for a Postgres that appears late: opened on a port the service already points at."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        super().__init__(("127.0.0.1", port), ForwardHandler)


class ForwardHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, TcpForwarder)
        with socket.create_connection(self.server.target) as upstream:
            peers = {self.request: upstream, upstream: self.request}
            while True:
                readable, _, _ = select.select(list(peers), [], [], 1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)


def test_health_turns_ok_once_the_database_appears_after_start_up(warehouse: DbConnectWarehouse) -> None:
    port = free_port()
    with TestClient(create_app(make_settings(warehouse, port))) as client:
        assert client.get("/health").status_code == 503
        forwarder = TcpForwarder(port, (warehouse.server.host, warehouse.server.port))
        threading.Thread(target=forwarder.serve_forever, daemon=True).start()
        try:
            deadline = time.monotonic() + 30
            while (status := client.get("/health").status_code) != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert status == 200
        finally:
            forwarder.shutdown()
            forwarder.server_close()


def test_reads_survive_the_loss_of_every_pooled_connection(warehouse: DbConnectWarehouse) -> None:
    """As after a Postgres restart: the pool's connections are dead, and the next reads still answer."""
    with TestClient(create_app(make_settings(warehouse, pool_max_size=4))) as client:
        client.headers["X-API-Key"] = API_KEY
        with ThreadPoolExecutor(4) as threads:  # fill the pool with several connections
            list(threads.map(lambda _: client.get("/consumption/meter_readings?limit=1"), range(16)))
        killed = warehouse.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'db_connect' AND datname = current_database()"
        )[0][0]
        assert killed >= 1
        statuses = [client.get("/consumption/meter_readings?limit=1").status_code for _ in range(8)]
    assert statuses == [200] * 8


# --- authentication -----------------------------------------------------------------------------------


def test_data_without_a_key_is_401_with_a_bearer_challenge(anonymous: TestClient) -> None:
    response = anonymous.get("/consumption/meter_readings")
    assert_error(response, 401, "missing_api_key")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_error(anonymous.get("/"), 401, "missing_api_key")


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong-key"},
        {"X-API-Key": "wrong-key"},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": f"Bearer {API_KEY}x"},
    ],
    ids=["wrong bearer", "wrong header key", "not a bearer scheme", "key with a suffix"],
)
def test_a_wrong_key_is_401(anonymous: TestClient, headers: dict[str, str]) -> None:
    response = anonymous.get("/consumption/meter_readings", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["code"] in {"invalid_api_key", "missing_api_key"}
    assert API_KEY not in response.text


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}],
    ids=["bearer", "x-api-key"],
)
def test_the_key_is_accepted_in_either_header(anonymous: TestClient, headers: dict[str, str]) -> None:
    assert anonymous.get("/consumption/meter_readings", headers=headers).status_code == 200


def test_authentication_is_checked_before_parameters_or_names(anonymous: TestClient) -> None:
    assert anonymous.get("/consumption/meter_readings?limit=0").status_code == 401
    assert anonymous.get("/raw/meter_events").status_code == 401


def test_the_openapi_document_needs_a_key_and_declares_both_key_schemes(anonymous: TestClient) -> None:
    refused = anonymous.get("/openapi.json")
    assert refused.status_code == 401 and "meter_readings" not in refused.text, "names are for callers with a key"
    assert anonymous.get("/docs").status_code == 401, "no page that could not send the key to fetch it"
    spec = anonymous.get("/openapi.json", headers={"X-API-Key": API_KEY}).json()
    assert spec["info"]["title"] == "Sawmill db_connect"
    schemes = spec["components"]["securitySchemes"]
    assert schemes["BearerKey"]["type"] == "http"
    assert schemes["BearerKey"]["scheme"] == "bearer"
    assert schemes["ApiKeyHeader"]["type"] == "apiKey"
    assert schemes["ApiKeyHeader"]["name"] == "X-API-Key"
    assert spec["paths"]["/consumption/meter_readings"]["get"]["security"] == [{"BearerKey": []}, {"ApiKeyHeader": []}]
    assert "security" not in spec["paths"]["/health"]["get"]


def test_the_openapi_document_describes_what_the_callers_role_can_read(client: TestClient) -> None:
    """As PostgREST's follow-privileges: a relation the role cannot read is not in its document."""
    paths = client.get("/openapi.json").json()["paths"]
    listed = {f"/{r['schema']}/{r['name']}" for r in client.get("/").json()}
    assert {p for p in paths if p.startswith("/consumption/")} == listed
    assert "/consumption/internal_notes" not in paths, "db_connect has no SELECT on it"


# --- listing ------------------------------------------------------------------------------------------


def test_listing_shows_readable_tables_and_views_of_exposed_schemas_only(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    listed = {(r["schema"], r["name"]): r for r in response.json()}
    assert {("consumption", "meter_readings"), ("consumption", "usage_per_meter")} <= set(listed)
    assert ("consumption", "Weekly Report") in listed
    assert ("raw", "meter_events") not in listed
    assert ("consumption", "internal_notes") not in listed, "db_connect has no SELECT on it"

    readings = listed[("consumption", "meter_readings")]
    assert readings["kind"] == "table"
    assert readings["primary_key"] == ["id"]
    assert readings["columns"][:3] == [
        {"name": "id", "type": "integer"},
        {"name": "meter", "type": "text"},
        {"name": "kwh", "type": "numeric(20,3)"},
    ]
    assert {"name": "read_at", "type": "timestamp with time zone"} in readings["columns"]
    assert listed[("consumption", "usage_per_meter")]["kind"] == "view"


# --- reading rows -------------------------------------------------------------------------------------


def test_rows_render_postgres_types_as_json(client: TestClient) -> None:
    response = client.get("/consumption/meter_readings?limit=2")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    first, second = response.json(parse_float=Decimal)
    assert first == {
        "id": 1,
        "meter": "meter-1",
        "kwh": Decimal("12345678901234567.891"),  # exact: more digits than a float holds
        "read_at": "2024-03-01T10:30:00+00:00",
        "read_on": "2024-03-01",
        "device": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "raw_payload": "\\x6869",
        "attributes": {"phase": 3, "tags": ["a"]},
    }
    assert second["kwh"] == Decimal("3.000")
    assert second["device"] is None
    assert second["raw_payload"] is None
    assert second["attributes"] is None


def test_rows_are_paged_in_primary_key_order_without_overlap(client: TestClient) -> None:
    pages = [
        [row["id"] for row in client.get(f"/consumption/meter_readings?limit=10&offset={offset}").json()]
        for offset in (0, 10, 20, 30)
    ]
    assert pages == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26)), []]


def test_limit_defaults_to_100_and_may_equal_the_maximum(client: TestClient) -> None:
    assert len(client.get("/consumption/meter_readings").json()) == ROW_COUNT
    response = client.get(f"/consumption/meter_readings?limit={MAX_PAGE_SIZE}")
    assert response.status_code == 200


def test_views_and_names_that_need_quoting_are_readable(client: TestClient) -> None:
    usage = client.get("/consumption/usage_per_meter").json()
    assert sorted(row["meter"] for row in usage) == ["meter-0", "meter-1", "meter-2"]
    assert sum(row["readings"] for row in usage) == ROW_COUNT
    assert client.get("/consumption/Weekly Report").json() == [{"week": 1, "Total kWh": 10.5}]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=0", "limit"),
        (f"limit={MAX_PAGE_SIZE + 1}", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("offset=xyz", "offset"),
    ],
)
def test_bad_paging_parameters_are_400_naming_the_parameter(client: TestClient, query: str, parameter: str) -> None:
    body = assert_error(client.get(f"/consumption/meter_readings?{query}"), 400, "invalid_parameter")
    assert f"'{parameter}'" in body["message"]
    assert body["details"].startswith(f"query parameter '{parameter}'")


@pytest.mark.parametrize(
    "path",
    [
        "/consumption/no_such_table",
        "/raw/meter_events",
        "/Consumption/meter_readings",
        "/consumption/meter_readings;drop table meter_readings",
        '/consumption/"meter_readings"',
        '/consumption/meter_readings"; DROP TABLE consumption.meter_readings; --',
        "/consumption/meter_readings where 1=1",
        "/consumption/meter_readings/extra",
    ],
)
def test_anything_but_an_exposed_relation_is_404_and_changes_nothing(
    client: TestClient, warehouse: DbConnectWarehouse, path: str
) -> None:
    body = assert_error(client.get(path), 404, "not_found")
    assert "SELECT" not in body["message"]
    assert row_count(warehouse, "consumption.meter_readings") == ROW_COUNT
    assert row_count(warehouse, "raw.meter_events") == 1


def wait_for(condition: Any, timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def test_a_table_created_after_start_up_is_readable_after_a_notify_without_a_restart(
    client: TestClient, warehouse: DbConnectWarehouse
) -> None:
    warehouse.execute(
        "CREATE TABLE consumption.late_arrival (id integer PRIMARY KEY);"
        "INSERT INTO consumption.late_arrival VALUES (7);"
        "GRANT SELECT ON consumption.late_arrival TO api_reader"
    )
    try:
        warehouse.execute("NOTIFY db_connect, 'reload schema'")
        assert wait_for(lambda: client.get("/consumption/late_arrival").status_code == 200)
        assert client.get("/consumption/late_arrival").json() == [{"id": 7}]
    finally:
        warehouse.execute("DROP TABLE consumption.late_arrival")
    # Dropped but still cached: Postgres answers for it, and the client gets a 404 all the same.
    assert_error(client.get("/consumption/late_arrival"), 404, "42P01")
    warehouse.execute("NOTIFY db_connect")
    assert wait_for(lambda: client.get("/consumption/late_arrival").json()["code"] == "not_found")


def test_a_table_the_role_may_not_read_is_403(client: TestClient) -> None:
    body = assert_error(client.get("/consumption/internal_notes"), 403, "42501")
    assert "internal_notes" in body["message"]


def test_a_query_over_the_statement_timeout_is_504_and_the_service_recovers(
    warehouse: DbConnectWarehouse,
) -> None:
    settings = make_settings(warehouse, statement_timeout_ms=200)
    with TestClient(create_app(settings), headers={"X-API-Key": API_KEY}) as client:
        body = assert_error(client.get("/consumption/slow_view"), 504, "statement_timeout")
        assert "pg_sleep" not in str(body)
        assert client.get("/health").status_code == 200
        assert client.get("/consumption/Weekly Report").status_code == 200


def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/a/b/c"), 404, "not_found")
    assert_error(client.put("/consumption/meter_readings"), 405, "method_not_allowed")


# --- the container's entry point ---------------------------------------------------------------------


def test_uvicorn_entry_point_reads_the_environment_and_finishes_requests_on_sigterm(
    warehouse: DbConnectWarehouse,
) -> None:
    """What the image runs: `uvicorn db_connect.app:app`, configured only by environment variables."""
    server, base = serve_db_connect(warehouse)
    try:
        slow: dict[str, httpx.Response] = {}
        request = threading.Thread(
            target=lambda: slow.update(
                response=httpx.get(f"{base}/consumption/slow_view", headers={"X-API-Key": API_KEY}, timeout=10)
            )
        )
        request.start()
        time.sleep(0.3)  # the request is now inside its 1 s query
        server.send_signal(signal.SIGTERM)
        request.join(timeout=10)
        # uvicorn re-raises the signal once it has shut down cleanly, so the exit reads "killed by SIGTERM".
        assert server.wait(timeout=10) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
        output = server.communicate()[0]
    assert slow["response"].status_code == 200, output
    assert slow["response"].json() == [{"n": 1}]
    assert "Waiting for application shutdown" in output
    assert DB_PASSWORD not in output
    assert API_KEY not in output
