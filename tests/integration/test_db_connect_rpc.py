"""/rpc/: functions of the exposed schemas called with named arguments, under the caller's role."""

from collections.abc import Iterator

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import DB_CONNECT_JWT_SECRET, DbConnectWarehouse, db_connect_client

SETUP_SQL = """
CREATE TABLE consumption.visits (id integer PRIMARY KEY, city text NOT NULL, guests integer NOT NULL);
INSERT INTO consumption.visits SELECT i, (ARRAY['Oslo', 'Lyon'])[1 + i % 2], i FROM generate_series(1, 10) AS i;
GRANT SELECT ON consumption.visits TO api_reader, api_writer;
GRANT INSERT ON consumption.visits TO api_writer;
CREATE FUNCTION consumption.add(a integer, b integer DEFAULT 10) RETURNS integer
    LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
CREATE FUNCTION consumption.whoami() RETURNS text LANGUAGE sql STABLE AS 'SELECT current_user::text';
CREATE FUNCTION consumption.read_only_now() RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT current_setting('transaction_read_only') $$;
CREATE FUNCTION consumption.visits_in(place text) RETURNS SETOF consumption.visits
    LANGUAGE sql STABLE AS 'SELECT * FROM consumption.visits WHERE city = place';
CREATE FUNCTION consumption.busiest() RETURNS consumption.visits
    LANGUAGE sql STABLE AS 'SELECT * FROM consumption.visits ORDER BY guests DESC LIMIT 1';
CREATE FUNCTION consumption.squares(n integer) RETURNS SETOF integer
    LANGUAGE sql IMMUTABLE AS 'SELECT i * i FROM generate_series(1, n) AS i';
CREATE FUNCTION consumption.totals(ids integer[]) RETURNS TABLE (city text, total bigint)
    LANGUAGE sql STABLE AS 'SELECT city, sum(guests) FROM consumption.visits WHERE id = ANY(ids) GROUP BY city';
CREATE FUNCTION consumption.record_visit(id integer, city text) RETURNS integer LANGUAGE sql VOLATILE
    AS 'INSERT INTO consumption.visits VALUES (id, city, 0) RETURNING id';
CREATE FUNCTION consumption.forget() RETURNS void LANGUAGE sql VOLATILE AS 'SELECT';
"""


TEARDOWN_SQL = """
DROP TABLE consumption.visits CASCADE;
DROP FUNCTION consumption.add, consumption.whoami, consumption.read_only_now, consumption.squares,
    consumption.totals, consumption.record_visit, consumption.forget;
"""


@pytest.fixture(scope="module")
def client(db_connect_warehouse: DbConnectWarehouse) -> Iterator[TestClient]:
    with db_connect_client(db_connect_warehouse, SETUP_SQL, TEARDOWN_SQL, exposed_schemas="consumption") as c:
        yield c


def writer() -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode({"role": "api_writer"}, DB_CONNECT_JWT_SECRET, algorithm="HS256")}


def test_post_takes_named_arguments_as_a_json_object(client: TestClient) -> None:
    response = client.post("/rpc/add", json={"a": 1, "b": 2})
    assert (response.status_code, response.json()) == (200, 3)
    assert client.post("/rpc/add", json={"a": 1}).json() == 11, "an argument with a default may be left out"


def test_get_takes_arguments_as_query_parameters_for_stable_and_immutable_functions(client: TestClient) -> None:
    assert client.get("/rpc/add?a=5&b=6").json() == 11
    assert client.get("/consumption/rpc/add?a=5").json() == 15, "db_connect's own URL, schema in the path"


def test_a_call_runs_under_the_callers_role(client: TestClient) -> None:
    assert client.get("/rpc/whoami").json() == "api_reader"
    assert client.get("/rpc/whoami", headers=writer()).json() == "api_writer"


def test_get_and_stable_functions_run_in_a_read_only_transaction(client: TestClient) -> None:
    assert client.get("/rpc/read_only_now").json() == "on"
    assert client.post("/rpc/read_only_now").json() == "on", "STABLE: nothing to write, so read-only"


def test_a_volatile_function_is_405_by_get_and_runs_read_write_by_post(client: TestClient) -> None:
    refused = client.get("/rpc/record_visit?id=100&city=Rome", headers=writer())
    assert refused.status_code == 405 and refused.json()["code"] == "PGRST101"
    assert refused.headers["Allow"] == "POST"
    created = client.post("/rpc/record_visit", json={"id": 100, "city": "Rome"}, headers=writer())
    assert (created.status_code, created.json()) == (200, 100)
    assert client.get("/visits?id=eq.100&select=city").json() == [{"city": "Rome"}]


def test_grants_decide_what_a_function_may_touch(client: TestClient) -> None:
    response = client.post("/rpc/record_visit", json={"id": 101, "city": "Rome"})
    assert response.status_code == 403 and response.json()["code"] == "42501"


def test_set_returning_functions_take_select_filters_order_and_paging_like_tables(client: TestClient) -> None:
    response = client.get(
        "/rpc/visits_in?place=Oslo&select=id,guests&guests=gt.2&order=guests.desc&limit=2&offset=1",
        headers={"Prefer": "count=exact"},
    )
    assert response.json() == [{"id": 8, "guests": 8}, {"id": 6, "guests": 6}]
    assert (response.status_code, response.headers["Content-Range"]) == (206, "1-2/4")
    posted = client.post("/rpc/visits_in?select=id&order=id&limit=1", json={"place": "Lyon"})
    assert posted.json() == [{"id": 1}]


def test_returns_table_and_array_arguments(client: TestClient) -> None:
    rows = client.post("/rpc/totals?order=city", json={"ids": [1, 2, 3]}).json()
    assert rows == [{"city": "Lyon", "total": 4}, {"city": "Oslo", "total": 2}]


def test_a_single_row_type_is_an_object_and_a_set_of_scalars_an_array(client: TestClient) -> None:
    assert client.get("/rpc/busiest").json() == {"id": 10, "city": "Oslo", "guests": 10}
    assert client.get("/rpc/squares?n=4").json() == [1, 4, 9, 16]


def test_a_void_function_answers_204(client: TestClient) -> None:
    response = client.post("/rpc/forget", headers=writer())
    assert (response.status_code, response.content) == (204, b"")


def test_an_unknown_function_is_404_pgrst202(client: TestClient) -> None:
    response = client.post("/rpc/nope", json={})
    assert response.status_code == 404 and response.json()["code"] == "PGRST202"
    assert "consumption.nope" in response.json()["message"]


def test_an_unknown_argument_is_404_naming_it(client: TestClient) -> None:
    response = client.post("/rpc/add", json={"a": 1, "zz": 2})
    body = response.json()
    assert response.status_code == 404 and body["code"] == "PGRST202"
    assert "zz" in body["message"] and "'zz'" in body["hint"] and "(a, b)" in body["hint"]


def test_a_missing_argument_is_404_naming_what_the_function_takes(client: TestClient) -> None:
    response = client.post("/rpc/add", json={"b": 1})
    assert response.status_code == 404 and "(a, b)" in response.json()["hint"]


def test_a_bad_argument_value_is_a_400(client: TestClient) -> None:
    response = client.post("/rpc/add", json={"a": "one"})
    assert response.status_code == 400 and response.json()["code"] == "22P02"


def test_a_scalar_result_cannot_be_filtered(client: TestClient) -> None:
    response = client.get("/rpc/add?a=1&order=a")
    assert response.status_code == 400 and "select" in response.json()["message"]


def test_functions_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/consumption/rpc/add"]) == {"get", "post"}
    assert set(paths["/consumption/rpc/record_visit"]) == {"post"}, "VOLATILE: no GET"


def test_an_empty_body_is_no_arguments_and_an_over_long_one_is_413(client: TestClient) -> None:
    assert client.post("/rpc/whoami", content=b"", headers={"Content-Type": "application/json"}).json() == "api_reader"
    too_long = b'{"a": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    response = client.post("/rpc/add", content=too_long, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (413, "body_too_large")
