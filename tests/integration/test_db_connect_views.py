"""Views in consumption are read-only to request roles unless their comment declares them @writable.

A simple view is auto-updatable: a writer key writing consumption.flights would change curated.flights, data the
ETL owns. The grants are the platform init job's (stack/postgres/init.sh), run here on a cluster of its own, and
db_connect is the caller, as on the platform.
"""

from collections.abc import Iterator
from pathlib import Path

import jwt
import psycopg
import pytest
from fastapi.testclient import TestClient

from db_connect.app import create_app
from db_connect.settings import Settings
from tests.integration.conftest import PostgresServer, running_postgres
from tests.integration.test_postgres_init import PASSWORD, init_ok

JWT_SECRET = "views-jwt-secret-0123456789abcdef"
ETL_SQL = """
CREATE TABLE curated.flights (id integer PRIMARY KEY, passengers integer NOT NULL);
INSERT INTO curated.flights VALUES (1, 100);
CREATE VIEW consumption.flights AS SELECT id, passengers FROM curated.flights;
CREATE TABLE consumption.bookings (id integer PRIMARY KEY, seats integer NOT NULL);
CREATE TABLE curated.corrections (id integer PRIMARY KEY, note text NOT NULL);
CREATE VIEW consumption.corrections AS SELECT id, note FROM curated.corrections;
COMMENT ON VIEW consumption.corrections IS 'Fixes sent by the operations team.
@writable';
"""


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with running_postgres() as cluster:
        for role in ("db_connect", "airflow", "kafka"):
            cluster.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        init_ok(cluster)
        with psycopg.connect(cluster.dsn("warehouse", user="airflow", password=PASSWORD), autocommit=True) as etl:
            etl.execute(ETL_SQL)  # as the platform's ETL: a writer, owner of what it creates
        yield cluster


@pytest.fixture(scope="module")
def client(server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    secrets: Path = tmp_path_factory.mktemp("views_secrets")
    for name, value in {"db_password": PASSWORD, "api_key": "views-api-key", "jwt_secret": JWT_SECRET}.items():
        (secrets / name).write_text(value)
    settings = Settings(
        pghost=server.host,
        pgport=server.port,
        pgdatabase="warehouse",
        pguser="db_connect",
        pgpassword_file=secrets / "db_password",
        api_key_file=secrets / "api_key",
        jwt_secret_file=secrets / "jwt_secret",
    )
    writer = jwt.encode({"role": "api_writer"}, JWT_SECRET, algorithm="HS256")
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {writer}"}) as test_client:
        yield test_client


def writes(server: PostgresServer, relation: str) -> list[bool]:
    return [
        server.execute(f"SELECT has_table_privilege('api_writer', %s, '{privilege}')", (relation,), "warehouse")[0][0]
        for privilege in ("INSERT", "UPDATE", "DELETE")
    ]


def test_a_view_over_curated_data_is_read_only_to_a_writer_key(client: TestClient, server: PostgresServer) -> None:
    assert client.get("/consumption/flights").json() == [{"id": 1, "passengers": 100}]
    for response in (
        client.post("/consumption/flights", json={"id": 2, "passengers": 1}),
        client.patch("/consumption/flights?id=eq.1", json={"passengers": 0}),
        client.delete("/consumption/flights?id=eq.1"),
    ):
        assert response.status_code == 403, response.text
        assert set(response.json()) == {"code", "message", "details", "hint"}
    assert server.execute("SELECT id, passengers FROM curated.flights", dbname="warehouse") == [(1, 100)]


def test_tables_stay_writable_and_a_view_commented_writable_is(client: TestClient) -> None:
    assert client.post("/consumption/bookings", json={"id": 1, "seats": 2}).status_code == 201
    assert client.post("/consumption/corrections", json={"id": 1, "note": "late"}).status_code == 201
    assert client.patch("/consumption/corrections?id=eq.1", json={"note": "early"}).status_code == 204


def test_commenting_a_view_opens_or_closes_it_for_writes(server: PostgresServer) -> None:
    with psycopg.connect(server.dsn("warehouse", user="airflow", password=PASSWORD), autocommit=True) as etl:
        etl.execute("CREATE VIEW consumption.flights_copy AS SELECT * FROM curated.flights")
        assert writes(server, "consumption.flights_copy") == [False, False, False]
        etl.execute("COMMENT ON VIEW consumption.flights_copy IS '@writable'")
        assert writes(server, "consumption.flights_copy") == [True, True, True]
        etl.execute("COMMENT ON VIEW consumption.flights_copy IS 'read it only'")
        assert writes(server, "consumption.flights_copy") == [False, False, False]
        etl.execute("DROP VIEW consumption.flights_copy")


def test_the_init_job_takes_back_writes_an_earlier_run_granted_on_views(server: PostgresServer) -> None:
    """Earlier platforms granted writes on every relation in consumption, views included."""
    server.execute("GRANT INSERT, UPDATE, DELETE ON consumption.flights TO api_writer", dbname="warehouse")
    init_ok(server)
    assert writes(server, "consumption.flights") == [False, False, False]
    assert writes(server, "consumption.corrections") == [True, True, True]
    assert writes(server, "consumption.bookings") == [True, True, True]
