"""One data request, parsed once: who calls, on what, asking what; what every handler receives."""

from collections.abc import Callable
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from db_connect.auth import Principal
from db_connect.catalog import Catalog, Relation
from db_connect.errors import ApiError
from db_connect.plan import Plan
from db_connect.prefer import Preferences
from db_connect.query_params import Query, invalid, parse_query, refuse_read_parameters
from db_connect.settings import Settings


@dataclass(frozen=True)
class DataRequest:
    pool: AsyncConnectionPool
    settings: Settings
    principal: Principal
    catalog: Catalog
    plan: Plan
    query: Query
    prefs: Preferences
    request: Request
    take_body: Callable[[int], None]  # a share of the process's body budget, as the body arrives (budget.py)

    @property
    def relation(self) -> Relation:
        assert self.plan.target.relation is not None, "a table request"
        return self.plan.target.relation


def query_items(request: Request) -> list[tuple[str, str]]:
    items = request.query_params.multi_items()
    if any("\x00" in k or "\x00" in v for k, v in items):
        raise ApiError(400, "invalid_parameter", "The query string contains a NUL character")
    return items


def parse_request(request: Request, settings: Settings, rpc_arguments: frozenset[str] | None = None) -> Query:
    """The query string parsed; a bad one is a 400 naming the parameter. An RPC's arguments are not filters."""
    items = query_items(request)
    if rpc_arguments is None and request.method not in ("GET", "HEAD"):
        refuse_read_parameters(items, request.method)
    items = [(k, v) for k, v in items if k not in (rpc_arguments or ())]
    query = parse_query(items, settings.default_page_size, settings.max_page_size)
    if rpc_arguments is None and request.method not in ("GET", "HEAD") and query.embedded:
        path = ".".join(query.embedded[0][0])
        raise invalid(path, f"does not apply to {request.method}: embedding is for reads")
    return query
