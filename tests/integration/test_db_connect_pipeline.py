"""A request's statements run as one pipeline of prepared statements: one transaction, prepared once, bounded."""

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import errors
from psycopg_pool import AsyncConnectionPool

from db_connect import database, pipeline
from db_connect.app import create_app
from db_connect.auth import Principal
from db_connect.database import SETTINGS_TEXT, make_pool
from db_connect.errors import ApiError
from db_connect.settings import Settings
from db_connect.statements import Statement
from tests.integration.conftest import DB_CONNECT_API_KEY, DB_CONNECT_PASSWORD, DbConnectWarehouse

T = TypeVar("T")
SETUP_SQL = """
CREATE TABLE consumption.pipeline_notes (id integer PRIMARY KEY, note text);
GRANT SELECT ON consumption.pipeline_notes TO api_reader;
GRANT SELECT, INSERT ON consumption.pipeline_notes TO api_writer;
"""
COUNT = Statement("SELECT count(*) FROM consumption.pipeline_notes WHERE id > %s", [0])


@pytest.fixture(scope="module")
def warehouse(db_connect_warehouse: DbConnectWarehouse) -> Iterator[DbConnectWarehouse]:
    db_connect_warehouse.execute(SETUP_SQL)
    yield db_connect_warehouse
    db_connect_warehouse.execute("DROP TABLE consumption.pipeline_notes")


async def connect(warehouse: DbConnectWarehouse) -> psycopg.AsyncConnection:
    """A connection of db_connect's login role, in autocommit as the pool's are."""
    server = warehouse.server
    return await psycopg.AsyncConnection.connect(
        host=server.host,
        port=server.port,
        dbname=warehouse.dbname,
        user="db_connect",
        password=DB_CONNECT_PASSWORD,
        autocommit=True,
    )


def with_connection(warehouse: DbConnectWarehouse, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """work(conn) on a connection of db_connect's login role."""

    async def main() -> T:
        async with await connect(warehouse) as conn:
            return await work(conn)

    return asyncio.run(main())


async def run_as(
    conn: psycopg.AsyncConnection, role: str, *statements: Statement, read_only: bool = True
) -> list[tuple]:
    """As db_connect.database.run does: the role's settings first; the statements' rows."""
    settings = Statement(SETTINGS_TEXT[read_only], [role])
    return (await pipeline.run(conn, role, [settings, *statements]))[1:]


async def prepared_texts(conn: psycopg.AsyncConnection) -> list[str]:
    cursor = await conn.execute("SELECT statement FROM pg_prepared_statements WHERE name LIKE 'dbc%%' ORDER BY name")
    return [text for (text,) in await cursor.fetchall()]


def test_a_text_is_prepared_once_per_connection_and_role(warehouse: DbConnectWarehouse) -> None:
    async def work(conn: psycopg.AsyncConnection) -> list[str]:
        for role in ("api_reader", "api_reader", "api_writer", "api_reader"):
            await run_as(conn, role, COUNT)
        return await prepared_texts(conn)

    texts = with_connection(warehouse, work)
    count_text = "SELECT count(*) FROM consumption.pipeline_notes WHERE id > $1"
    assert texts.count(count_text) == 2  # one for each role, not one per run
    assert texts.count("SELECT set_config('role', $1, true), set_config('transaction_read_only', 'on', true)") == 2


def test_a_statement_has_the_same_name_on_every_connection_and_another_per_role(
    warehouse: DbConnectWarehouse,
) -> None:
    """So a pooler that hands a request another session can make a statement missing, never a different one."""

    async def names(role: str) -> list[str]:
        async with await connect(warehouse) as conn:
            await run_as(conn, role, COUNT)
            cursor = await conn.execute("SELECT name FROM pg_prepared_statements WHERE statement LIKE '%%count(*)%%'")
            return [name for (name,) in await cursor.fetchall()]

    async def main() -> tuple[list[str], list[str], list[str]]:
        return await names("api_reader"), await names("api_reader"), await names("api_writer")

    first, again, writer = asyncio.run(main())
    assert len(first) == 1 and first == again
    assert writer != first


def test_the_statements_run_in_one_transaction_under_the_role_and_nothing_outlives_it(
    warehouse: DbConnectWarehouse,
) -> None:
    probe = Statement("SELECT current_user::text, current_setting('transaction_read_only'), now(), pg_sleep(0.01)", [])

    async def work(conn: psycopg.AsyncConnection) -> tuple[list[tuple], tuple | None]:
        rows = await run_as(conn, "api_reader", probe, probe)
        after = await (
            await conn.execute("SELECT current_user::text, current_setting('transaction_read_only')")
        ).fetchone()
        return rows, after

    (first, second), after = with_connection(warehouse, work)
    assert first[:2] == second[:2] == ("api_reader", "on")
    assert first[2] == second[2]  # now() is the transaction's start: both statements ran in the same one
    assert after == ("db_connect", "off")


def test_an_error_rolls_back_the_whole_pipeline_and_the_connection_stays_usable(
    warehouse: DbConnectWarehouse,
) -> None:
    insert = Statement("INSERT INTO consumption.pipeline_notes VALUES (%s, %s) RETURNING id", ["41", "kept?"])

    async def work(conn: psycopg.AsyncConnection) -> list[tuple]:
        with pytest.raises(errors.InvalidTextRepresentation):
            bad = Statement("SELECT %s::integer", ["not a number"])
            await run_as(conn, "api_writer", insert, bad, read_only=False)
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert await run_as(conn, "api_reader", COUNT) == [(0,)]
        # The failing text was prepared (its Parse succeeded) and is reused, not prepared twice.
        good = Statement("SELECT %s::integer", ["7"])
        rows = await run_as(conn, "api_writer", good, read_only=False)
        assert (await prepared_texts(conn)).count("SELECT $1::integer") == 1
        return rows

    assert with_connection(warehouse, work) == [(7,)]
    assert warehouse.execute("SELECT count(*) FROM consumption.pipeline_notes")[0][0] == 0


def test_a_text_that_does_not_parse_is_not_remembered_as_prepared(warehouse: DbConnectWarehouse) -> None:
    later = Statement("SELECT count(later) FROM consumption.pipeline_notes", [])

    async def work(conn: psycopg.AsyncConnection) -> list[tuple]:
        with pytest.raises(errors.UndefinedColumn):
            await run_as(conn, "api_reader", later)
        assert all("later" not in text for text in await prepared_texts(conn))
        warehouse.execute("ALTER TABLE consumption.pipeline_notes ADD COLUMN later integer")
        try:
            return await run_as(conn, "api_reader", later)
        finally:
            warehouse.execute("ALTER TABLE consumption.pipeline_notes DROP COLUMN later")

    assert with_connection(warehouse, work) == [(0,)]


def test_prepared_statements_are_bounded_per_connection(
    warehouse: DbConnectWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "MAX_PREPARED", 4)

    async def work(conn: psycopg.AsyncConnection) -> tuple[list[str], list[tuple]]:
        for n in range(10):
            rows = await run_as(conn, "api_reader", Statement(f"SELECT {n} + %s", [1]))
            assert rows == [(n + 1,)]
        return await prepared_texts(conn), await run_as(conn, "api_reader", COUNT)

    texts, rows = with_connection(warehouse, work)
    assert len(texts) == 4
    assert "SELECT 9 + $1" in texts  # the most recent stay; the least recently used were closed
    assert rows == [(0,)]


def test_percent_signs_are_literal_and_values_take_the_type_of_their_use(warehouse: DbConnectWarehouse) -> None:
    statement = Statement("SELECT %s || '%%', %s + 1, %s::oid[]", ["50", "41", "{1,2}"])

    async def work(conn: psycopg.AsyncConnection) -> list[tuple]:
        return await run_as(conn, "api_reader", statement)

    assert with_connection(warehouse, work) == [("50%", 42, [1, 2])]


def test_a_cancelled_run_stops_its_query_and_closes_its_connection(warehouse: DbConnectWarehouse) -> None:
    """Closed, so the pool cannot reuse it; cancelled on the server, so the query does not run on unseen."""
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep($1)' AND state = 'active'"

    async def work(conn: psycopg.AsyncConnection) -> tuple[bool, int, int]:
        task = asyncio.create_task(run_as(conn, "api_reader", Statement("SELECT pg_sleep(%s)", ["30"])))
        await asyncio.sleep(0.3)
        before = warehouse.execute(sleeping)[0][0]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)
        return conn.closed, before, warehouse.execute(sleeping)[0][0]

    closed, before, after = with_connection(warehouse, work)
    assert closed and (before, after) == (1, 0)


def test_a_closed_connection_is_not_kept_alive_by_what_it_prepared(warehouse: DbConnectWarehouse) -> None:
    async def work() -> weakref.ref[psycopg.AsyncConnection]:
        conn = await connect(warehouse)
        await run_as(conn, "api_reader", COUNT)
        await conn.close()
        return weakref.ref(conn)

    gone = asyncio.run(work())
    gc.collect()
    assert gone() is None


def test_a_value_the_driver_refuses_sends_nothing_and_keeps_the_connection(warehouse: DbConnectWarehouse) -> None:
    async def work(conn: psycopg.AsyncConnection) -> list[tuple]:
        with pytest.raises(psycopg.DataError):
            await run_as(conn, "api_reader", Statement("SELECT %s", ["a\x00b"]))
        assert not conn.closed
        return await run_as(conn, "api_reader", COUNT)

    assert with_connection(warehouse, work) == [(0,)]


# --- through the pool, as requests use it -----------------------------------------------------------


def with_pool(warehouse: DbConnectWarehouse, work: Callable[[AsyncConnectionPool], Awaitable[T]]) -> T:
    """work(pool) on db_connect's own pool of one connection, so every call shares it."""
    settings = Settings(
        pghost=warehouse.server.host,
        pgport=warehouse.server.port,
        pgdatabase=warehouse.dbname,
        pguser="db_connect",
        pgpassword_file=warehouse.secrets / "db_password",
        api_key_file=warehouse.secrets / "api_key",
        pool_max_size=1,
        statement_timeout_ms=4321,
    )

    async def main() -> T:
        pool = make_pool(settings)
        await pool.open(wait=True)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def test_pool_connections_keep_utc_iso_intervals_and_the_statement_timeout(warehouse: DbConnectWarehouse) -> None:
    settings = Statement(
        "SELECT current_setting('TimeZone'), current_setting('IntervalStyle'), current_setting('statement_timeout')", []
    )
    warehouse.execute("ALTER ROLE db_connect IN DATABASE dbc_warehouse SET TimeZone = 'America/New_York'")
    try:
        rows = with_pool(warehouse, lambda pool: database.run(pool, Principal("api_reader"), [settings], True))
    finally:
        warehouse.execute("ALTER ROLE db_connect IN DATABASE dbc_warehouse RESET TimeZone")
    assert rows == [("UTC", "iso_8601", "4321ms")]


def test_a_rolled_back_transaction_keeps_the_statements_the_pipeline_prepared(
    warehouse: DbConnectWarehouse,
) -> None:
    """psycopg, had it prepared statements of its own, would DEALLOCATE ALL on rollback, ours included."""
    writer, reader = Principal("api_writer"), Principal("api_reader")
    probe = Statement("SELECT pg_backend_pid(), count(*) FROM consumption.pipeline_notes WHERE id > %s", [0])

    async def work(pool: AsyncConnectionPool) -> list[list[tuple]]:
        before = await database.run(pool, reader, [probe], True)
        for n in range(8):  # the same statements again and again, as psycopg would prepare
            async with database.transaction(pool, writer, read_only=False) as conn:
                await conn.execute("INSERT INTO consumption.pipeline_notes VALUES (%s, %s)", [100 + n, "x"])
        with pytest.raises(ApiError):  # a unique violation: rolled back
            async with database.transaction(pool, writer, read_only=False) as conn:
                await conn.execute("INSERT INTO consumption.pipeline_notes VALUES (%s, %s)", [100, "again"])
        return [before, await database.run(pool, reader, [probe], True)]

    try:
        [(pid, empty)], [(same_pid, eight)] = with_pool(warehouse, work)
    finally:
        warehouse.execute("DELETE FROM consumption.pipeline_notes")
    assert (empty, eight) == (0, 8)
    assert same_pid == pid, "the prepared statement was found: no retry on a new connection was needed"


def test_statements_dropped_behind_the_pipelines_back_cost_a_retry_not_an_error(warehouse: DbConnectWarehouse) -> None:
    async def work(pool: AsyncConnectionPool) -> list[tuple]:
        reader = Principal("api_reader")
        await database.run(pool, reader, [COUNT], True)
        async with pool.connection() as conn:
            await conn.execute("DEALLOCATE ALL")
        return await database.run(pool, reader, [COUNT], True)

    assert with_pool(warehouse, work) == [(0,)]


# --- PREPARED_STATEMENTS=false, for poolers in transaction mode ------------------------------------


@pytest.mark.parametrize(("prepared", "left_on_the_session"), [(True, True), (False, False)])
def test_prepared_statements_false_leaves_no_statement_on_the_session(
    db_connect_warehouse: DbConnectWarehouse, prepared: bool, left_on_the_session: bool
) -> None:
    """A function called through the API counts what its own session has prepared (one pooled connection)."""
    db_connect_warehouse.execute(
        "CREATE FUNCTION consumption.prepared_here() RETURNS bigint LANGUAGE sql VOLATILE "
        "AS 'SELECT count(*) FROM pg_prepared_statements'"
    )
    environment = db_connect_warehouse.environment()
    settings = Settings(**environment, exposed_schemas="consumption", pool_max_size=1, prepared_statements=prepared)
    try:
        with TestClient(create_app(settings), headers={"X-API-Key": DB_CONNECT_API_KEY}) as client:
            for _ in range(3):
                response = client.post("/rpc/prepared_here")
                assert response.status_code == 200, response.text
            assert (response.json() > 0) is left_on_the_session
    finally:
        db_connect_warehouse.execute("DROP FUNCTION consumption.prepared_here")


def test_prepared_statements_is_read_from_the_environment(
    db_connect_warehouse: DbConnectWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (db_connect_warehouse.environment() | {"PREPARED_STATEMENTS": "false"}).items():
        monkeypatch.setenv(name, value)
    assert Settings().prepared_statements is False
    assert make_pool(Settings()).prepared_statements is False
