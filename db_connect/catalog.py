"""The schema cache: tables, views, columns, types and keys of the exposed schemas, from pg_catalog.

Only names found here ever reach SQL, so a request can never name anything else. The cache is
introspected by the authenticator and rebuilt whole in the background (schema_refresh.py); requests
only read it, so a refresh never blocks one. Privileges are not cached: Postgres checks them under
the caller's role on every request.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg

CATALOG_QUERY = """
SELECT n.nspname,
       c.relname,
       CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                      WHEN 'f' THEN 'foreign table' ELSE 'table' END,
       c.oid::int8,
       a.attname,
       pg_catalog.format_type(a.atttypid, a.atttypmod),
       a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
       pg_catalog.array_position(pk.indkey::int2[], a.attnum),
       pg_catalog.col_description(c.oid, a.attnum)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
WHERE n.nspname = ANY(%s)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT c.relispartition
ORDER BY n.nspname, c.relname, a.attnum
"""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool = False
    has_default: bool = False
    description: str | None = None


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str
    kind: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    oid: int = 0
    by_name: dict[str, Column] = field(init=False, repr=False, compare=False)
    # Statement texts by query shape (templates.py); a reload builds new relations, so they start empty.
    templates: dict[object, list] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {column.name: column for column in self.columns})


def relations_from_rows(rows: Iterable[tuple]) -> dict[tuple[str, str], Relation]:
    """Group catalogue rows (one per column) into relations, primary-key columns in key order."""
    kinds: dict[tuple[str, str], tuple[str, int]] = {}
    columns: dict[tuple[str, str], list[Column]] = {}
    key_columns: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for schema, name, kind, oid, column, type_, not_null, has_default, pk_position, description in rows:
        key = (schema, name)
        kinds[key] = (kind, oid)
        columns.setdefault(key, []).append(Column(column, type_, not_null, has_default, description))
        if pk_position is not None:
            key_columns.setdefault(key, []).append((pk_position, column))
    return {
        key: Relation(
            schema=key[0],
            name=key[1],
            kind=kinds[key][0],
            columns=tuple(cols),
            primary_key=tuple(column for _, column in sorted(key_columns.get(key, []))),
            oid=kinds[key][1],
        )
        for key, cols in columns.items()
    }


class Catalog:
    """Exposed relations by (schema, name); `version` changes on every reload, for derived caches."""

    def __init__(self, schemas: tuple[str, ...]) -> None:
        self.schemas = schemas
        # Swapped whole on reload; reading one attribute is atomic, so requests need no lock.
        self._relations: dict[tuple[str, str], Relation] = {}
        self.version = 0

    async def reload(self, conn: psycopg.AsyncConnection) -> None:
        cursor = await conn.execute(CATALOG_QUERY, (list(self.schemas),))
        self.replace(relations_from_rows(await cursor.fetchall()))

    def replace(self, relations: dict[tuple[str, str], Relation]) -> None:
        self._relations = relations
        self.version += 1

    def relations(self) -> list[Relation]:
        return list(self._relations.values())

    def lookup(self, schema: str, name: str) -> Relation | None:
        return self._relations.get((schema, name))
