"""One data request, parsed once: who calls, on which relation, asking what; what every handler receives."""

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request

from db_connect.auth import Principal
from db_connect.catalog import Relation
from db_connect.errors import ApiError
from db_connect.prefer import Preferences, preferences
from db_connect.query_params import Query, parse_query, refuse_read_parameters
from db_connect.settings import Settings


@dataclass(frozen=True)
class DataRequest:
    pool: AsyncConnectionPool
    settings: Settings
    principal: Principal
    relation: Relation
    query: Query
    prefs: Preferences
    request: Request

    @classmethod
    def parse(
        cls, request: Request, pool: AsyncConnectionPool, settings: Settings, principal: Principal, relation: Relation
    ) -> "DataRequest":
        """The query string and the Prefer header parsed; a bad one is a 400 naming the parameter."""
        items = request.query_params.multi_items()
        if any("\x00" in k or "\x00" in v for k, v in items):
            raise ApiError(400, "invalid_parameter", "The query string contains a NUL character")
        if request.method not in ("GET", "HEAD"):
            refuse_read_parameters(items, request.method)
        query = parse_query(items, settings.default_page_size, settings.max_page_size)
        return cls(pool, settings, principal, relation, query, preferences(request.headers), request)
