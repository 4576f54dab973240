"""GET /{schema}/{table}: a page as JSON (one round trip), or a stream of JSON or CSV rows.

Pages of up to AGGREGATE_MAX_ROWS rows are rendered by Postgres into one JSON value. Larger ones, and
every CSV response, are streamed as Postgres sends them, a chunk at a time, so memory does not grow
with the result. A stream's first chunk is read before the response starts, so a bad filter value is
still a 400 and not a broken 200.
"""

import json
from collections.abc import AsyncIterator, Sequence

from starlette.datastructures import Headers
from starlette.responses import Response, StreamingResponse

from db_connect import templates
from db_connect.catalog import Relation
from db_connect.data_request import DataRequest
from db_connect.database import run, transaction
from db_connect.errors import ApiError
from db_connect.prefer import Preferences
from db_connect.query_params import Query, encode_cursor
from db_connect.statements import (
    Statement,
    count_statement,
    page_statement,
    planned_count_statement,
    stream_statement,
)

AGGREGATE_MAX_ROWS = 1000
STREAM_CHUNK_ROWS = 1000
CSV_TYPE = "text/csv; charset=utf-8"
JSON_TYPE = "application/json"


def wants_csv(headers: Headers) -> bool:
    """text/csv when the client asks for it; JSON for JSON, */* or nothing; anything else is a 406."""
    accept = headers.get("accept", "")
    if not accept:
        return False
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if "text/csv" in types:
        return True
    if any(t in ("application/json", "*/*", "application/*") for t in types):
        return False
    raise ApiError(406, "not_acceptable", f"Cannot answer with {accept}", hint="Accept application/json or text/csv")


def count_statements(relation: Relation, query: Query, prefs: Preferences, cap: int) -> list[Statement]:
    if prefs.count == "exact":
        return [count_statement(relation, query)]
    if prefs.count == "planned":
        return [planned_count_statement(relation, query)]
    if prefs.count == "estimated":
        return [count_statement(relation, query, cap), planned_count_statement(relation, query)]
    return []


def total_from(rows: list[tuple], prefs: Preferences, cap: int) -> int | None:
    """Estimated: the exact count while it is small, the planner's estimate beyond (PostgREST's rule)."""
    if prefs.count == "exact":
        return rows[0][0]
    if prefs.count == "planned":
        return int(rows[0][0][0]["Plan"]["Plan Rows"])
    if prefs.count == "estimated":
        exact, planned = rows[0][0], int(rows[1][0][0]["Plan"]["Plan Rows"])
        return exact if exact <= cap else max(planned, exact)
    return None


def content_range(offset: int, returned: int | None, total: int | None) -> str:
    """`0-24/25`, `*/0` for an empty page; `*` for an unknown total."""
    size = "*" if total is None else str(total)
    if returned == 0:
        return f"*/{size}"
    if returned is None:  # streamed: the end is known only from the total and the limit
        return f"{offset}-*/{size}"
    return f"{offset}-{offset + returned - 1}/{size}"


def page_statements(relation: Relation, query: Query, prefs: Preferences, cap: int) -> list[Statement]:
    """The page and the counts asked for, from the texts composed for this query's shape."""
    return templates.statements(
        relation,
        query,
        ("page", prefs.count),
        lambda shape: [page_statement(relation, shape), *count_statements(relation, shape, prefs, cap)],
    )


async def read(call: DataRequest) -> Response:
    """GET: a JSON page in one round trip, or a stream for CSV and pages beyond AGGREGATE_MAX_ROWS."""
    as_csv = wants_csv(call.request.headers)
    if as_csv or call.query.limit > AGGREGATE_MAX_ROWS:
        return await read_stream(call, as_csv)
    return await read_page(call)


async def read_page(call: DataRequest) -> Response:
    query, prefs, cap = call.query, call.prefs, call.settings.exact_count_limit
    rows = await run(call.pool, call.principal, page_statements(call.relation, query, prefs, cap), True)
    body, returned, last_key = rows[0]
    headers = {"Content-Range": content_range(query.offset, returned, total_from(rows[1:], prefs, cap))}
    if last_key is not None and returned == query.limit:
        headers["Next-Cursor"] = encode_cursor(json.loads(last_key))
    return Response(content=body, media_type=JSON_TYPE, headers=headers)


async def read_stream(call: DataRequest, as_csv: bool) -> Response:
    statement, names = stream_statement(call.relation, call.query, as_csv)
    cap = call.settings.exact_count_limit
    counts = count_statements(call.relation, call.query, call.prefs, cap)
    chunks = stream_chunks(call, statement, counts, names if as_csv else None)
    count_rows = await anext(chunks)
    assert isinstance(count_rows, list)
    first = await anext(chunks, b"")
    total = total_from(count_rows, call.prefs, cap)

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            assert isinstance(chunk, bytes)
            yield chunk

    return StreamingResponse(
        body(),
        media_type=CSV_TYPE if as_csv else JSON_TYPE,
        headers={"Content-Range": content_range(call.query.offset, None, total)},
    )


def csv_line(values: Sequence[str | None]) -> str:
    """Postgres's CSV convention: NULL is an empty field, any text (even empty) is quoted."""
    return ",".join("" if v is None else '"' + v.replace('"', '""') + '"' for v in values) + "\n"


async def stream_chunks(
    call: DataRequest, statement: Statement, counts: list[Statement], csv_header: list[str] | None
) -> AsyncIterator[list[tuple] | bytes]:
    """Yields the count rows first, then the body in chunks; holds its transaction until exhausted."""
    async with transaction(call.pool, call.principal, read_only=True) as conn:
        count_rows = []
        for count in counts:
            cursor = await conn.execute(count.query, count.params)
            count_rows.append(await cursor.fetchone() or ())
        yield count_rows
        cursor = conn.cursor()
        rows = cursor.stream(statement.query, statement.params, size=STREAM_CHUNK_ROWS)
        if csv_header is not None:
            lines = [csv_line(csv_header)]
            async for row in rows:
                lines.append(csv_line(row))
                if len(lines) >= STREAM_CHUNK_ROWS:
                    yield "".join(lines).encode()
                    lines = []
            yield "".join(lines).encode()
        else:
            parts, separator = ["["], ""
            async for (row,) in rows:
                parts += (separator, row)
                separator = ","
                if len(parts) >= 2 * STREAM_CHUNK_ROWS:
                    yield "".join(parts).encode()
                    parts = []
            parts.append("]")
            yield "".join(parts).encode()
