"""The FastAPI application: routes, start-up and shutdown of the pool and the schema cache.

A data request goes through PostgREST's stages: authenticate (auth.py), find the table, view or function
the URL names in the schema cache (routes.py, catalog.py), parse the query string (query_params.py), plan
it against the cache (plan.py), build SQL (statements.py), run it in one transaction under the caller's
role (database.py), render the response (reads.py, writes.py, rpc.py).

`uvicorn db_connect.app:app` builds the app from the environment on first access (see __getattr__),
so importing this module, as tests do, needs neither secrets nor a database.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg import sql
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db_connect import reads, rpc, writes
from db_connect.auth import Authenticator, Principal, RequestRoles, bearer_scheme, header_scheme
from db_connect.budget import Budget
from db_connect.catalog import Catalog, Relation
from db_connect.data_request import DataRequest, parse_request
from db_connect.database import Statement, make_pool, run
from db_connect.errors import ApiError, ErrorBody, handle_api_error, handle_unexpected, install_error_handlers
from db_connect.keys import KeyStore
from db_connect.openapi import document
from db_connect.plan import plan_request
from db_connect.prefer import preferences
from db_connect.routes import resolve
from db_connect.schema_refresh import SchemaRefresher
from db_connect.settings import Settings
from db_connect.writes import media_type

logger = logging.getLogger(__name__)

# A refused body is read on for at most this much before the answer (a proxy is still sending it).
DRAIN_MAX_BYTES = 64 * 1024 * 1024
DRAIN_MAX_S = 10.0
HEALTH_TIMEOUT_S = 2  # well inside the image's 3 s HEALTHCHECK timeout
FIRST_LOAD_WAIT_S = 5  # how long a request waits for the very first schema load after start-up
MAX_DOCUMENTS = 32  # OpenAPI documents kept, one per schema-cache version and set of readable relations
READABLE = sql.SQL(
    "SELECT coalesce(array_agg(oid), '{}') FROM unnest(%s::oid[]) AS oid WHERE has_table_privilege(oid, 'SELECT')"
)

DESCRIPTION = """
REST access to the Sawmill warehouse's exposed schemas (by default `consumption`), PostgREST style.

* `GET /` lists the tables and views your role can read; `GET /openapi.json` (this document) describes
  those, as PostgREST does: both need credentials.
* `GET /{table}` (schema by `Accept-Profile`) or `/{schema}/{table}`, e.g.
  `?select=a,b,parent(c),children(*)&a=gte.5&or=(b.is.null,b.like.*x*)&order=a.desc&limit=100&children.limit=5`,
  reads rows as JSON, embedding related rows through foreign keys, or CSV with `Accept: text/csv`;
  `Prefer: count=exact|planned|estimated` fills `Content-Range`; `cursor=` pages by key (`Next-Cursor`).
* `POST /rpc/{function}` (JSON object of named arguments) or `GET /rpc/{function}?arg=1` (STABLE and
  IMMUTABLE functions) calls a function; rows it returns are filtered and paged like a table's.
* `POST` inserts a JSON array or a CSV body (loaded with COPY); `on_conflict=` upserts; `PATCH` and
  `DELETE` need a filter; `Prefer: return=representation` returns the written rows.

Authenticate with an API key (`Authorization: Bearer <key>` or `X-API-Key`) or a JWT whose `role` claim
names a Postgres role. Every request runs as that role: GRANTs and row-level security decide.
Errors are JSON objects with `code`, `message`, `details` and `hint`, as PostgREST's.
"""

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        401: "Missing or invalid credentials",
        503: "Database not reachable",
    }.items()
}


FIXED_PATHS = frozenset({"/", "/health", "/openapi.json"})
TABLE_HANDLERS: dict[str, Callable[[DataRequest], Awaitable[Response]]] = {
    "GET": reads.read,
    "HEAD": reads.read,
    "POST": writes.insert,
    "PATCH": writes.update,
    "DELETE": writes.delete,
}


def no_body(_: int) -> None:
    """GET and HEAD: no body is read, none is budgeted."""


def create_app(settings: Settings | None = None) -> ASGIApp:
    """Build the app; tests pass explicit settings, the container reads the environment."""
    settings = settings or Settings()
    pool = make_pool(settings)
    catalog = Catalog(settings.exposed_schemas)
    keys = KeyStore()
    roles = RequestRoles()
    authenticator = Authenticator(settings, keys, roles)
    refresher = SchemaRefresher(settings, catalog, keys, roles)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Don't wait for Postgres: the service starts, /health says 503 until it can connect.
        await pool.open(wait=False)
        refreshing = asyncio.create_task(refresher.run_forever())
        try:
            yield
        finally:
            refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refreshing
            await pool.close()

    # The document is served below, for the caller's role; a docs page could not send the key to fetch it.
    app = FastAPI(
        title="Sawmill db_connect",
        description=DESCRIPTION,
        version="0.2.0",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)

    async def principal(request: Request) -> Principal:
        """Credentials first, so an anonymous caller learns nothing about names or parameters."""
        found = authenticator.principal(request.headers)
        if not refresher.loaded.is_set():
            if not refresher.failing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(refresher.loaded.wait(), FIRST_LOAD_WAIT_S)
            if not refresher.loaded.is_set():
                raise ApiError(503, "database_unavailable", "The database is not reachable right now")
        return authenticator.assumable(found)

    @app.get("/health", tags=["operations"], summary="Is the database reachable?")
    async def health() -> JSONResponse:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S), pool.connection(timeout=HEALTH_TIMEOUT_S) as conn:
                await conn.execute("SELECT 1")
        except Exception:
            body = ErrorBody(code="database_unavailable", message="The database is not reachable right now")
            return JSONResponse(status_code=503, content={"status": "unavailable", **body.model_dump()})
        return JSONResponse(content={"status": "ok"})

    api = APIRouter(responses=ERROR_RESPONSES)

    @api.get(
        "/",
        tags=["data"],
        summary="List the tables and views your role can read",
        dependencies=[Depends(bearer_scheme), Depends(header_scheme)],
    )
    async def list_relations(request: Request) -> list[dict[str, Any]]:
        return [listing(r) for r in await readable(await principal(request))]

    async def readable(caller: Principal) -> list[Relation]:
        """The exposed relations the caller's role may SELECT from."""
        relations = catalog.relations()
        statement = Statement(READABLE, [[r.oid for r in relations]])
        ((oids,),) = await run(pool, caller, [statement], read_only=True)
        allowed = set(oids)
        return [r for r in relations if r.oid in allowed]

    app.include_router(api)

    async def handle(request: Request) -> Response:
        caller = await principal(request)
        target = resolve(catalog, request)
        arguments = None
        if target.function is not None:  # GET /rpc/fn?arg=1: arguments, not filters
            get = request.method in ("GET", "HEAD")
            arguments = frozenset(a for f in catalog.functions(target.schema, target.function) for a, _ in f.arguments)
            arguments = arguments if get else frozenset()
        query = parse_request(request, settings, arguments)
        plan = plan_request(target, request.method, request.headers)
        prefs = preferences(request.headers)
        with body_budget(request) as take:
            call = DataRequest(pool, settings, caller, catalog, plan, query, prefs, request, take)
            if target.function is not None:
                return await rpc.call(call)
            return await TABLE_HANDLERS[request.method](call)

    json_bodies = Budget("JSON bodies", "JSON_BODIES_IN_FLIGHT_BYTES", settings.json_bodies_in_flight_bytes)
    csv_bodies = Budget("CSV bodies", "CSV_BODIES_IN_FLIGHT_BYTES", settings.csv_bodies_in_flight_bytes)

    def body_budget(request: Request) -> AbstractContextManager[Callable[[int], None]]:
        if request.method in ("GET", "HEAD"):
            return contextlib.nullcontext(no_body)
        return (csv_bodies if media_type(request) == "text/csv" else json_bodies).hold()

    documents: dict[tuple[int, tuple[int, ...]], dict[str, Any]] = {}

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        """FastAPI's document for the fixed routes plus one path per relation the caller can read.

        Kept per schema-cache version and set of relations, as a few roles share a few sets.
        """
        relations = await readable(await principal(request))
        key = (catalog.version, tuple(r.oid for r in relations))
        if key not in documents:
            if len(documents) >= MAX_DOCUMENTS:
                documents.clear()
            documents[key] = document(
                FastAPI.openapi(app), relations, catalog.all_relationships(), catalog.all_functions()
            )
        return JSONResponse(documents[key])

    return read_to_the_end(data_router(app, handle))


def read_to_the_end(app: ASGIApp) -> ASGIApp:
    """An answer given before the request body ended (a 413, a bad CSV header, a 401) waits for the rest of it.

    nginx streams bodies on and asks `Connection: close`: uvicorn closing with the body unread makes nginx's next
    write meet a reset, and the client gets nginx's 503 instead of the answer. Bounded in bytes and time; a body
    longer still gets its answer and a closed connection.
    """

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(
            name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"]
        ):
            await app(scope, receive, send)
            return
        ended = False

        async def tracked() -> Message:
            nonlocal ended
            message = await receive()
            ended = ended or message["type"] == "http.disconnect" or not message.get("more_body", False)
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and not ended:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DRAIN_MAX_S):
                        drained = 0
                        while not ended and drained <= DRAIN_MAX_BYTES:
                            drained += len((await tracked()).get("body", b""))
            await send(message)

        await app(scope, tracked, sending)

    return asgi


def data_router(app: FastAPI, handle: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """The one router for data: every path but FastAPI's few is a table, a view or /rpc/, resolved by resolve().

    Going past FastAPI's middleware and router was a third less CPU for a small read.
    """

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in FIXED_PATHS:
            await app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handle(request)
        except ApiError as exc:
            response = await handle_api_error(request, exc)
        except Exception as exc:
            logger.exception("unexpected error in %s %s", scope["method"], scope["path"])
            response = await handle_unexpected(request, exc)
        await response(scope, receive, send)

    return asgi


def listing(relation: Relation) -> dict[str, Any]:
    return {
        "schema": relation.schema,
        "name": relation.name,
        "kind": relation.kind,
        "columns": [{"name": c.name, "type": c.type} for c in relation.columns],
        "primary_key": list(relation.primary_key),
    }


def __getattr__(name: str) -> ASGIApp:
    """Build `app` from the environment on first access, for uvicorn's `db_connect.app:app`."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    application = create_app()
    globals()["app"] = application
    return application
