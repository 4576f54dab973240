"""The schema cache: which tables and views a client may read, introspected from pg_catalog.

Only names found here ever reach SQL, so a request path can never name anything else.
"""

from dataclasses import dataclass

import psycopg

# Relations the connecting role can actually SELECT from, in the exposed schemas; partitions are
# reached through their parent. pk_position orders the primary-key columns (NULL when not in the key).
CATALOG_QUERY = """
SELECT n.nspname,
       c.relname,
       CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                      WHEN 'f' THEN 'foreign table' ELSE 'table' END,
       a.attname,
       pg_catalog.format_type(a.atttypid, a.atttypmod),
       pg_catalog.array_position(pk.indkey::int2[], a.attnum)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
WHERE n.nspname = ANY(%s)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT c.relispartition
  AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
  AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
ORDER BY n.nspname, c.relname, a.attnum
"""


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str
    kind: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]


class Catalog:
    """Exposed relations by (schema, name), reloaded when a lookup misses so new tables appear."""

    def __init__(self, schemas: tuple[str, ...]) -> None:
        self.schemas = schemas
        # Swapped whole on refresh; single dict operations are atomic, so request threads need no lock.
        self._relations: dict[tuple[str, str], Relation] = {}

    def refresh(self, conn: psycopg.Connection) -> list[Relation]:
        """Reload every exposed relation; also the answer to GET /, so the listing is never stale."""
        kinds: dict[tuple[str, str], str] = {}
        columns: dict[tuple[str, str], list[Column]] = {}
        key_columns: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for schema, name, kind, column, type_, pk_position in conn.execute(CATALOG_QUERY, (list(self.schemas),)):
            key = (schema, name)
            kinds[key] = kind
            columns.setdefault(key, []).append(Column(name=column, type=type_))
            if pk_position is not None:
                key_columns.setdefault(key, []).append((pk_position, column))
        relations = {
            key: Relation(
                schema=key[0],
                name=key[1],
                kind=kinds[key],
                columns=tuple(cols),
                primary_key=tuple(column for _, column in sorted(key_columns.get(key, []))),
            )
            for key, cols in columns.items()
        }
        self._relations = relations
        return list(relations.values())

    def lookup(self, conn: psycopg.Connection, schema: str, name: str) -> Relation | None:
        """Find an exposed relation; unexposed schemas are refused without asking the database."""
        if schema not in self.schemas:
            return None
        if (schema, name) not in self._relations:
            self.refresh(conn)
        return self._relations.get((schema, name))

    def forget(self, schema: str, name: str) -> None:
        """Drop a stale entry (the relation vanished or lost its grant) so the next lookup reloads."""
        self._relations.pop((schema, name), None)
