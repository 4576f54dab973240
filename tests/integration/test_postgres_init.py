"""The platform's init job (stack/postgres/init.sh) run against a real Postgres 15 cluster of its own.

The job owns the database `warehouse` and cluster-wide roles (db_connect, api_*, warehouse_reader), so it does not
share the session's server. Login roles are made here as SAWMILL_SERVICES would make them (that needs secret files
in /run/secrets); everything else is the job's own doing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from parse_sources.quality import results
from tests.integration.conftest import PostgresServer, run_init, running_postgres

DB_CONNECT_ENTRY = "db_connect:api_anon,api_reader,api_writer"
PASSWORD = "init-test-login"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def server(cluster: PostgresServer) -> Iterator[PostgresServer]:
    """The cluster with the platform's login roles; afterwards as new (no warehouse, no roles but the superuser)."""
    for role in ("db_connect", "airflow", "kafka"):
        cluster.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    yield cluster
    cluster.execute("DROP DATABASE IF EXISTS warehouse WITH (FORCE)")
    for (role,) in cluster.execute(
        "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> current_user ORDER BY oid DESC"
    ):
        cluster.execute(f'DROP ROLE "{role}"')


def init(server: PostgresServer, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run init.sh with the platform's defaults unless overridden."""
    defaults = {
        "SAWMILL_INIT_TIMEOUT": "10",
        "SAWMILL_SERVICES": "",
        "SAWMILL_WAREHOUSE_READERS": "db_connect",
        "SAWMILL_WAREHOUSE_WRITERS": "kafka airflow",
        "SAWMILL_AUTHENTICATORS": DB_CONNECT_ENTRY,
    }
    return run_init(server, **(defaults | settings))


def init_ok(server: PostgresServer, **settings: str) -> str:
    result = init(server, **settings)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def connect(server: PostgresServer, user: str) -> psycopg.Connection:
    return psycopg.connect(server.dsn("warehouse", user=user, password=PASSWORD), autocommit=True)


def publish_quality_result(server: PostgresServer, run_id: str) -> None:
    """What the quality job does on the platform, as the airflow role (a writer)."""
    with psycopg.connect(server.dsn("warehouse", user="airflow", password=PASSWORD)) as conn:
        results.ensure_schema(conn)
        results.store(conn, run_id, "flights", "validity", "passengers >= 0", 0.0, True, "ok")


def test_a_reader_added_later_reads_quality_without_the_quality_job_running_again(server: PostgresServer) -> None:
    init_ok(server)
    publish_quality_result(server, "run-1")
    server.execute(f"CREATE ROLE late_reader LOGIN PASSWORD '{PASSWORD}'")
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        connect(server, "late_reader").close()

    init_ok(server, SAWMILL_WAREHOUSE_READERS="db_connect late_reader")

    with connect(server, "late_reader") as conn:
        assert conn.execute("SELECT run_id, passed FROM quality.results").fetchall() == [("run-1", True)]
        assert conn.execute("SELECT run_id FROM quality.latest").fetchall() == [("run-1",)]
    publish_quality_result(server, "run-2")
    with connect(server, "late_reader") as conn:
        assert conn.execute("SELECT count(*) FROM quality.results").fetchone() == (2,)


def test_db_connect_requests_read_quality_as_their_request_roles(server: PostgresServer) -> None:
    init_ok(server)
    publish_quality_result(server, "run-1")
    with connect(server, "db_connect") as conn:
        for role in ("api_reader", "api_writer"):
            conn.execute(f"SET ROLE {role}")
            assert conn.execute("SELECT run_id FROM quality.results").fetchall() == [("run-1",)]
        conn.execute("SET ROLE api_anon")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT run_id FROM quality.results")


def test_the_db_connect_entry_keeps_todays_roles_grants_and_names(server: PostgresServer) -> None:
    init_ok(server)
    init_ok(server)  # idempotent
    wh = server.dsn("warehouse")
    with psycopg.connect(wh, autocommit=True) as conn:
        assert conn.execute("SELECT rolinherit FROM pg_roles WHERE rolname = 'db_connect'").fetchone() == (False,)
        assert conn.execute(
            "SELECT rolname, rolcanlogin, pg_has_role('db_connect', oid, 'MEMBER'),"
            " pg_has_role(rolname, 'warehouse_reader', 'MEMBER')"
            " FROM pg_roles WHERE rolname LIKE 'api_%' ORDER BY rolname"
        ).fetchall() == [
            ("api_anon", False, True, False),
            ("api_reader", False, True, True),
            ("api_writer", False, True, True),
        ]
        assert conn.execute(
            "SELECT evtname, evtevent, evtfoid::regproc::text FROM pg_event_trigger ORDER BY evtname"
        ).fetchall() == [
            ("db_connect_schema_changed", "ddl_command_end", "db_connect.notify_ddl"),
            ("db_connect_schema_dropped", "sql_drop", "db_connect.notify_ddl"),
        ]
        assert conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'db_connect'"
        ).fetchone() == ("db_connect",)
    # a table a writer creates after the job ran: the rights follow the request role's name
    with psycopg.connect(server.dsn("warehouse", user="kafka", password=PASSWORD), autocommit=True) as conn:
        conn.execute("CREATE TABLE consumption.events (id serial PRIMARY KEY, v text)")
    with psycopg.connect(wh, autocommit=True) as conn:
        rights = conn.execute(
            "SELECT r, has_table_privilege(r, 'consumption.events', 'SELECT'),"
            " has_table_privilege(r, 'consumption.events', 'INSERT'),"
            " has_sequence_privilege(r, 'consumption.events_id_seq', 'USAGE'),"
            " has_database_privilege(r, 'warehouse', 'TEMPORARY')"
            " FROM unnest(ARRAY['api_anon', 'api_reader', 'api_writer']) AS r ORDER BY r"
        ).fetchall()
    assert rights == [
        ("api_anon", False, False, False, False),
        ("api_reader", True, False, False, False),
        ("api_writer", True, True, True, True),
    ]
    # DDL in the warehouse notifies channel db_connect
    with connect(server, "db_connect") as listener:
        listener.execute("LISTEN db_connect")
        server.execute("CREATE TABLE consumption.other (n int)", dbname="warehouse")
        notices = list(listener.notifies(timeout=5, stop_after=1))
    assert [(n.channel, n.payload) for n in notices] == [("db_connect", "reload schema")]


def test_every_authenticator_gets_its_roles_schema_and_channel_by_the_same_rule(server: PostgresServer) -> None:
    server.execute(f"CREATE ROLE metrics_api LOGIN PASSWORD '{PASSWORD}'")
    init_ok(server, SAWMILL_AUTHENTICATORS=f"{DB_CONNECT_ENTRY} metrics_api:metrics_guest,reader")
    publish_quality_result(server, "run-1")
    with psycopg.connect(server.dsn("warehouse"), autocommit=True) as conn:
        assert conn.execute(
            "SELECT evtname FROM pg_event_trigger WHERE evtfoid = 'metrics_api.notify_ddl'::regproc ORDER BY 1"
        ).fetchall() == [("metrics_api_schema_changed",), ("metrics_api_schema_dropped",)]
        assert conn.execute(
            "SELECT rolinherit, has_database_privilege('metrics_api', 'warehouse', 'CONNECT')"
            " FROM pg_roles WHERE rolname = 'metrics_api'"
        ).fetchone() == (False, True)
    with connect(server, "metrics_api") as conn:
        conn.execute("LISTEN metrics_api")
        conn.execute("SET ROLE reader")
        assert conn.execute("SELECT run_id FROM quality.results").fetchall() == [("run-1",)]
        conn.execute("SET ROLE metrics_guest")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT run_id FROM quality.results")
        conn.execute("RESET ROLE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # not one of its request roles
            conn.execute("SET ROLE api_reader")
        server.execute("CREATE TABLE consumption.other (n int)", dbname="warehouse")
        assert [n.channel for n in conn.notifies(timeout=5, stop_after=1)] == ["metrics_api"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("db_connect", "expected name:role1,role2"),
        ("db_connect:", "empty request role"),
        ("db_connect:api_reader,,api_writer", "empty request role"),
        ("db_connect:api_reader,", "empty request role"),
        ("a:b:c", "more than one ':'"),
        ("Db_connect:api_reader", "invalid role name 'Db_connect'"),
        ("db_connect:api-reader", "invalid role name 'api-reader'"),
        ("db_connect:warehouse_reader", "reserved"),
        ("db_connect:db_connect", "its own request role"),
        ("db_connect:*", "invalid role name '*'"),
        ("a" * 49 + ":api_reader", "longer than 48 characters"),
    ],
)
def test_malformed_authenticator_entries_are_refused_before_anything_changes(
    cluster: PostgresServer, entries: str, message: str
) -> None:
    result = init(cluster, SAWMILL_AUTHENTICATORS=entries)
    assert result.returncode != 0
    assert message in result.stderr
    assert not cluster.execute("SELECT 1 FROM pg_database WHERE datname = 'warehouse'")


def test_an_analyst_reads_every_layer_including_tables_made_later_and_writes_nothing(server: PostgresServer) -> None:
    server.execute(f"CREATE ROLE presto LOGIN PASSWORD '{PASSWORD}'")
    init_ok(server, SAWMILL_WAREHOUSE_ANALYSTS="presto")
    with connect(server, "kafka") as writer:
        for schema in ("raw", "curated", "consumption"):
            writer.execute(f"CREATE TABLE {schema}.made_later (n int)")
            writer.execute(f"INSERT INTO {schema}.made_later VALUES (1)")

    with connect(server, "presto") as analyst:
        for schema in ("raw", "curated", "consumption"):
            assert analyst.execute(f"SELECT n FROM {schema}.made_later").fetchall() == [(1,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute("INSERT INTO raw.made_later VALUES (2)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute("CREATE TABLE consumption.mine (n int)")
