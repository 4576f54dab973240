"""Stage 1 of a request: which table, view or function a URL names, and in which exposed schema.

PostgREST's URLs, `/table` and `/rpc/function` in the schema that `Accept-Profile` (reads) or
`Content-Profile` (writes) names, the first exposed schema by default; and db_connect's own, with the
schema in the path: `/schema/table`, `/schema/rpc/function`.
"""

from dataclasses import dataclass

from starlette.requests import Request

from db_connect.catalog import Catalog, Relation
from db_connect.errors import ApiError

TABLE_METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE")
RPC_METHODS = ("GET", "HEAD", "POST")


@dataclass(frozen=True)
class Target:
    schema: str
    relation: Relation | None = None
    function: str | None = None  # an /rpc/ call: overloads are told apart by the planner, from the arguments


def not_found(path: str) -> ApiError:
    return ApiError(
        404,
        "not_found",
        f"No exposed table, view or function at {path}",
        hint="GET / lists the tables and views you can read; a new table appears after NOTIFY db_connect",
    )


def profile(catalog: Catalog, request: Request, in_path: str | None) -> str:
    """The schema asked for; one not exposed is PostgREST's 406 PGRST106, naming those that are."""
    header = "accept-profile" if request.method in ("GET", "HEAD") else "content-profile"
    asked = request.headers.get(header)
    if asked is None or asked == in_path:
        return in_path or catalog.schemas[0]
    if in_path is not None:
        raise ApiError(406, "PGRST106", f"{header} says {asked!r} but the path says {in_path!r}")
    if asked not in catalog.schemas:
        raise ApiError(
            406,
            "PGRST106",
            f"The schema must be one of the following: {', '.join(catalog.schemas)}",
            details=f"header '{header}': {asked!r} is not exposed",
        )
    return asked


def not_allowed(method: str, allowed: tuple[str, ...]) -> ApiError:
    return ApiError(405, "method_not_allowed", f"{method} is not allowed here", headers={"Allow": ", ".join(allowed)})


def resolve(catalog: Catalog, request: Request) -> Target:
    """The path's target in the schema cache; anything else is a 404 (after authentication, so no name leaks)."""
    path = request.scope["path"]
    parts = path.split("/")[1:]
    if len(parts) == 2 and parts[0] == "rpc":
        schema, function = profile(catalog, request, None), parts[1]
    elif len(parts) == 3 and parts[1] == "rpc" and parts[0] in catalog.schemas:
        schema, function = profile(catalog, request, parts[0]), parts[2]
    else:
        function = None
        if len(parts) == 1:
            schema, name = profile(catalog, request, None), parts[0]
        elif len(parts) == 2 and parts[0] in catalog.schemas:
            schema, name = profile(catalog, request, parts[0]), parts[1]
        else:
            raise not_found(path)
        relation = catalog.lookup(schema, name)
        if relation is None:
            raise not_found(path)
        if request.method not in TABLE_METHODS:
            raise not_allowed(request.method, TABLE_METHODS)
        return Target(schema, relation)
    if not catalog.functions(schema, function):
        raise ApiError(
            404,
            "PGRST202",
            f"Could not find the function {schema}.{function} in the schema cache",
            hint="GET /openapi.json lists the functions you can call",
        )
    if request.method not in RPC_METHODS:
        raise not_allowed(request.method, RPC_METHODS)
    return Target(schema, function=function)
