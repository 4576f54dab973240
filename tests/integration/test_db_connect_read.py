"""Reading rows: selection, filters, logic groups, ordering, paging, counts, CSV and streaming."""

import base64
import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from db_connect.app import create_app
from db_connect.settings import Settings
from tests.integration.conftest import DB_CONNECT_API_KEY, DbConnectWarehouse

SETUP_SQL = """
CREATE TABLE consumption.trips (
    id integer PRIMARY KEY,
    city text NOT NULL,
    riders integer,
    fare numeric(10, 2) NOT NULL,
    note text
);
INSERT INTO consumption.trips
SELECT i, (ARRAY['Oslo', 'Lyon', 'Porto'])[1 + i % 3], CASE WHEN i % 4 = 0 THEN NULL ELSE i % 7 END,
       i * 2.5, CASE WHEN i % 10 = 0 THEN 'late, very late' END
FROM generate_series(1, 30) AS i;
CREATE TABLE consumption.big (id integer PRIMARY KEY, label text NOT NULL);
INSERT INTO consumption.big SELECT i, 'row ' || i FROM generate_series(1, 5000) AS i;
ANALYZE consumption.trips, consumption.big;
GRANT SELECT ON consumption.trips, consumption.big TO api_reader;
"""


@pytest.fixture(scope="module")
def client(db_connect_warehouse: DbConnectWarehouse) -> Iterator[TestClient]:
    db_connect_warehouse.execute(SETUP_SQL)
    settings = Settings(**db_connect_warehouse.environment(), max_page_size=10000, exact_count_limit=100)
    with TestClient(create_app(settings), headers={"X-API-Key": DB_CONNECT_API_KEY}) as test_client:
        yield test_client
    db_connect_warehouse.execute("DROP TABLE consumption.trips, consumption.big")


def ids(client: TestClient, query: str) -> list[int]:
    response = client.get(f"/consumption/trips?{query}")
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()]


def expected(predicate: Any) -> list[int]:
    """The ids of SETUP_SQL's rows matching a Python predicate over (id, city, riders, fare, note)."""
    rows = []
    for i in range(1, 31):
        row = {
            "id": i,
            "city": ["Oslo", "Lyon", "Porto"][i % 3],
            "riders": None if i % 4 == 0 else i % 7,
            "fare": i * 2.5,
            "note": "late, very late" if i % 10 == 0 else None,
        }
        if predicate(row):
            rows.append(i)
    return rows


def test_select_returns_only_the_named_columns_in_that_order(client: TestClient) -> None:
    rows = client.get("/consumption/trips?select=city,id&limit=2").json()
    assert rows == [{"city": "Lyon", "id": 1}, {"city": "Porto", "id": 2}]
    assert list(rows[0]) == ["city", "id"]


@pytest.mark.parametrize(
    ("query", "predicate"),
    [
        ("city=eq.Oslo", lambda r: r["city"] == "Oslo"),
        ("city=neq.Oslo", lambda r: r["city"] != "Oslo"),
        ("riders=gt.4", lambda r: r["riders"] is not None and r["riders"] > 4),
        ("riders=gte.4", lambda r: r["riders"] is not None and r["riders"] >= 4),
        ("fare=lt.10", lambda r: r["fare"] < 10),
        ("fare=lte.10", lambda r: r["fare"] <= 10),
        ("city=like.*rt*", lambda r: "rt" in r["city"]),
        ("city=ilike.o*", lambda r: r["city"].lower().startswith("o")),
        ("id=in.(3,5,7)", lambda r: r["id"] in (3, 5, 7)),
        ('note=in.("late, very late")', lambda r: r["note"] == "late, very late"),
        ("riders=is.null", lambda r: r["riders"] is None),
        ("riders=not.is.null", lambda r: r["riders"] is not None),
        ("city=not.eq.Oslo&riders=not.in.(1,2)", lambda r: r["city"] != "Oslo" and r["riders"] not in (1, 2, None)),
        ("id=gt.5&id=lt.9", lambda r: 5 < r["id"] < 9),
        ("or=(id.eq.1,id.eq.30)", lambda r: r["id"] in (1, 30)),
        (
            "or=(city.eq.Oslo,and(riders.is.null,fare.gt.50))",
            lambda r: r["city"] == "Oslo" or (r["riders"] is None and r["fare"] > 50),
        ),
        ("not.or=(city.eq.Oslo,city.eq.Lyon)", lambda r: r["city"] == "Porto"),
        (
            "and=(id.gte.10,not.or(city.eq.Oslo,riders.is.null))",
            lambda r: r["id"] >= 10 and r["city"] != "Oslo" and r["riders"] is not None,
        ),
        ("id=in.()", lambda r: False),
    ],
)
def test_filters_match_what_they_say(client: TestClient, query: str, predicate: Any) -> None:
    assert ids(client, query) == expected(predicate)


def test_an_in_list_of_any_length_is_one_bound_array(client: TestClient) -> None:
    # as long as a URL the client takes allows; a list was one parameter per value (and a 500 past 65,535)
    listed = ",".join(str(i) for i in range(10_000))
    assert ids(client, f"id=in.({listed})") == list(range(1, 31))
    # quotes, backslashes, braces and commas inside a value are the value, not array syntax
    tricky = client.get('/consumption/trips?note=in.("late, very late","a\\"b","{c}","d\\\\")&select=id')
    assert tricky.status_code == 200 and [r["id"] for r in tricky.json()] == [10, 20, 30]


def test_a_cursor_nested_too_deep_to_decode_is_a_400(client: TestClient) -> None:
    token = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")
    response = client.get(f"/consumption/trips?order=id&cursor={token}")
    assert response.status_code == 400 and response.json()["details"].startswith("query parameter 'cursor'")


def test_order_on_several_columns_with_nulls_first_or_last(client: TestClient) -> None:
    rows = client.get("/consumption/trips?select=id,riders&order=riders.desc.nullslast,id.desc&limit=100").json()
    riders = [row["riders"] for row in rows]
    assert riders == sorted(riders, key=lambda v: (v is None, -(v or 0)))
    assert rows[0] == {"id": 27, "riders": 6}
    first = client.get("/consumption/trips?select=id,riders&order=riders.asc.nullsfirst,id&limit=3").json()
    assert first == [{"id": 4, "riders": None}, {"id": 8, "riders": None}, {"id": 12, "riders": None}]


def test_limit_and_offset_page_in_key_order(client: TestClient) -> None:
    assert ids(client, "limit=5&offset=10") == [11, 12, 13, 14, 15]


def follow_cursor(client: TestClient, query: str) -> list[list[int]]:
    pages, cursor = [], ""
    while cursor is not None:
        response = client.get(f"/consumption/trips?{query}&cursor={cursor}")
        assert response.status_code == 200, response.text
        pages.append([row["id"] for row in response.json()])
        cursor = response.headers.get("Next-Cursor")
        assert len(pages) < 20
    return pages


def test_keyset_pages_follow_the_next_cursor_to_the_end_without_gaps_or_overlap(client: TestClient) -> None:
    pages = follow_cursor(client, "limit=7")
    assert pages[:-1] == [list(range(1, 8)), list(range(8, 15)), list(range(15, 22)), list(range(22, 29))]
    assert [i for page in pages for i in page] == list(range(1, 31))


def test_keyset_pages_work_for_mixed_directions(client: TestClient) -> None:
    pages = follow_cursor(client, "select=id,city&order=city.desc,id.asc&limit=4&city=neq.Lyon")
    flat = [i for page in pages for i in page]
    assert flat == expected(lambda r: r["city"] == "Porto") + expected(lambda r: r["city"] == "Oslo")


@pytest.mark.parametrize(
    "query",
    ["cursor=not-a-cursor&limit=3", "cursor=WyIxIl0&order=riders&limit=3", "cursor=&offset=3", "cursor=WyJ4Il0"],
    ids=["garbage", "nullable order column", "with offset", "value of the wrong type"],
)
def test_bad_cursors_are_400(client: TestClient, query: str) -> None:
    response = client.get(f"/consumption/trips?{query}")
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    ("prefer", "content_range"),
    [
        ("count=exact", "0-9/23"),
        ("count=planned", None),
        ("count=estimated", "0-9/23"),
        (None, "0-9/*"),
    ],
)
def test_counts_on_request_fill_content_range(
    client: TestClient, prefer: str | None, content_range: str | None
) -> None:
    headers = {"Prefer": prefer} if prefer else {}
    response = client.get("/consumption/trips?riders=not.is.null&limit=10", headers=headers)
    assert response.status_code == (206 if prefer else 200), "a known total beyond the page is partial content"
    if content_range:
        assert response.headers["Content-Range"] == content_range
    else:
        first, _, total = response.headers["Content-Range"].partition("/")
        assert first == "0-9" and int(total) > 0


def test_an_estimated_count_beyond_the_exact_limit_comes_from_the_planner(client: TestClient) -> None:
    response = client.get("/consumption/big?limit=1", headers={"Prefer": "count=estimated"})
    total = int(response.headers["Content-Range"].partition("/")[2])
    assert 4000 <= total <= 6000  # exact_count_limit is 100: a planner's estimate, from statistics


def test_an_empty_page_has_a_star_range(client: TestClient) -> None:
    response = client.get("/consumption/trips?id=gt.1000", headers={"Prefer": "count=exact"})
    assert response.json() == []
    assert response.headers["Content-Range"] == "*/0"


def test_csv_has_a_header_quotes_text_and_leaves_nulls_empty(client: TestClient) -> None:
    response = client.get("/consumption/trips?select=id,note,riders&id=in.(4,10)", headers={"Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text == '"id","note","riders"\n"4",,\n"10","late, very late","3"\n'
    assert list(csv.reader(io.StringIO(response.text)))[2] == ["10", "late, very late", "3"]


def test_large_results_stream_in_chunks_as_json_and_csv(client: TestClient) -> None:
    with client.stream("GET", "/consumption/big?limit=5000", headers={"Prefer": "count=exact"}) as response:
        assert response.headers["Content-Range"] == "0-*/5000"
        chunks = list(response.iter_raw())
    assert len(chunks) > 1, "a 5000-row page is sent in several chunks"
    import json

    rows = json.loads(b"".join(chunks))
    assert [row["id"] for row in rows] == list(range(1, 5001))
    with client.stream("GET", "/consumption/big?limit=5000", headers={"Accept": "text/csv"}) as response:
        lines = b"".join(response.iter_raw()).decode().splitlines()
    assert lines[0] == '"id","label"' and lines[-1] == '"5000","row 5000"' and len(lines) == 5001


def test_a_bad_value_in_a_streamed_read_is_still_a_400(client: TestClient) -> None:
    response = client.get("/consumption/big?id=eq.abc", headers={"Accept": "text/csv"})
    assert response.status_code == 400
    assert response.json()["code"] == "22P02"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("nope=eq.1", "nope"),
        ("select=id,nope", "select"),
        ("order=nope", "order"),
        ("order=id.sideways", "order"),
        ("id=approx.1", "id"),
        ("id=in.1,2", "id"),
        ("riders=is.maybe", "riders"),
        ("or=(id.eq.1", "or"),
        ("or=id.eq.1", "or"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("offset=-1", "offset"),
    ],
)
def test_malformed_parameters_are_400_naming_the_parameter(client: TestClient, query: str, parameter: str) -> None:
    response = client.get(f"/consumption/trips?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["details"].startswith(f"query parameter '{parameter}'")


def test_a_value_that_does_not_fit_the_column_is_400_from_postgres(client: TestClient) -> None:
    response = client.get("/consumption/trips?riders=gt.many")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "22P02"
    assert "integer" in body["message"] and "SELECT" not in response.text


def test_an_unsupported_accept_is_406(client: TestClient) -> None:
    assert client.get("/consumption/trips", headers={"Accept": "application/xml"}).status_code == 406
