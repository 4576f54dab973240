"""The connection pool and the one-transaction-per-request rule under the caller's role.

A request's transaction starts with `set_config('role', ...)` and `statement_timeout`, both LOCAL, so
nothing outlives it on the pooled connection. Small requests go out as one pipeline: BEGIN, role,
statements and COMMIT reach Postgres in a single round trip.
"""

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from db_connect.auth import Principal
from db_connect.errors import ApiError
from db_connect.pg_errors import client_error
from db_connect.settings import Settings
from db_connect.statements import Statement

logger = logging.getLogger(__name__)

REQUEST_POOL_WAIT_S = 5.0
SET_ROLE = "SELECT set_config('role', %s, true), set_config('statement_timeout', %s, true)"


def make_pool(settings: Settings) -> AsyncConnectionPool:
    """A closed pool; open it with `open(wait=False)` so start-up never waits for Postgres.

    Connections are in autocommit: each request sends its own BEGIN, so a read can be READ ONLY.
    """
    return AsyncConnectionPool(
        kwargs={**settings.conninfo, "application_name": "db_connect", "autocommit": True},
        min_size=1,
        max_size=settings.pool_max_size,
        open=False,
        check=AsyncConnectionPool.check_connection,
        name="db_connect",
    )


def unavailable(exc: Exception) -> ApiError:
    logger.warning("database unavailable: %s", exc)
    return ApiError(503, "database_unavailable", "The database is not reachable right now")


@asynccontextmanager
async def borrowed(pool: AsyncConnectionPool, principal: Principal) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection; any transaction left open is rolled back, database errors become ApiErrors."""
    try:
        async with pool.connection(timeout=REQUEST_POOL_WAIT_S) as conn:
            try:
                yield conn
            except BaseException:
                if not conn.closed and not conn.broken:
                    await conn.rollback()
                raise
    except PoolTimeout as exc:
        raise unavailable(exc) from None
    except psycopg.Error as exc:
        raise client_error(exc, principal.anonymous) from None


async def begin(conn: psycopg.AsyncConnection, principal: Principal, timeout_ms: int, read_only: bool) -> None:
    await conn.execute("BEGIN READ ONLY" if read_only else "BEGIN")
    await conn.execute(SET_ROLE, (principal.role, str(timeout_ms)))


@asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool, principal: Principal, timeout_ms: int, read_only: bool
) -> AsyncIterator[psycopg.AsyncConnection]:
    """One transaction under the caller's role for work of several round trips (COPY, streaming)."""
    async with borrowed(pool, principal) as conn:
        async with conn.pipeline():
            await begin(conn, principal, timeout_ms, read_only)
        yield conn
        await conn.execute("COMMIT")


async def run(
    pool: AsyncConnectionPool,
    principal: Principal,
    timeout_ms: int,
    statements: Sequence[Statement],
    read_only: bool,
) -> list[tuple]:
    """Run statements in one transaction and one round trip; the first row of each, in order."""
    async with borrowed(pool, principal) as conn:
        async with conn.pipeline():
            await begin(conn, principal, timeout_ms, read_only)
            cursors = [await conn.execute(s.query, s.params) for s in statements]
            await conn.execute("COMMIT")
        rows = [await cursor.fetchone() for cursor in cursors]
    return [row if row is not None else () for row in rows]
