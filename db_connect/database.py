"""The connection pool and the one-transaction-per-request rule, with database failures mapped to 503/504."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors, sql
from psycopg_pool import ConnectionPool, PoolTimeout

from db_connect.errors import ApiError
from db_connect.settings import Settings

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
REQUEST_POOL_WAIT_S = 5.0


def make_pool(settings: Settings) -> ConnectionPool:
    """A closed pool; open it with `open(wait=False)` so start-up never waits for Postgres.

    Sessions are read-only and in UTC at the server, so no request can write and timestamps render alike.
    Each connection is checked when borrowed, so a restarted Postgres costs a reconnect rather than errors.
    """
    return ConnectionPool(
        kwargs={
            "host": settings.pghost,
            "port": settings.pgport,
            "dbname": settings.pgdatabase,
            "user": settings.pguser,
            "password": settings.db_password.get_secret_value(),
            "application_name": "db_connect",
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": "-c default_transaction_read_only=on -c TimeZone=UTC -c IntervalStyle=iso_8601",
        },
        min_size=1,
        max_size=settings.pool_max_size,
        open=False,
        check=ConnectionPool.check_connection,
        name="db_connect",
    )


@contextmanager
def transaction(
    pool: ConnectionPool, statement_timeout_ms: int, wait_s: float = REQUEST_POOL_WAIT_S
) -> Iterator[psycopg.Connection]:
    """Borrow a connection for one transaction under a statement timeout; commit or roll back on exit."""
    try:
        with pool.connection(timeout=wait_s) as conn:
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(statement_timeout_ms)))
            yield conn
    except errors.QueryCanceled as exc:
        logger.warning("query cancelled: %s", exc)
        raise ApiError(
            504,
            "statement_timeout",
            f"The query took longer than {statement_timeout_ms} ms",
            hint="Ask for a smaller page with 'limit'",
        ) from None
    except (PoolTimeout, psycopg.OperationalError) as exc:
        logger.warning("database unavailable: %s", exc)
        raise ApiError(503, "database_unavailable", "The database is not reachable right now") from None
