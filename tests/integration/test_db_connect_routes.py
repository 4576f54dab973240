"""One router for every data URL: PostgREST's /table and /rpc/fn with profiles, and /schema/table."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import DbConnectWarehouse, db_connect_client

SETUP_SQL = """
CREATE SCHEMA quality;
GRANT USAGE ON SCHEMA quality TO api_reader;
CREATE TABLE consumption.places (id integer PRIMARY KEY, name text);
CREATE TABLE quality.places (id integer PRIMARY KEY, verdict text);
INSERT INTO consumption.places VALUES (1, 'Oslo');
INSERT INTO quality.places VALUES (1, 'fine');
GRANT SELECT ON consumption.places, quality.places TO api_reader;
CREATE FUNCTION quality.verdicts() RETURNS SETOF text LANGUAGE sql STABLE AS 'SELECT verdict FROM quality.places';
"""


@pytest.fixture(scope="module")
def client(db_connect_warehouse: DbConnectWarehouse) -> Iterator[TestClient]:
    drop = "DROP SCHEMA quality CASCADE; DROP TABLE consumption.places"
    with db_connect_client(db_connect_warehouse, SETUP_SQL, drop, exposed_schemas="consumption,quality") as c:
        yield c


def test_a_bare_table_name_is_in_the_first_exposed_schema(client: TestClient) -> None:
    assert client.get("/places").json() == [{"id": 1, "name": "Oslo"}]


def test_accept_profile_picks_another_exposed_schema(client: TestClient) -> None:
    assert client.get("/places", headers={"Accept-Profile": "quality"}).json() == [{"id": 1, "verdict": "fine"}]
    assert client.get("/rpc/verdicts", headers={"Accept-Profile": "quality"}).json() == ["fine"]


def test_the_schema_in_the_path_works_and_a_conflicting_profile_is_406(client: TestClient) -> None:
    assert client.get("/quality/places").json() == [{"id": 1, "verdict": "fine"}]
    assert client.get("/quality/rpc/verdicts").json() == ["fine"]
    response = client.get("/quality/places", headers={"Accept-Profile": "consumption"})
    assert (response.status_code, response.json()["code"]) == (406, "PGRST106")


def test_content_profile_is_the_profile_of_writes(client: TestClient) -> None:
    response = client.post("/places", headers={"Content-Profile": "raw"}, json={"id": 2})
    assert (response.status_code, response.json()["code"]) == (406, "PGRST106")
    assert "consumption, quality" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("PUT", "/places", 405, "GET, HEAD, POST, PATCH, DELETE"),
        ("PATCH", "/rpc/verdicts", 405, "GET, HEAD, POST"),
        ("GET", "/nowhere", 404, None),
        ("GET", "/consumption/places/extra", 404, None),
        ("GET", "/rpc/nothing", 404, None),
    ],
)
def test_other_methods_and_paths_use_the_error_shape(
    client: TestClient, method: str, path: str, status: int, allow: str | None
) -> None:
    response = client.request(method, path, headers={"Accept-Profile": "quality", "Content-Profile": "quality"})
    assert response.status_code == status
    assert set(response.json()) == {"code", "message", "details", "hint"}
    assert response.headers.get("Allow") == allow


def test_credentials_come_before_any_name_is_resolved(client: TestClient) -> None:
    for path in ("/places", "/nowhere", "/rpc/verdicts"):
        assert client.get(path, headers={"X-API-Key": "wrong"}).status_code == 401
