"""The OpenAPI 3 document, generated from the schema cache: one path per exposed table, view and function.

Rebuilt only when the cache changes. Column filters, select, order, paging and the Prefer header are
declared for every path, so generated clients and schemathesis see the real surface.
"""

from collections.abc import Sequence
from typing import Any

from db_connect.catalog import Column, Function, Relation, Relationship

ERROR = {"$ref": "#/components/schemas/ErrorBody"}
ERROR_STATUSES = {
    "400": "Invalid parameter, filter, value or body",
    "401": "Missing or invalid credentials",
    "403": "The role may not do this (GRANTs, row-level security)",
    "404": "No such exposed table or view",
    "409": "Conflicts with existing rows (unique or foreign key)",
    "413": "Body larger than the limit",
    "504": "Statement timeout",
}
SECURITY = [{"BearerKey": []}, {"ApiKeyHeader": []}]
SCALARS: dict[str, dict[str, Any]] = {
    "smallint": {"type": "integer"},
    "integer": {"type": "integer"},
    "bigint": {"type": "integer"},
    "real": {"type": "number"},
    "double precision": {"type": "number"},
    "numeric": {"type": "number"},
    "boolean": {"type": "boolean"},
    "json": {},
    "jsonb": {},
    "date": {"type": "string", "format": "date"},
    "timestamp with time zone": {"type": "string", "format": "date-time"},
    "timestamp without time zone": {"type": "string"},
    "uuid": {"type": "string", "format": "uuid"},
}
FILTER_DESCRIPTION = (
    "Filter: `op.value` with op one of eq, neq, gt, gte, lt, lte, like, ilike (`*` is a wildcard), match, imatch, "
    "in.(a,b), is.null|true|false, isdistinct, cs, cd, ov, sl, sr, nxl, nxr, adj, fts, plfts, phfts, wfts "
    "(e.g. fts(english).word); prefix with `not.` to negate."
)


def json_schema(column: Column, references: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """A column's schema; a foreign key column says so as PostgREST's document does, for tools that read it."""
    if column.type.endswith("[]"):
        schema: dict[str, Any] = {"type": "array"}
    else:
        schema = dict(SCALARS.get(column.type.split("(")[0], {"type": "string"}))
    schema["description"] = column.description or column.type
    if references and column.name in references:
        table, target = references[column.name]
        schema["description"] += (
            f"\n\nNote:\nThis is a Foreign Key to `{table}.{target}`.<fk table='{table}' column='{target}'/>"
        )
    return schema


def references_of(relation: Relation, relationships: Sequence[Relationship]) -> dict[str, tuple[str, str]]:
    """Foreign key column → (referenced table, column), for the many-to-one relationships of the relation."""
    return {
        source: (r.target[1], target)
        for r in relationships
        if r.cardinality == "many-to-one" and r.source == (relation.schema, relation.name)
        for source, target in r.join
    }


def function_path(function: Function) -> dict[str, Any]:
    """POST with the arguments as a JSON object; GET with them as query parameters unless it is VOLATILE."""
    arguments = {
        "type": "object",
        "required": list(function.required),
        "properties": {name: json_schema(Column(name, type_)) for name, type_ in function.arguments},
    }
    returned = {"application/json": {"schema": {}}}
    title = f"{function.schema}.{function.name}"
    path: dict[str, Any] = {
        "post": {
            "tags": [function.schema, "rpc"],
            "summary": function.description or f"Call {title}",
            "security": SECURITY,
            "requestBody": {"required": False, "content": {"application/json": {"schema": arguments}}},
            "responses": responses("200", f"What {title} returns ({function.return_type})", returned),
        }
    }
    if function.volatility != "v":
        path["get"] = {
            "tags": [function.schema, "rpc"],
            "summary": function.description or f"Call {title} (read-only)",
            "security": SECURITY,
            "parameters": [
                {**parameter(name, type_), "required": name in function.required} for name, type_ in function.arguments
            ],
            "responses": responses("200", f"What {title} returns ({function.return_type})", returned),
        }
    return path


def parameter(name: str, description: str, schema: dict[str, Any] | None = None, where: str = "query") -> dict:
    return {
        "name": name,
        "in": where,
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def filters(relation: Relation) -> list[dict[str, Any]]:
    groups = [
        parameter("or", "Any of the conditions, e.g. `(a.eq.1,b.gt.2)`"),
        parameter("and", "All of the conditions, e.g. `(a.eq.1,or(b.gt.2,b.is.null))`"),
    ]
    return [parameter(c.name, FILTER_DESCRIPTION) for c in relation.columns] + groups


def responses(success: str, description: str, body: dict[str, Any] | None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if body is not None:
        answer["content"] = body
    return {success: answer} | {
        status: {"description": text, "content": {"application/json": {"schema": ERROR}}}
        for status, text in ERROR_STATUSES.items()
    }


def relation_path(relation: Relation, ref: str) -> dict[str, Any]:
    rows = {"type": "array", "items": {"$ref": ref}}
    listing = {"application/json": {"schema": rows}, "text/csv": {"schema": {"type": "string"}}}
    returned = {"application/json": {"schema": rows}}
    prefer = parameter("Prefer", "count=exact|planned|estimated, return=representation, resolution=...", where="header")
    select = parameter("select", "Columns and embedded resources to return, e.g. `id,name,parent(*),children(id)`")
    title = f"{relation.schema}.{relation.name}"
    path: dict[str, Any] = {
        "get": {
            "tags": [relation.schema],
            "summary": f"Read rows of {relation.kind} {title}",
            "security": SECURITY,
            "parameters": [
                select,
                parameter("order", "e.g. `a.desc.nullslast,b`"),
                parameter("limit", "Rows per page", {"type": "integer", "minimum": 1}),
                parameter("offset", "Rows to skip", {"type": "integer", "minimum": 0}),
                parameter("cursor", "Keyset paging: empty for the first page, then the Next-Cursor header"),
                prefer,
                *filters(relation),
            ],
            "responses": responses("200", "The rows; Content-Range tells which and of how many", listing),
        },
        "post": {
            "tags": [relation.schema],
            "summary": f"Insert or upsert rows into {title} (loaded with COPY)",
            "security": SECURITY,
            "parameters": [select, parameter("on_conflict", "Upsert on these columns, e.g. `id`"), prefer],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"oneOf": [{"$ref": ref}, {"type": "array", "items": {"$ref": ref}}]}
                    },
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            "responses": responses("201", "Written; the rows with Prefer: return=representation", returned),
        },
        "patch": {
            "tags": [relation.schema],
            "summary": f"Update the rows of {title} matching the filters (a filter is required)",
            "security": SECURITY,
            "parameters": [select, prefer, *filters(relation)],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": ref}}}},
            "responses": responses("200", "Updated", returned) | {"204": {"description": "Updated"}},
        },
        "delete": {
            "tags": [relation.schema],
            "summary": f"Delete the rows of {title} matching the filters (a filter is required)",
            "security": SECURITY,
            "parameters": [select, prefer, *filters(relation)],
            "responses": responses("200", "Deleted", returned) | {"204": {"description": "Deleted"}},
        },
    }
    return path


def component_name(relation: Relation) -> str:
    return f"{relation.schema}.{relation.name}".replace(" ", "_")


def document(
    base: dict[str, Any],
    relations: list[Relation],
    relationships: Sequence[Relationship] = (),
    functions: Sequence[Function] = (),
) -> dict[str, Any]:
    """The static routes of `base` (FastAPI's own document) plus a path and a schema per relation and function."""
    doc = {**base, "paths": dict(base.get("paths", {})), "components": dict(base.get("components", {}))}
    schemas = dict(doc["components"].get("schemas", {}))
    for relation in sorted(relations, key=lambda r: (r.schema, r.name)):
        name = component_name(relation)
        schemas[name] = {
            "type": "object",
            "properties": {c.name: json_schema(c, references_of(relation, relationships)) for c in relation.columns},
        }
        doc["paths"][f"/{relation.schema}/{relation.name}"] = relation_path(relation, f"#/components/schemas/{name}")
    for function in sorted(functions, key=lambda f: (f.schema, f.name, f.oid)):
        doc["paths"][f"/{function.schema}/rpc/{function.name}"] = function_path(function)
    doc["components"]["schemas"] = schemas
    return doc
