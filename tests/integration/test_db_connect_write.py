"""Writing rows: COPY-loaded inserts from JSON or CSV, upserts, filtered updates and deletes."""

import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from db_connect.app import create_app
from db_connect.settings import Settings
from tests.integration.conftest import DB_CONNECT_API_KEY, DB_CONNECT_JWT_SECRET, DbConnectWarehouse, serve_db_connect

SETUP_SQL = """
CREATE TABLE consumption.stations (
    id integer PRIMARY KEY,
    name text NOT NULL,
    capacity integer CHECK (capacity >= 0),
    tags jsonb,
    opened date,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE consumption.station_codes (code text PRIMARY KEY, station integer REFERENCES consumption.stations);
CREATE VIEW consumption.big_stations AS SELECT id, name, capacity FROM consumption.stations WHERE capacity > 10;
GRANT SELECT, INSERT, UPDATE, DELETE ON consumption.stations, consumption.station_codes,
      consumption.big_stations TO api_writer;
GRANT SELECT ON consumption.stations TO api_reader;
"""
BODY_LIMIT = 64 * 1024
JSON_LIMIT = 16 * 1024  # JSON is parsed whole in memory; CSV streams


def token(role: str) -> str:
    return jwt.encode({"role": role}, DB_CONNECT_JWT_SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def warehouse(db_connect_warehouse: DbConnectWarehouse) -> Iterator[DbConnectWarehouse]:
    db_connect_warehouse.execute(SETUP_SQL)
    yield db_connect_warehouse
    db_connect_warehouse.execute(
        "DROP VIEW consumption.big_stations; DROP TABLE consumption.station_codes, consumption.stations"
    )


@pytest.fixture(scope="module")
def app_client(warehouse: DbConnectWarehouse) -> Iterator[TestClient]:
    settings = Settings(**warehouse.environment(), max_body_bytes=BODY_LIMIT, max_json_body_bytes=JSON_LIMIT)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {token('api_writer')}"}) as client:
        yield client


@pytest.fixture
def client(app_client: TestClient, warehouse: DbConnectWarehouse) -> TestClient:
    warehouse.execute("TRUNCATE consumption.stations CASCADE")
    return app_client


def stations(warehouse: DbConnectWarehouse) -> list[tuple]:
    return warehouse.execute("SELECT id, name, capacity FROM consumption.stations ORDER BY id")


def test_a_json_array_is_inserted_and_returns_201_with_the_row_count(
    client: TestClient, warehouse: DbConnectWarehouse
) -> None:
    body = [
        {"id": 1, "name": "Tab\there", "capacity": 5, "tags": {"a": [1, "x"]}, "opened": "2024-01-02"},
        {"id": 2, "name": 'Back\\slash "quote"\nnewline', "capacity": None, "tags": None, "opened": None},
    ]
    response = client.post("/consumption/stations", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["Content-Range"] == "*/2"
    assert response.content == b""
    assert stations(warehouse) == [(1, "Tab\there", 5), (2, 'Back\\slash "quote"\nnewline', None)]
    assert warehouse.execute("SELECT tags FROM consumption.stations WHERE id = 1") == [({"a": [1, "x"]},)]


def test_a_single_object_is_a_one_row_insert(client: TestClient, warehouse: DbConnectWarehouse) -> None:
    assert client.post("/consumption/stations", json={"id": 3, "name": "one"}).status_code == 201
    assert stations(warehouse) == [(3, "one", None)]


def test_a_csv_body_is_copied_with_its_header_naming_the_columns(
    client: TestClient, warehouse: DbConnectWarehouse
) -> None:
    body = 'name,id,capacity\n"Comma, inside",10,\n"",11,7\n'
    response = client.post("/consumption/stations", content=body, headers={"Content-Type": "text/csv"})
    assert response.status_code == 201, response.text
    assert response.headers["Content-Range"] == "*/2"
    assert stations(warehouse) == [(10, "Comma, inside", None), (11, "", 7)]


def test_return_representation_gives_the_written_rows_with_defaults(client: TestClient) -> None:
    response = client.post(
        "/consumption/stations?select=id,name,created_at",
        json=[{"id": 4, "name": "four"}],
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 201
    (row,) = response.json()
    assert (row["id"], row["name"]) == (4, "four") and row["created_at"]


def test_upsert_merges_on_the_conflict_columns(client: TestClient, warehouse: DbConnectWarehouse) -> None:
    client.post("/consumption/stations", json=[{"id": 1, "name": "old", "capacity": 1}])
    response = client.post(
        "/consumption/stations?on_conflict=id",
        json=[{"id": 1, "name": "new", "capacity": 9}, {"id": 2, "name": "added", "capacity": 2}],
        headers={"Prefer": "resolution=merge-duplicates, return=representation"},
    )
    assert response.status_code == 201, response.text
    assert sorted(row["name"] for row in response.json()) == ["added", "new"]
    assert stations(warehouse) == [(1, "new", 9), (2, "added", 2)]


def test_ignore_duplicates_keeps_the_existing_rows(client: TestClient, warehouse: DbConnectWarehouse) -> None:
    client.post("/consumption/stations", json=[{"id": 1, "name": "old"}])
    response = client.post(
        "/consumption/stations",
        content="id,name\n1,new\n2,other\n",
        headers={"Content-Type": "text/csv", "Prefer": "resolution=ignore-duplicates"},
    )
    assert response.status_code == 201
    assert response.headers["Content-Range"] == "*/1"
    assert stations(warehouse) == [(1, "old", None), (2, "other", None)]


def test_a_duplicate_key_is_409_and_writes_nothing(client: TestClient, warehouse: DbConnectWarehouse) -> None:
    response = client.post("/consumption/stations", json=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])
    assert response.status_code == 409
    assert response.json()["code"] == "23505"
    assert stations(warehouse) == []


def test_a_missing_foreign_key_is_409(client: TestClient) -> None:
    response = client.post("/consumption/station_codes", json={"code": "X", "station": 404})
    assert response.status_code == 409
    assert response.json()["code"] == "23503"


def test_inserting_through_an_updatable_view_works(client: TestClient, warehouse: DbConnectWarehouse) -> None:
    response = client.post("/consumption/big_stations", json=[{"id": 5, "name": "via view", "capacity": 50}])
    assert response.status_code == 201, response.text
    assert stations(warehouse) == [(5, "via view", 50)]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        ("[]", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('[{"id": 1, "name": "a"}, {"id": 2}]', "application/json", 400),
        ('{"id": 1, "nope": 2}', "application/json", 400),
        ('{"id": "one", "name": "a"}', "application/json", 400),
        ('{"id": 1, "name": null}', "application/json", 400),
        ('{"id": 1, "name": "a", "capacity": -1}', "application/json", 400),
        ('{"id": 1, "name": "a\\u0000"}', "application/json", 400),
        ("id\rname\r1\ra\r", "text/csv", 400),  # old Mac line ends: the header cannot be read
        ("id,name\n1,a\n\\.\n2,b\n", "text/csv", 400),  # COPY would stop at \. and drop row 2
        ("id,name\r\n1,a\r\n\\.\r\n2,b\r\n", "text/csv", 400),
        ("id,name\n1,a\n\\.", "text/csv", 400),
        ("id,name\n1,a\r\\.\r2,b\r", "text/csv", 400),  # rows ending in a bare CR: COPY's own line ending then
        ("id,name\r\n1,a\r\\.\r2,b\r", "text/csv", 400),
        ("id,name\n1,a\r\\.\r\n2,b\r\n", "text/csv", 400),
        ("{not json", "application/json", 400),
        ("id,nope\n1,2\n", "text/csv", 400),
        ("id,name\n1,a,extra\n", "text/csv", 400),
        ("id,id\n1,1\n", "text/csv", 400),
        ("\n", "text/csv", 400),
        ("<xml/>", "application/xml", 415),
    ],
)
def test_bad_bodies_are_4xx_and_write_nothing(
    client: TestClient, warehouse: DbConnectWarehouse, content: str, content_type: str, status: int
) -> None:
    response = client.post("/consumption/stations", content=content, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert set(response.json()) == {"code", "message", "details", "hint"}
    assert stations(warehouse) == []


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(
    client: TestClient, warehouse: DbConnectWarehouse
) -> None:
    rows = "".join(f"{i},name {i}\n" for i in range(20000))
    response = client.post("/consumption/stations", content="id,name\n" + rows, headers={"Content-Type": "text/csv"})
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b"id,name\n"
        for start in range(0, 20000, 1000):
            yield "".join(f"{i},n\n" for i in range(start, start + 1000)).encode()

    response = client.post("/consumption/stations", content=chunks(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 413
    assert stations(warehouse) == []


@pytest.mark.parametrize("body", ['{"id": 1, "name": "\\ud800"}', '{"\\udc00": 1}', '[{"id": 1, "name": "a\\udfffb"}]'])
def test_a_lone_surrogate_is_refused_as_what_it_is(client: TestClient, body: str) -> None:
    response = client.post("/consumption/stations", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "surrogate" in response.json()["message"]


def test_a_json_body_has_a_lower_limit_than_the_streamed_csv_of_the_same_rows(
    client: TestClient, warehouse: DbConnectWarehouse
) -> None:
    rows = [{"id": i, "name": f"name {i}"} for i in range(1000)]
    as_json = client.post("/consumption/stations", json=rows)
    assert as_json.status_code == 413 and "CSV" in as_json.json()["hint"]
    as_csv = "id,name\n" + "".join(f"{r['id']},{r['name']}\n" for r in rows)
    assert client.post("/consumption/stations", content=as_csv, headers={"Content-Type": "text/csv"}).status_code == 201
    assert len(stations(warehouse)) == 1000


def test_a_quoted_end_of_data_marker_is_a_value(client: TestClient, warehouse: DbConnectWarehouse) -> None:
    quoted = client.post("/consumption/stations", content='id,name\n1,"\\."\n', headers={"Content-Type": "text/csv"})
    assert quoted.status_code == 201 and stations(warehouse) == [(1, "\\.", None)]


def test_an_upsert_naming_one_key_twice_is_400_and_writes_nothing(
    client: TestClient, warehouse: DbConnectWarehouse
) -> None:
    twice = [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]
    response = client.post("/consumption/stations?on_conflict=id", json=twice)
    assert response.status_code == 400 and response.json()["code"] == "21000"
    assert stations(warehouse) == []


@pytest.mark.parametrize(
    ("method", "query"),
    [("PATCH", "limit=1"), ("DELETE", "order=id"), ("DELETE", "offset=2"), ("PATCH", "on_conflict=id")],
)
def test_paging_and_ordering_a_write_are_refused_not_ignored(
    client: TestClient, warehouse: DbConnectWarehouse, method: str, query: str
) -> None:
    seed(client)
    response = client.request(method, f"/consumption/stations?capacity=gte.1&{query}", json={"name": "x"})
    assert response.status_code == 400, response.text
    parameter = query.split("=")[0]
    assert response.json()["details"].startswith(f"query parameter '{parameter}'")
    assert [row[1] for row in stations(warehouse)] == [f"s{i}" for i in range(1, 7)]


def seed(client: TestClient) -> None:
    rows = [{"id": i, "name": f"s{i}", "capacity": i} for i in range(1, 7)]
    assert client.post("/consumption/stations", json=rows).status_code == 201


def test_patch_updates_only_the_filtered_rows(client: TestClient, warehouse: DbConnectWarehouse) -> None:
    seed(client)
    response = client.patch("/consumption/stations?capacity=gte.5", json={"name": "big"})
    assert response.status_code == 204
    assert response.headers["Content-Range"] == "*/2"
    assert [row[1] for row in stations(warehouse)] == ["s1", "s2", "s3", "s4", "big", "big"]
    returned = client.patch(
        "/consumption/stations?id=eq.1&select=id,capacity",
        json={"capacity": 100},
        headers={"Prefer": "return=representation"},
    )
    assert returned.status_code == 200 and returned.json() == [{"id": 1, "capacity": 100}]


def test_delete_removes_only_the_filtered_rows(client: TestClient, warehouse: DbConnectWarehouse) -> None:
    seed(client)
    response = client.delete("/consumption/stations?or=(id.eq.1,id.eq.6)", headers={"Prefer": "return=representation"})
    assert response.status_code == 200
    assert sorted(row["id"] for row in response.json()) == [1, 6]
    assert [row[0] for row in stations(warehouse)] == [2, 3, 4, 5]


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_update_and_delete_without_a_filter_are_refused(
    client: TestClient, warehouse: DbConnectWarehouse, method: str
) -> None:
    seed(client)
    response = client.request(method, "/consumption/stations?select=id", json={"name": "all"})
    assert response.status_code == 400
    assert response.json()["code"] == "filter_required"
    assert len(stations(warehouse)) == 6 and {row[1] for row in stations(warehouse)} != {"all"}


def test_a_role_without_the_grant_gets_403_and_writes_nothing(
    client: TestClient, warehouse: DbConnectWarehouse
) -> None:
    reader = {"X-API-Key": DB_CONNECT_API_KEY, "Authorization": ""}
    response = client.post("/consumption/stations", json={"id": 1, "name": "x"}, headers=reader)
    assert response.status_code == 403
    assert response.json()["code"] == "42501"
    assert client.delete("/consumption/stations?id=gt.0", headers=reader).status_code == 403
    assert stations(warehouse) == []


def test_an_api_killed_in_the_middle_of_a_bulk_insert_leaves_no_row(warehouse: DbConnectWarehouse) -> None:
    """A body is COPYed in one transaction: SIGKILL the server while rows go into the table, and none is kept."""
    warehouse.execute("TRUNCATE consumption.stations CASCADE")
    server, base = serve_db_connect(warehouse)
    rows = 1_000_000  # about 25 MB: COPY takes long enough to be caught at it

    def body() -> Iterator[bytes]:
        yield b"id,name,capacity\n"
        for start in range(1, rows + 1, 10_000):
            yield "".join(f"{i},station {i},{i % 50}\n" for i in range(start, start + 10_000)).encode()

    def post() -> None:
        headers = {"Authorization": f"Bearer {token('api_writer')}", "Content-Type": "text/csv"}
        with contextlib.suppress(httpx.TransportError):
            httpx.post(f"{base}/consumption/stations", content=body(), headers=headers, timeout=30)

    copying = (
        "SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy"
        " WHERE relid = 'consumption.stations'::regclass"
    )
    deadline = time.monotonic() + 30
    sender = threading.Thread(target=post)
    try:
        sender.start()
        while warehouse.execute(copying)[0][0] == 0:
            assert time.monotonic() < deadline, "the COPY never started"
            time.sleep(0.005)
    finally:
        server.kill()
        server.communicate(timeout=10)
        sender.join(timeout=30)
    while warehouse.execute(copying)[0][0]:  # Postgres ends the COPY once it sees the connection gone
        assert time.monotonic() < deadline + 30, "the COPY outlived its client"
        time.sleep(0.1)
    assert stations(warehouse) == []
