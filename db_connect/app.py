"""The FastAPI application: routes, start-up and shutdown of the pool.

`uvicorn db_connect.app:app` builds the app from the environment on first access (see __getattr__),
so importing this module, as tests do, needs neither secrets nor a database.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Query
from fastapi.responses import JSONResponse, Response
from psycopg import errors

from db_connect.auth import api_key_guard
from db_connect.catalog import Catalog, Relation
from db_connect.database import make_pool, transaction
from db_connect.errors import ApiError, ErrorBody, install_error_handlers
from db_connect.rows import page_query
from db_connect.settings import Settings

HEALTH_TIMEOUT_S = 2  # well inside the image's 3 s HEALTHCHECK timeout
MAX_OFFSET = 2**63 - 1  # Postgres's OFFSET is a bigint

DESCRIPTION = """
Read-only REST access to the Sawmill warehouse's exposed schemas (by default `consumption`).

* `GET /` lists the tables and views you can read, with their columns.
* `GET /{schema}/{table}?limit=&offset=` returns rows as a JSON array of objects, ordered by the
  primary key when there is one, so consecutive pages never overlap.

Authenticate with the API key as `Authorization: Bearer <key>` or `X-API-Key: <key>` ("Authorize" above).
Errors are JSON objects with `code`, `message`, `detail` and `hint`.
"""

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Invalid parameter",
        401: "Missing or invalid API key",
        503: "Database not reachable",
        504: "Statement timeout",
    }.items()
}


def not_exposed(schema: str, table: str) -> ApiError:
    return ApiError(
        404,
        "not_found",
        f"No exposed table or view named {schema}.{table}",
        hint="GET / lists the tables and views you can read",
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; tests pass explicit settings, the container reads the environment."""
    settings = settings or Settings()
    pool = make_pool(settings)
    catalog = Catalog(settings.exposed_schemas)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Don't wait for Postgres: the service starts, /health says 503 until it can connect.
        pool.open(wait=False)
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="Sawmill db_connect",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    @app.get("/health", tags=["operations"], summary="Is the database reachable?")
    def health() -> JSONResponse:
        try:
            with transaction(pool, HEALTH_TIMEOUT_S * 1000, wait_s=HEALTH_TIMEOUT_S) as conn:
                conn.execute("SELECT 1")
        except ApiError as exc:
            return JSONResponse(status_code=503, content={"status": "unavailable", **exc.body.model_dump()})
        return JSONResponse(content={"status": "ok"})

    api = APIRouter(dependencies=[Depends(api_key_guard(settings.api_key))], responses=ERROR_RESPONSES)

    @api.get("/", tags=["data"], summary="List readable tables and views")
    def list_relations() -> list[Relation]:
        with transaction(pool, settings.statement_timeout_ms) as conn:
            return catalog.refresh(conn)

    @api.get(
        "/{schema}/{table}",
        tags=["data"],
        summary="Read a page of rows",
        response_class=Response,
        responses={
            200: {
                "description": "The rows, as a JSON array of objects keyed by column name",
                "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
            },
            404: {"model": ErrorBody, "description": "No such exposed table or view"},
        },
    )
    def read_rows(
        schema: Annotated[str, Path(description="An exposed schema, e.g. consumption")],
        table: Annotated[str, Path(description="A table or view in it, as listed by GET /")],
        limit: Annotated[int, Query(ge=1, le=settings.max_page_size, description="Rows per page")] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")] = 0,
    ) -> Response:
        with transaction(pool, settings.statement_timeout_ms) as conn:
            relation = catalog.lookup(conn, schema, table)
            if relation is None:
                raise not_exposed(schema, table)
            try:
                page = conn.execute(page_query(relation), (limit, offset)).fetchone()
            except (errors.UndefinedTable, errors.InsufficientPrivilege):
                # Dropped or revoked since we cached it: answer as if it never existed.
                catalog.forget(schema, table)
                raise not_exposed(schema, table) from None
        assert page is not None  # an aggregate always returns one row
        return Response(content=page[0], media_type="application/json")

    app.include_router(api)
    return app


def __getattr__(name: str) -> FastAPI:
    """Build `app` from the environment on first access, for uvicorn's `db_connect.app:app`."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    application = create_app()
    globals()["app"] = application
    return application
