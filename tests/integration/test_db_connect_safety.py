"""Hostile input through every parameter changes nothing and gets a 4xx; the schema cache stays fresh."""

import time
from collections.abc import Iterator

import jwt
import pytest
from fastapi.testclient import TestClient

from db_connect.app import create_app
from db_connect.settings import Settings
from tests.integration.conftest import DB_CONNECT_JWT_SECRET, DbConnectWarehouse

SETUP_SQL = """
CREATE TABLE consumption.ledger (id integer PRIMARY KEY, memo text, amount integer);
INSERT INTO consumption.ledger SELECT i, 'memo ' || i, i FROM generate_series(1, 10) AS i;
CREATE TABLE consumption.canary (id integer PRIMARY KEY);
INSERT INTO consumption.canary VALUES (1);
GRANT SELECT, INSERT, UPDATE, DELETE ON consumption.ledger TO api_writer;
-- A view that writes when read: a GET must still change nothing.
CREATE FUNCTION consumption.touch_ledger() RETURNS integer LANGUAGE sql VOLATILE
    AS 'UPDATE consumption.ledger SET amount = amount + 1 RETURNING 1';
CREATE VIEW consumption.ledger_toucher AS SELECT consumption.touch_ledger() AS touched;
GRANT SELECT ON consumption.ledger_toucher TO api_writer;
"""
WRITER = {"Authorization": "Bearer " + jwt.encode({"role": "api_writer"}, DB_CONNECT_JWT_SECRET, algorithm="HS256")}
DROP = "1; DROP TABLE consumption.canary; --"
QUOTED = '"; DROP TABLE consumption.canary; --'
VALUE = "1' OR '1'='1"
INTERNALS = ("json_agg", "LATERAL", "set_config", "RETURNING", "Traceback", "psycopg")

ATTEMPTS = [
    ("GET", f"/consumption/ledger?select=id,{QUOTED}", None),
    ("GET", "/consumption/ledger?select=id,(SELECT 1)", None),
    ("GET", f"/consumption/ledger?order=id;{DROP}", None),
    ("GET", f"/consumption/ledger?order=id.desc,{QUOTED}", None),
    ("GET", f"/consumption/ledger?order=id.{DROP}", None),
    ("GET", f"/consumption/ledger?id=eq.{VALUE}", None),
    ("GET", f"/consumption/ledger?id=in.({VALUE},{DROP})", None),
    ("GET", f"/consumption/ledger?id=is.null; {DROP}", None),
    ("GET", f"/consumption/ledger?id={DROP}", None),
    ("GET", f"/consumption/ledger?id=eq);{DROP}", None),
    ("GET", f"/consumption/ledger?{QUOTED}=eq.1", None),
    ("GET", f"/consumption/ledger?or=(id.eq.1,{QUOTED}.eq.2)", None),
    ("GET", f"/consumption/ledger?or=(id.eq.1);{DROP}", None),
    ("GET", f"/consumption/ledger?limit=1;{DROP}", None),
    ("GET", f"/consumption/ledger?offset=0){DROP}", None),
    ("GET", "/consumption/ledger?cursor=WyIxOyBEUk9QIFRBQkxFIGNvbnN1bXB0aW9uLmNhbmFyeTsgLS0iXQ", None),
    ("GET", f"/consumption/ledger{QUOTED}", None),
    ("GET", f"/consumption{QUOTED}/ledger", None),
    ("GET", "/pg_catalog/pg_authid", None),
    ("POST", "/consumption/ledger", {"id": 11, QUOTED: 1}),
    ("POST", "/consumption/ledger", [{"id": f"{DROP}", "memo": "x", "amount": 1}]),
    ("POST", f"/consumption/ledger?on_conflict=id,{QUOTED}", [{"id": 1, "memo": "x", "amount": 1}]),
    ("POST", f"/consumption/ledger?select={QUOTED}", [{"id": 12, "memo": "x", "amount": 1}]),
    ("PATCH", f"/consumption/ledger?id=eq.{VALUE}", {"memo": "pwned"}),
    ("PATCH", "/consumption/ledger?id=eq.1", {QUOTED: "pwned"}),
    ("PATCH", f"/consumption/ledger?{QUOTED}=eq.1", {"memo": "pwned"}),
    ("DELETE", f"/consumption/ledger?id=eq.{VALUE}", None),
    ("DELETE", f"/consumption/ledger?or=(id.gt.0,{QUOTED}.eq.1)", None),
    ("DELETE", f"/consumption/ledger?id=not.is.{DROP}", None),
]


@pytest.fixture(scope="module")
def warehouse(db_connect_warehouse: DbConnectWarehouse) -> Iterator[DbConnectWarehouse]:
    db_connect_warehouse.execute(SETUP_SQL)
    yield db_connect_warehouse
    db_connect_warehouse.execute(
        "DROP VIEW consumption.ledger_toucher; DROP FUNCTION consumption.touch_ledger();"
        " DROP TABLE IF EXISTS consumption.ledger, consumption.canary"
    )


@pytest.fixture(scope="module")
def client(warehouse: DbConnectWarehouse) -> Iterator[TestClient]:
    settings = Settings(**warehouse.environment(), schema_refresh_s=0.5)
    with TestClient(create_app(settings), headers=WRITER) as test_client:
        yield test_client


def snapshot(warehouse: DbConnectWarehouse) -> list[tuple]:
    return warehouse.execute("SELECT id, memo, amount FROM consumption.ledger ORDER BY id")


@pytest.mark.parametrize(("method", "url", "body"), ATTEMPTS, ids=[f"{m} {u[:60]}" for m, u, _ in ATTEMPTS])
def test_injection_attempts_change_nothing_and_get_a_4xx(
    client: TestClient, warehouse: DbConnectWarehouse, method: str, url: str, body: object
) -> None:
    before = snapshot(warehouse)
    response = client.request(method, url, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()) == {"code", "message", "details", "hint"}
    assert not any(ours in response.text for ours in INTERNALS), "neither our SQL nor a traceback leaks"
    assert snapshot(warehouse) == before
    assert warehouse.execute("SELECT count(*) FROM consumption.canary") == [(1,)]


def test_a_value_is_never_sql_even_when_it_looks_like_it(client: TestClient, warehouse: DbConnectWarehouse) -> None:
    response = client.get("/consumption/ledger", params={"memo": "eq.memo 1' OR '1'='1"})
    assert response.status_code == 200 and response.json() == []
    created = client.post("/consumption/ledger", json={"id": 99, "memo": DROP, "amount": 0})
    assert created.status_code == 201
    assert client.get("/consumption/ledger", params={"memo": f"eq.{DROP}"}).json()[0]["id"] == 99
    client.delete("/consumption/ledger?id=eq.99")


def test_a_get_runs_read_only_even_through_a_view_that_writes(
    client: TestClient, warehouse: DbConnectWarehouse
) -> None:
    before = snapshot(warehouse)
    response = client.get("/consumption/ledger_toucher")
    assert response.status_code == 405, response.text
    assert response.json()["code"] == "25006"  # read_only_sql_transaction
    assert snapshot(warehouse) == before


def test_a_scheduled_refresh_picks_up_new_columns_without_a_notify(
    client: TestClient, warehouse: DbConnectWarehouse
) -> None:
    warehouse.execute("ALTER TABLE consumption.ledger ADD COLUMN category text")
    try:
        deadline = time.monotonic() + 10
        while client.get("/consumption/ledger?select=category&limit=1").status_code != 200:
            assert time.monotonic() < deadline, "the schedule (0.5 s) reloads the cache"
            time.sleep(0.1)
    finally:
        warehouse.execute("ALTER TABLE consumption.ledger DROP COLUMN category")


def test_the_openapi_document_has_one_path_per_relation_with_typed_columns(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    path = spec["paths"]["/consumption/ledger"]
    assert set(path) == {"get", "post", "patch", "delete"}
    names = {p["name"] for p in path["get"]["parameters"]}
    assert {"select", "order", "limit", "offset", "cursor", "id", "memo", "amount", "or", "and"} <= names
    schema = spec["components"]["schemas"]["consumption.ledger"]["properties"]
    assert schema["id"]["type"] == "integer" and schema["memo"]["type"] == "string"
    assert "/consumption/canary" not in spec["paths"], "its role cannot read it, so its document leaves it out"
    assert not any(p.startswith("/raw/") or p.startswith("/db_connect/") for p in spec["paths"])
