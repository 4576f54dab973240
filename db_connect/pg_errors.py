"""Postgres errors caused by a request, as client errors: the SQLSTATE as code, never the SQL text.

Postgres's own message, detail and hint are kept (they name the column, value or constraint at fault),
PostgREST style; anything unexpected stays a logged 500 without internals.
"""

import logging

import psycopg

from db_connect.errors import ApiError

logger = logging.getLogger(__name__)

STATUS_BY_SQLSTATE = {
    "23503": 409,  # foreign_key_violation
    "23505": 409,  # unique_violation
    "23P01": 409,  # exclusion_violation
    "40001": 409,  # serialization_failure
    "40P01": 409,  # deadlock_detected
    "42501": 403,  # insufficient_privilege
    "42P01": 404,  # undefined_table: dropped since the cache was loaded
    "25006": 405,  # read_only_sql_transaction
    "54000": 413,  # program_limit_exceeded
    "57014": 504,  # query_canceled: statement timeout
}
STATUS_BY_CLASS = {
    "21": 400,  # cardinality violation: e.g. an upsert body that names one key twice
    "22": 400,  # data exception: a value that does not fit its column
    "23": 400,  # other integrity violations (not null, check)
    "42": 400,  # syntax or access rule: e.g. an operator that does not apply to the column's type
    "0A": 400,  # feature not supported
    "55": 400,  # object not in prerequisite state (e.g. a view that cannot be written)
    "P0": 400,  # raised by a trigger or function
    "08": 503,  # connection exception
    "53": 503,  # insufficient resources
    "57": 503,  # operator intervention (server shutting down)
}


def client_error(exc: psycopg.Error, anonymous: bool = False) -> ApiError:
    """Map a database error to the status a client should see; log the ones that are our fault."""
    sqlstate = exc.sqlstate or ""
    if not sqlstate and isinstance(exc, psycopg.DataError):  # refused by the driver, e.g. a NUL character
        return ApiError(400, "invalid_value", "A value cannot be sent to the database", details=str(exc))
    status = STATUS_BY_SQLSTATE.get(sqlstate) or STATUS_BY_CLASS.get(sqlstate[:2])
    if status is None:
        if isinstance(exc, psycopg.OperationalError):
            logger.warning("database unavailable: %s", exc)
            return ApiError(503, "database_unavailable", "The database is not reachable right now")
        logger.error("unexpected database error %s: %s", sqlstate, exc)
        return ApiError(500, "internal_error", "Internal server error")
    if status == 403 and anonymous:
        status = 401
    if status == 504:
        return ApiError(
            504,
            "statement_timeout",
            "The query took longer than the statement timeout",
            hint="Ask for a smaller page with 'limit', or add filters",
        )
    diag = exc.diag
    return ApiError(
        status,
        sqlstate,
        diag.message_primary or "The database refused the request",
        details=diag.message_detail,
        hint=diag.message_hint,
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )
