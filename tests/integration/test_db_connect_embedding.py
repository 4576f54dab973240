"""Resource embedding through foreign keys, as PostgREST's docs specify it, against a real Postgres."""

from collections.abc import Iterator

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import DB_CONNECT_JWT_SECRET, DbConnectWarehouse, db_connect_client

SETUP_SQL = """
CREATE TABLE consumption.countries (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE consumption.cities (
    id integer PRIMARY KEY, name text NOT NULL, country_id integer REFERENCES consumption.countries (id)
);
CREATE TABLE consumption.flights (
    id integer PRIMARY KEY,
    origin_id integer NOT NULL CONSTRAINT flights_origin_fk REFERENCES consumption.cities (id),
    destination_id integer NOT NULL CONSTRAINT flights_destination_fk REFERENCES consumption.cities (id)
);
CREATE TABLE consumption.films (id integer PRIMARY KEY, title text NOT NULL);
CREATE TABLE consumption.film_budgets (film_id integer PRIMARY KEY REFERENCES consumption.films (id), usd bigint);
CREATE TABLE consumption.actors (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE consumption.roles (
    film_id integer REFERENCES consumption.films (id),
    actor_id integer REFERENCES consumption.actors (id),
    character text,
    PRIMARY KEY (film_id, actor_id)
);
INSERT INTO consumption.countries VALUES (1, 'Norway'), (2, 'France'), (3, 'Iceland');
INSERT INTO consumption.cities VALUES (1, 'Oslo', 1), (2, 'Bergen', 1), (3, 'Lyon', 2), (4, 'Paris', 2),
    (5, 'Atlantis', NULL);
INSERT INTO consumption.flights VALUES (1, 1, 3), (2, 3, 1), (3, 1, 4);
INSERT INTO consumption.films VALUES (1, 'Alpha'), (2, 'Beta'), (3, 'Gamma');
INSERT INTO consumption.actors VALUES (1, 'Ann'), (2, 'Bob'), (3, 'Cy');
INSERT INTO consumption.roles VALUES (1, 1, 'lead'), (1, 2, 'aide'), (2, 2, 'lead');
INSERT INTO consumption.film_budgets VALUES (1, 1000);
GRANT SELECT ON consumption.countries, consumption.cities, consumption.flights, consumption.films,
    consumption.actors, consumption.roles, consumption.film_budgets TO api_reader;
"""
TABLES = ", ".join(
    f"consumption.{name}" for name in ("film_budgets", "roles", "actors", "films", "flights", "cities", "countries")
)


@pytest.fixture(scope="module")
def client(db_connect_warehouse: DbConnectWarehouse) -> Iterator[TestClient]:
    with db_connect_client(db_connect_warehouse, SETUP_SQL, f"DROP TABLE {TABLES}", exposed_schemas="consumption") as c:
        yield c


def get(client: TestClient, url: str) -> object:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def test_many_to_one_embeds_the_parent_as_an_object_or_null(client: TestClient) -> None:
    rows = get(client, "/cities?select=name,countries(name)&order=id")
    assert rows == [
        {"name": "Oslo", "countries": {"name": "Norway"}},
        {"name": "Bergen", "countries": {"name": "Norway"}},
        {"name": "Lyon", "countries": {"name": "France"}},
        {"name": "Paris", "countries": {"name": "France"}},
        {"name": "Atlantis", "countries": None},
    ]


def test_one_to_many_embeds_the_children_as_an_array_empty_when_there_are_none(client: TestClient) -> None:
    rows = get(client, "/countries?select=name,cities(name)&order=id&cities.order=id")
    assert rows == [
        {"name": "Norway", "cities": [{"name": "Oslo"}, {"name": "Bergen"}]},
        {"name": "France", "cities": [{"name": "Lyon"}, {"name": "Paris"}]},
        {"name": "Iceland", "cities": []},
    ]


def test_many_to_many_goes_through_the_junction_table(client: TestClient) -> None:
    rows = get(client, "/films?select=title,actors(name)&order=id&actors.order=name")
    assert rows == [
        {"title": "Alpha", "actors": [{"name": "Ann"}, {"name": "Bob"}]},
        {"title": "Beta", "actors": [{"name": "Bob"}]},
        {"title": "Gamma", "actors": []},
    ]


def test_a_foreign_key_that_is_the_primary_key_is_one_to_one_an_object_both_ways(client: TestClient) -> None:
    rows = get(client, "/films?select=title,film_budgets(usd)&order=id&limit=2")
    assert rows == [{"title": "Alpha", "film_budgets": {"usd": 1000}}, {"title": "Beta", "film_budgets": None}]
    assert get(client, "/film_budgets?select=usd,films(title)") == [{"usd": 1000, "films": {"title": "Alpha"}}]


def test_embeds_nest_and_star_selects_every_column(client: TestClient) -> None:
    rows = get(
        client,
        "/countries?select=*,cities(name,departures:flights!flights_origin_fk(id,to:cities!destination_id(name)))"
        "&id=eq.1&cities.order=id",
    )
    assert rows == [
        {
            "id": 1,
            "name": "Norway",
            "cities": [
                {"name": "Oslo", "departures": [{"id": 1, "to": {"name": "Lyon"}}, {"id": 3, "to": {"name": "Paris"}}]},
                {"name": "Bergen", "departures": []},
            ],
        }
    ]


def test_filters_order_and_limit_apply_to_the_embedded_rows_only(client: TestClient) -> None:
    rows = get(
        client,
        "/countries?select=name,cities(name)&order=id&cities.name=neq.Paris&cities.order=name.desc&cities.limit=1",
    )
    assert rows == [
        {"name": "Norway", "cities": [{"name": "Oslo"}]},
        {"name": "France", "cities": [{"name": "Lyon"}]},
        {"name": "Iceland", "cities": []},
    ]


def test_inner_keeps_only_rows_that_have_a_matching_embedded_row(client: TestClient) -> None:
    response = client.get(
        "/countries?select=name,cities!inner(name)&cities.name=eq.Lyon", headers={"Prefer": "count=exact"}
    )
    assert response.json() == [{"name": "France", "cities": [{"name": "Lyon"}]}]
    assert response.headers["Content-Range"] == "0-0/1", "the count follows !inner too"


def test_an_ambiguous_embedding_is_300_listing_the_relationships_to_choose_from(client: TestClient) -> None:
    response = client.get("/cities?select=name,flights(id)")
    assert response.status_code == 300
    body = response.json()
    assert body["code"] == "PGRST201"
    assert {d["relationship"].split()[0] for d in body["details"]} == {"flights_origin_fk", "flights_destination_fk"}
    assert "'flights!flights_origin_fk'" in body["hint"]


def test_a_constraint_name_disambiguates(client: TestClient) -> None:
    rows = get(
        client,
        "/flights?select=id,from:cities!flights_origin_fk(name),to:cities!flights_destination_fk(name)&order=id",
    )
    assert rows[0] == {"id": 1, "from": {"name": "Oslo"}, "to": {"name": "Lyon"}}


def test_rows_can_be_ordered_by_a_column_of_a_to_one_embed(client: TestClient) -> None:
    rows = get(client, "/cities?select=name,countries(name)&order=countries(name).desc,name")
    assert [row["name"] for row in rows] == ["Atlantis", "Bergen", "Oslo", "Lyon", "Paris"], "nulls first, as desc"


@pytest.mark.parametrize(
    ("query", "code", "names"),
    [
        ("select=name,nowhere(*)", "PGRST200", "nowhere"),
        ("select=name,cities(nope)", "invalid_parameter", "nope"),
        ("select=name&cities.name=eq.Oslo", "invalid_parameter", "cities"),
        ("select=name,cities(name)&cities.nope=eq.1", "invalid_parameter", "nope"),
    ],
)
def test_bad_embedding_is_a_400_naming_what_is_wrong(client: TestClient, query: str, code: str, names: str) -> None:
    response = client.get(f"/countries?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert names in response.json()["message"]


def test_embedding_is_checked_under_the_callers_role(
    client: TestClient, db_connect_warehouse: DbConnectWarehouse
) -> None:
    db_connect_warehouse.execute("REVOKE SELECT ON consumption.actors FROM api_reader")
    try:
        response = client.get("/films?select=title,actors(name)")
        assert response.status_code == 403 and response.json()["code"] == "42501"
    finally:
        db_connect_warehouse.execute("GRANT SELECT ON consumption.actors TO api_reader")


def test_relationships_are_in_the_openapi_document(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    country_id = document["components"]["schemas"]["consumption.cities"]["properties"]["country_id"]
    assert "<fk table='countries' column='id'/>" in country_id["description"]


def test_a_jwt_role_sees_only_what_it_may(client: TestClient) -> None:
    token = jwt.encode({"role": "api_anon"}, DB_CONNECT_JWT_SECRET, algorithm="HS256")
    response = client.get("/countries?select=name,cities(name)", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_embedded_filters_on_a_write_are_refused_not_ignored(client: TestClient, method: str) -> None:
    response = client.request(method, "/countries?id=eq.1&cities.name=eq.Oslo", json={"name": "x"})
    assert response.status_code == 400 and "cities" in response.json()["message"]


VIEWS_SQL = """
CREATE TABLE raw.owners (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE raw.pets (id integer PRIMARY KEY, owner_id integer REFERENCES raw.owners (id), kind text);
INSERT INTO raw.owners VALUES (1, 'Ada'), (2, 'Bo');
INSERT INTO raw.pets VALUES (1, 1, 'cat'), (2, 1, 'dog'), (3, 2, 'eel');
CREATE VIEW consumption.owners AS SELECT id AS owner_no, name FROM raw.owners;
CREATE VIEW consumption.pets_base AS SELECT id, owner_id AS keeper, kind FROM raw.pets;
CREATE VIEW consumption.pets AS SELECT id, keeper, kind FROM consumption.pets_base WHERE kind <> 'eel';
GRANT SELECT ON consumption.owners, consumption.pets, consumption.pets_base TO api_reader;
"""


@pytest.fixture(scope="module")
def views_client(db_connect_warehouse: DbConnectWarehouse) -> Iterator[TestClient]:
    """Views in the exposed schema over tables of one that is not, as the platform's consumption over curated."""
    drop = "DROP VIEW consumption.pets, consumption.pets_base, consumption.owners; DROP TABLE raw.pets, raw.owners"
    with db_connect_client(db_connect_warehouse, VIEWS_SQL, drop, exposed_schemas="consumption") as client:
        yield client


def test_views_carry_the_foreign_keys_of_their_tables_renamed_columns_and_views_over_views_too(
    views_client: TestClient,
) -> None:
    owners = get(views_client, "/owners?select=name,pets(kind)&order=owner_no&pets.order=id")
    assert owners == [{"name": "Ada", "pets": [{"kind": "cat"}, {"kind": "dog"}]}, {"name": "Bo", "pets": []}]
    pets = get(views_client, "/pets_base?select=kind,owners(name)&order=id")
    assert pets[2] == {"kind": "eel", "owners": {"name": "Bo"}}


def test_a_view_and_its_base_view_are_two_relationships_told_apart_by_name(views_client: TestClient) -> None:
    owners = get(views_client, "/owners?select=name,pets_base(kind)&owner_no=eq.2")
    assert owners == [{"name": "Bo", "pets_base": [{"kind": "eel"}]}]
