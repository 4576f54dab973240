"""The connection pool and the one-transaction-per-request rule under the caller's role.

A request's transaction starts by setting the role LOCAL, so it never outlives the request on the pooled
connection; the statement timeout is the connections' own (a start-up option). A request of one round
trip is one pipeline of prepared statements (pipeline.py): settings first, then its statements, one
implicit transaction. Work of several round trips (COPY, streams) runs in an explicit transaction.
Connections are not checked when borrowed (a round trip each): a read that finds its connection dead,
as after a Postgres restart, is retried once on another.
"""

import functools
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from db_connect import pipeline
from db_connect.auth import Principal
from db_connect.errors import ApiError
from db_connect.pg_errors import client_error
from db_connect.settings import Settings
from db_connect.statements import Statement

logger = logging.getLogger(__name__)

REQUEST_POOL_WAIT_S = 5.0
# Read-only may be switched on at any point of a transaction (only read-write must come first).
READ_ONLY = sql.SQL("SELECT set_config('role', {}, true), set_config('transaction_read_only', 'on', true)")
READ_WRITE = sql.SQL("SELECT set_config('role', {}, true)")
# The same, with the role as a parameter: the first statement of every pipeline (pipeline.py).
SETTINGS_TEXT = {
    True: READ_ONLY.format(sql.Placeholder()).as_string(),
    False: READ_WRITE.format(sql.Placeholder()).as_string(),
}


class RequestPool(AsyncConnectionPool):
    """The requests' pool, and whether their statements may stay prepared on its sessions."""

    def __init__(self, *args: Any, prepared_statements: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared_statements = prepared_statements


def make_pool(settings: Settings) -> RequestPool:
    """A closed pool; open it with `open(wait=False)` so start-up never waits for Postgres.

    Connections are in autocommit: a one-pipeline request is an implicit transaction of its own, and work
    of several round trips sends its own BEGIN. The statement timeout is set once per connection, beside
    the shared start-up options. psycopg prepares nothing on its own: after a rollback it would
    DEALLOCATE ALL, the statements pipeline.py prepared included. PREPARED_STATEMENTS=false stops
    pipeline.py preparing too, for poolers in transaction mode.
    """
    conninfo = settings.conninfo
    return RequestPool(
        kwargs={
            **conninfo,
            "application_name": "db_connect",
            "autocommit": True,
            "client_encoding": "UTF8",  # what pipeline.py's transformer assumes
            "prepare_threshold": None,
            "options": f"{conninfo['options']} -c statement_timeout={settings.statement_timeout_ms}",
        },
        min_size=1,
        max_size=settings.pool_max_size,
        open=False,
        name="db_connect",
        prepared_statements=settings.prepared_statements,
    )


def unavailable(exc: Exception) -> ApiError:
    logger.warning("database unavailable: %s", exc)
    return ApiError(503, "database_unavailable", "The database is not reachable right now")


class ConnectionLost(ApiError):
    """The borrowed connection was dead (Postgres restarted, the backend was terminated): a 503 unless retried."""

    def __init__(self) -> None:
        super().__init__(503, "database_unavailable", "The database is not reachable right now")


@asynccontextmanager
async def borrowed(pool: AsyncConnectionPool, principal: Principal) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection; any transaction left open is rolled back, database errors become ApiErrors."""
    try:
        async with pool.connection(timeout=REQUEST_POOL_WAIT_S) as conn:
            try:
                yield conn
            except BaseException as exc:
                if conn.broken:
                    logger.warning("database connection lost: %s", exc)
                    raise ConnectionLost() from None
                if not conn.closed:
                    await conn.rollback()
                raise
    except PoolTimeout as exc:
        raise unavailable(exc) from None
    except psycopg.Error as exc:
        raise client_error(exc, principal.anonymous) from None


@functools.lru_cache(maxsize=256)
def settings_sql(role: str, read_only: bool) -> str:
    """What a request's transaction starts with; the role name is a literal, as set_config takes it."""
    return (READ_ONLY if read_only else READ_WRITE).format(sql.Literal(role)).as_string()


@asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool, principal: Principal, read_only: bool
) -> AsyncIterator[psycopg.AsyncConnection]:
    """One transaction under the caller's role for work of several round trips (COPY, streaming)."""
    async with borrowed(pool, principal) as conn:
        await conn.execute("BEGIN; " + settings_sql(principal.role, read_only))
        yield conn
        await conn.execute("COMMIT")


async def run(
    pool: AsyncConnectionPool,
    principal: Principal,
    statements: Sequence[Statement],
    read_only: bool,
) -> list[tuple]:
    """Run statements in one transaction and one round trip; the first row of each, in order."""
    settings = Statement(SETTINGS_TEXT[read_only], [principal.role])
    for attempt in (1, 2):
        try:
            async with borrowed(pool, principal) as conn:
                named = not isinstance(pool, RequestPool) or pool.prepared_statements
                return (await pipeline.run(conn, principal.role, [settings, *statements], named))[1:]
        except pipeline.StatementsLost:  # nothing ran; its connection is closed
            if attempt == 2:
                raise ConnectionLost() from None
        except ConnectionLost:
            if not read_only or attempt == 2:
                raise
            await pool.check()  # drop every other dead connection before the retry
    raise AssertionError("unreachable")
