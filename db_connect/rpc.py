"""/rpc/function: a function of an exposed schema called with named arguments, under the caller's role.

POST takes the arguments as a JSON object; GET (and HEAD) as query parameters, and only for STABLE or
IMMUTABLE functions (plan.py). A call of a function that changes nothing runs read-only, as in PostgREST.
Rows a function returns are selected, filtered, ordered and paged like a table's, in one statement.
"""

import json

from psycopg import sql
from starlette.responses import Response

from db_connect import reads
from db_connect.data_request import DataRequest, query_items
from db_connect.database import run
from db_connect.errors import ApiError
from db_connect.plan import CSV_TYPE, JSON_TYPE, OBJECT_TYPE, Call, plan_call
from db_connect.statements import Statement, page_statement
from db_connect.writes import json_body, media_type, value_text


async def arguments(call: DataRequest) -> dict[str, object]:
    """A JSON object's members (POST), or the query parameters that name an argument (GET)."""
    if call.request.method != "POST":
        names = {
            a
            for f in call.catalog.functions(call.plan.target.schema, call.plan.target.function or "")
            for a, _ in f.arguments
        }
        return {k: v for k, v in query_items(call.request) if k in names}
    if media_type(call.request) != JSON_TYPE:
        raise ApiError(415, "unsupported_media_type", "Send the arguments as a JSON object", hint='e.g. {"a": 1}')
    data = await json_body(call, empty={})
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "Send the arguments as a JSON object", hint='e.g. {"a": 1}')
    return data


def argument_value(type_: str, value: object) -> object:
    """As Postgres parses it for the argument's type: a list for an array (psycopg writes the literal)."""
    return value if isinstance(value, list) and type_.endswith("[]") else value_text(value)


def call_sql(plan: Call) -> tuple[sql.Composable, list[object]]:
    """schema.function(a => $1::type, ...): each argument named and cast to the type the overload takes."""
    function = plan.function
    args = sql.SQL(", ").join(
        sql.SQL("{} => %s::" + type_).format(sql.Identifier(name)) for name, type_, _ in plan.arguments
    )
    values = [argument_value(type_, value) for _, type_, value in plan.arguments]
    return sql.SQL("{}({})").format(sql.Identifier(function.schema, function.name), args), values


def scalar_statement(plan: Call) -> Statement:
    """A function returning a scalar (or a set of them): its JSON value, and how many values."""
    source, values = call_sql(plan)
    if plan.function.return_type == "void":
        return Statement(sql.SQL("SELECT NULL::text, 0, NULL::text FROM {} AS f").format(source), values)
    if plan.function.returns_set:
        text = "SELECT coalesce(json_agg(f.v), '[]')::text, count(*), NULL::text FROM {} AS f(v)"
        return Statement(sql.SQL(text).format(source), values)
    return Statement(sql.SQL("SELECT to_json(f.v)::text, 1, NULL::text FROM {} AS f(v)").format(source), values)


async def call(request: DataRequest) -> Response:
    method = request.request.method
    given = await arguments(request)
    plan = plan_call(
        request.catalog, request.plan.target.schema, request.plan.target.function or "", given, request.query, method
    )
    only_reads = plan.read_only
    media, stripped = request.plan.media_type, request.plan.strip_nulls
    if plan.read is None:
        ((body, _, _),) = await run(request.pool, request.principal, [scalar_statement(plan)], only_reads)
        if body is None:
            return Response(status_code=204)
        return Response(content="" if method == "HEAD" else body, media_type=JSON_TYPE)
    source = call_sql(plan)
    if media == CSV_TYPE:
        return await reads.read_stream(request, True, source, plan.read, only_reads)
    cap = request.settings.exact_count_limit
    statements = [
        page_statement(plan.read, None, source),
        *reads.count_statements(plan.read, request.prefs, cap, source),
    ]
    rows = await run(request.pool, request.principal, statements, only_reads)
    if not plan.function.returns_set and media != OBJECT_TYPE:  # one row of a row type: an object, or null
        page = json.loads(rows[0][0])
        body = json.dumps(reads.strip_nulls(page[0]) if stripped and page else (page[0] if page else None))
        return Response(content="" if method == "HEAD" else body, media_type=JSON_TYPE)
    return reads.page_response(request, rows, media, stripped)
