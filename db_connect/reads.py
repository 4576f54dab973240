"""GET on a table or view (and the rows a function returns): a page as JSON, or a stream of JSON or CSV rows.

Pages of up to AGGREGATE_MAX_ROWS rows are rendered by Postgres into one JSON value. Larger ones, and
every CSV response, are streamed as Postgres sends them, a chunk at a time, so memory does not grow
with the result. A stream's first chunk is read before the response starts, so a bad filter value is
still a 400 and not a broken 200.
"""

import json
from collections.abc import AsyncIterator, Sequence

from starlette.responses import Response, StreamingResponse

from db_connect import templates
from db_connect.catalog import Catalog, Relation
from db_connect.data_request import DataRequest
from db_connect.database import run, transaction
from db_connect.errors import ApiError
from db_connect.plan import CSV_TYPE, JSON_TYPE, OBJECT_TYPE, ReadPlan, plan_query
from db_connect.prefer import Preferences
from db_connect.query_params import Query, encode_cursor
from db_connect.statements import (
    FromCall,
    Statement,
    count_statement,
    page_statement,
    planned_count_statement,
    stream_statement,
)

AGGREGATE_MAX_ROWS = 1000
STREAM_CHUNK_ROWS = 1000
CSV_RESPONSE_TYPE = "text/csv; charset=utf-8"


def strip_nulls(value: object) -> object:
    """json_strip_nulls: object members that are null are left out, at every depth."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def json_body(text: str, media: str, stripped: bool) -> str:
    """A JSON array as the client asked for it: as is, without nulls, or its one row as an object (406 if not one)."""
    if media != OBJECT_TYPE and not stripped:
        return text
    rows = json.loads(text)
    if media == OBJECT_TYPE:
        if len(rows) != 1:
            raise ApiError(
                406,
                "PGRST116",
                "Cannot coerce the result to a single JSON object",
                details=f"The result contains {len(rows)} rows",
                hint="Filter to exactly one row, or accept application/json",
            )
        rows = rows[0]
    return json.dumps(strip_nulls(rows) if stripped else rows, separators=(",", ":"))


def count_statements(plan: ReadPlan, prefs: Preferences, cap: int, from_: FromCall = None) -> list[Statement]:
    if prefs.count == "exact":
        return [count_statement(plan, from_=from_)]
    if prefs.count == "planned":
        return [planned_count_statement(plan, from_)]
    if prefs.count == "estimated":
        return [count_statement(plan, cap, from_), planned_count_statement(plan, from_)]
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


def range_status(offset: int, returned: int, total: int | None) -> int:
    """PostgREST's: 206 when a known total holds more rows than this page, 416 when the page starts past it."""
    if total is None:
        return 200
    if offset > total or (offset == total and offset > 0):
        return 416
    return 206 if returned < total else 200


def page_statements(
    catalog: Catalog, relation: Relation, query: Query, prefs: Preferences, cap: int
) -> list[Statement]:
    """The page and the counts asked for, from the texts composed (and the plan made) once per query shape."""

    def build(shape: Query) -> list[Statement]:
        plan = plan_query(catalog, relation, shape)
        return [page_statement(plan, shape.cursor), *count_statements(plan, prefs, cap)]

    return templates.statements(relation, query, ("page", prefs.count), build)


async def read(call: DataRequest) -> Response:
    """GET: a JSON page in one round trip, or a stream for CSV and pages beyond AGGREGATE_MAX_ROWS."""
    media, stripped = call.plan.media_type, call.plan.strip_nulls
    if media == CSV_TYPE or call.query.limit > AGGREGATE_MAX_ROWS:
        if media == OBJECT_TYPE or stripped:
            raise ApiError(406, "PGRST107", "One object or stripped nulls are for pages of at most 1000 rows")
        return await read_stream(call, media == CSV_TYPE)
    return await read_page(call, media, stripped)


async def read_page(call: DataRequest, media: str, stripped: bool) -> Response:
    statements = page_statements(call.catalog, call.relation, call.query, call.prefs, call.settings.exact_count_limit)
    rows = await run(call.pool, call.principal, statements, True)
    return page_response(call, rows, media, stripped)


def page_response(call: DataRequest, rows: list[tuple], media: str, stripped: bool) -> Response:
    """A page's rows (the first result) and counts (the rest) as the response PostgREST would give."""
    query, prefs, cap = call.query, call.prefs, call.settings.exact_count_limit
    body, returned, last_key = rows[0]
    total = total_from(rows[1:], prefs, cap)
    headers = {"Content-Range": content_range(query.offset, returned, total)}
    if last_key is not None and returned == query.limit:
        headers["Next-Cursor"] = encode_cursor(json.loads(last_key))
    status = range_status(query.offset, returned, total)
    content = json_body(body, media, stripped)
    if call.request.method == "HEAD":
        content = ""
    return Response(content=content, status_code=status, media_type=media, headers=headers)


async def read_stream(
    call: DataRequest, as_csv: bool, from_: FromCall = None, plan: ReadPlan | None = None, read_only: bool = True
) -> Response:
    """Rows streamed as Postgres sends them; from_ and plan for the rows of a function (rpc.py)."""
    plan = plan or plan_query(call.catalog, call.relation, call.query)
    statement, names = stream_statement(plan, as_csv, from_)
    cap = call.settings.exact_count_limit
    counts = count_statements(plan, call.prefs, cap, from_)
    chunks = stream_chunks(call, statement, counts, names if as_csv else None, read_only)
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
        media_type=CSV_RESPONSE_TYPE if as_csv else JSON_TYPE,
        headers={"Content-Range": content_range(call.query.offset, None, total)},
    )


def csv_line(values: Sequence[str | None]) -> str:
    """Postgres's CSV convention: NULL is an empty field, any text (even empty) is quoted."""
    return ",".join("" if v is None else '"' + v.replace('"', '""') + '"' for v in values) + "\n"


async def stream_chunks(
    call: DataRequest, statement: Statement, counts: list[Statement], csv_header: list[str] | None, read_only: bool
) -> AsyncIterator[list[tuple] | bytes]:
    """Yields the count rows first, then the body in chunks; holds its transaction until exhausted."""
    async with transaction(call.pool, call.principal, read_only=read_only) as conn:
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
