"""POST, PATCH and DELETE on /{schema}/{table}.

Inserts are loaded with COPY: a CSV body goes in unparsed (its header line names the columns); a JSON
array is parsed and written row by row into the same COPY. Every body is read whole before a pooled
connection is taken, as PostgREST does (a CSV body into a spool: memory, then a temporary file), so a
client sending slowly holds no connection and cannot starve reads or the health check, and COPY runs at
disk speed. Plain inserts into a table COPY straight into it; upserts, returned rows and views COPY into
a temporary staging table first, then INSERT ... SELECT ... ON CONFLICT. PATCH and DELETE refuse to run
without a filter.
"""

import csv
import json
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import IO

from psycopg import sql
from starlette.requests import Request
from starlette.responses import Response

from db_connect import reads
from db_connect.catalog import Relation
from db_connect.data_request import DataRequest
from db_connect.database import run, transaction
from db_connect.errors import ApiError
from db_connect.plan import JSON_TYPE, ReadPlan, plan_query
from db_connect.prefer import Preferences
from db_connect.query_params import Group, Query, array_literal
from db_connect.statements import (
    MISSING,
    STAGING,
    Statement,
    checked_columns,
    copy_statement,
    delete_statement,
    merge_statement,
    staging_statement,
    update_statement,
)

MAX_HEADER_BYTES = 1024 * 1024
SPOOL_IN_MEMORY = 1024 * 1024  # a larger CSV body is spooled to a temporary file
COPY_BLOCK = 256 * 1024  # what each write to COPY sends from the spool
# A line holding only `\.` ends COPY's data: whatever follows would be dropped without a word. COPY takes its
# line ending from the first row (LF, CRLF or a bare CR), so any of them, or the end of the body, may close it.
END_OF_COPY = re.compile(rb"[\r\n]\\\.[\r\n]")
LONE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # the start of a UTF-16 surrogate, escaped
SEND_IN_PARTS = "Send it in parts"


def too_large(limit: int, hint: str = SEND_IN_PARTS) -> ApiError:
    return ApiError(413, "body_too_large", f"The request body is larger than {limit} bytes", hint=hint)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", JSON_TYPE).split(";")[0].strip().lower()


async def limited_body(
    request: Request, limit: int, take: Callable[[int], None], hint: str = SEND_IN_PARTS
) -> AsyncIterator[bytes]:
    """The body as it arrives, refused with 413 as soon as it exceeds the limit (or says it will), and with 503
    when the bodies this process already holds leave no room for it (`take`: db_connect/budget.py)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit, hint)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(limit, hint)
        if chunk:
            take(len(chunk))
            yield chunk


async def copy_data(rest: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The CSV rows after the header, passed on as they come, refused if a line would end COPY early."""
    carry = b"\n"  # the rows start on a line of their own
    async for chunk in _chained(rest, chunks):
        # `in` scans at memory speed; the chunk is copied (joined to the carry) only if a marker may be there
        if (b"\\." in chunk or b"\\." in carry + chunk[:3]) and END_OF_COPY.search(carry + chunk):
            raise end_of_copy()
        carry = chunk[-3:] if len(chunk) >= 3 else (carry + chunk)[-3:]  # finds a marker split between chunks
        yield chunk
    if END_OF_COPY.search(carry + b"\n"):  # the body's last line
        raise end_of_copy()


def end_of_copy() -> ApiError:
    return invalid_body(
        "A line holding only \\. would end the data there, and the rows after it would be lost",
        hint='Quote it ("\\.") if it is a value',
    )


async def _chained(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk


async def spooled(data: AsyncIterator[bytes], spool: IO[bytes]) -> None:
    """The whole body into the spool; the body limit and the checks of `data` apply as it arrives."""
    async for chunk in data:
        spool.write(chunk)
    spool.seek(0)


def value_text(value: object) -> str | None:
    """A JSON value as the text Postgres parses for the column: objects and arrays as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


def invalid_body(message: str, hint: str | None = None) -> ApiError:
    return ApiError(400, "invalid_body", message, hint=hint)


async def json_body(call: DataRequest, empty: object = None) -> object:
    """The body parsed, read no further than the limit; `empty` stands for a body of only whitespace, if given."""
    hint = "Send fewer rows per request, or CSV (up to MAX_BODY_BYTES)"
    chunks = limited_body(call.request, call.settings.max_json_body_bytes, call.take_body, hint)
    data = b"".join([chunk async for chunk in chunks])
    if empty is not None and not data.strip():
        return empty
    try:
        parsed = json.loads(data)
        if b"\\u" in data and LONE_SURROGATE.search(data):  # rare: only then look at every string
            json.dumps(parsed, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # before ValueError, its base class
        raise invalid_body("The body holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text") from None
    except (ValueError, RecursionError):
        raise invalid_body("The body is not valid JSON") from None
    return parsed


def json_rows(
    data: object, columns: tuple[str, ...] | None = None, mark_missing: bool = False
) -> tuple[list[str], list[list[str | None]]]:
    """An object or an array of objects that all have the same keys: the columns and the rows.

    With `columns=` (PostgREST's, for bulk inserts of objects with different keys) those columns are
    written, a key a row lacks is null, and other keys are ignored; mark_missing adds to each row the
    array of the keys it lacks, for their defaults (Prefer: missing=default).
    """
    rows = data if isinstance(data, list) else [data]
    if not rows or not all(isinstance(row, dict) for row in rows):
        raise invalid_body("Send a JSON object or a non-empty array of objects", hint='e.g. [{"id": 1}]')
    if columns is not None:
        values = [[value_text(row.get(name)) for name in columns] for row in rows]
        if mark_missing:
            for out, row in zip(values, rows, strict=True):
                out.append(array_literal(tuple(name for name in columns if name not in row)))
        return list(columns), values
    names = list(rows[0])
    if not names:
        raise invalid_body("The objects name no column")
    key_set = set(names)
    if any(row.keys() != key_set for row in rows):
        raise invalid_body("Every object must have the same keys", hint="Send null for a missing value")
    return names, [[value_text(row[name]) for name in names] for row in rows]


async def csv_header(chunks: AsyncIterator[bytes]) -> tuple[list[str], bytes]:
    """The CSV header line's column names, and whatever followed it in the chunk that ended it."""
    buffered = b""
    async for chunk in chunks:
        buffered += chunk
        if b"\n" in buffered:
            break
        if len(buffered) > MAX_HEADER_BYTES:
            raise invalid_body("The CSV header line is too long")
    line, _, rest = buffered.partition(b"\n")
    try:
        names = next(csv.reader([line.decode().rstrip("\r")]), [])
    except UnicodeDecodeError:
        raise invalid_body("The CSV header is not UTF-8") from None
    except csv.Error:  # a carriage return inside the line, a name over the csv module's field limit
        raise invalid_body(
            "The CSV header line cannot be read as column names", hint="Lines end with \\n or \\r\\n, e.g. id,name"
        ) from None
    if not names or not all(names):
        raise invalid_body("The first CSV line must name the columns", hint="e.g. id,name")
    return names, rest


def returned_plan(call: DataRequest) -> ReadPlan | None:
    """With return=representation, the written rows as `select` asks for them, planned as a read of them."""
    if not call.prefs.representation:
        return None
    select_only = Query(call.query.select, Group("and", ()), (), None, 0, None, None)  # type: ignore[arg-type]
    return plan_query(call.catalog, call.relation, select_only)


def staged(relation: Relation, query: Query, prefs: Preferences) -> bool:
    return bool(prefs.representation or prefs.resolution or query.on_conflict or relation.kind != "table")


async def insert(call: DataRequest) -> Response:
    relation, query, prefs, request = call.relation, call.query, call.prefs, call.request
    limit = call.settings.max_body_bytes
    as_csv = media_type(request) == "text/csv"
    if media_type(request) not in ("text/csv", JSON_TYPE):
        raise ApiError(415, "unsupported_media_type", "Send application/json or text/csv")
    missing = prefs.missing_default and query.columns is not None and not as_csv
    with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) as spool:
        if as_csv:
            chunks = limited_body(request, limit, call.take_body)
            names, rest = await csv_header(chunks)
            checked_names(relation, names)
            await spooled(copy_data(rest, chunks), spool)
            rows: list[list[str | None]] = []
        else:
            data = await json_body(call)
            names, rows = json_rows(data, query.columns, missing)
            checked_names(relation, names)
        with_staging = missing or staged(relation, query, prefs)
        target = STAGING if with_staging else sql.Identifier(relation.schema, relation.name)
        async with transaction(call.pool, call.principal, read_only=False) as conn:
            if with_staging:
                resolution = prefs.resolution or _conflict(query)
                merge = merge_statement(relation, query, names, resolution, returned_plan(call), missing)
                await conn.execute(staging_statement(relation, names, missing))
            cursor = conn.cursor()
            copied = [*names, MISSING] if missing else names
            async with cursor.copy(copy_statement(target, copied, as_csv)) as copy:
                while block := spool.read(COPY_BLOCK):
                    await copy.write(block)
                for row in rows:
                    await copy.write_row(row)
            written, body = cursor.rowcount, None
            if with_staging:
                body, written = await (await conn.execute(merge.query, merge.params)).fetchone() or (None, 0)
            body = as_asked(call, body)  # before the commit: a 406 here writes nothing
    return written_response(201, body, written, call.plan.media_type)


def checked_names(relation: Relation, names: list[str]) -> None:
    """Before the rest of a CSV body is read: a wrong header needs no upload to be refused."""
    if len(set(names)) != len(names):
        raise invalid_body("A column is named twice")
    checked_columns(relation, names, "body")


def _conflict(query: Query) -> str | None:
    """on_conflict without a resolution preference merges, as an upsert is what the client asked for."""
    return "merge" if query.on_conflict else None


def as_asked(call: DataRequest, body: str | None) -> str | None:
    """Rows returned by a write as planned: an array, or with single() one object (406 unless one row)."""
    if body is None:
        return None
    return reads.json_body(body, call.plan.media_type, call.plan.strip_nulls)


def written_response(status: int, body: str | None, written: int, media_type: str = JSON_TYPE) -> Response:
    headers = {"Content-Range": f"*/{written}"}
    if body is None:
        return Response(status_code=204 if status == 200 else status, headers=headers)
    return Response(status_code=status, content=body, media_type=media_type, headers=headers)


async def update(call: DataRequest) -> Response:
    if media_type(call.request) != JSON_TYPE:
        raise ApiError(415, "unsupported_media_type", "Send the new values as a JSON object")
    data = await json_body(call)
    if not isinstance(data, dict):
        raise invalid_body("Send a JSON object of the columns to set", hint='e.g. {"status": "done"}')
    values = {k: value_text(v) for k, v in data.items()}
    return await write(call, update_statement(call.relation, call.query, values, returned_plan(call)))


async def delete(call: DataRequest) -> Response:
    return await write(call, delete_statement(call.relation, call.query, returned_plan(call)))


async def write(call: DataRequest, statement: Statement) -> Response:
    """Run one writing statement (it returns the written rows as JSON, or NULL, and their count).

    With `Prefer: handling=strict, max-affected=N` a write of more rows is rolled back, as in PostgREST.
    """
    limit = call.prefs.max_affected
    if limit is None and call.plan.media_type == JSON_TYPE and not call.plan.strip_nulls:
        ((body, written),) = await run(call.pool, call.principal, [statement], read_only=False)
        return written_response(200, body, written)
    async with transaction(call.pool, call.principal, read_only=False) as conn:
        body, written = await (await conn.execute(statement.query, statement.params)).fetchone() or (None, 0)
        body = as_asked(call, body)
        if limit is not None and written > limit:
            raise ApiError(
                400,
                "PGRST124",
                "Query result exceeds max-affected preference constraint",
                details=f"The query affects {written} rows",
                hint="Nothing was changed; narrow the filters or raise max-affected",
            )
    return written_response(200, body, written, call.plan.media_type)
