"""The schema cache: tables, views, columns, types, keys, foreign keys and functions of the exposed schemas.

Only names found here ever reach SQL, so a request can never name anything else. The cache is
introspected by the authenticator and rebuilt whole in the background (schema_refresh.py); requests
only read it, so a refresh never blocks one. Privileges are not cached: Postgres checks them under
the caller's role on every request.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

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
       pg_catalog.col_description(c.oid, a.attnum),
       pg_catalog.pg_get_expr(d.adbin, d.adrelid)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum AND a.attgenerated = ''
LEFT JOIN pg_catalog.pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
WHERE n.nspname = ANY(%s)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT c.relispartition
ORDER BY n.nspname, c.relname, a.attnum
"""


# Foreign keys, their columns in key order: of every schema, as views of the exposed schemas carry those of the
# tables they select from (relationships_from keeps those whose two sides are exposed).
FOREIGN_KEY_QUERY = """
SELECT c.conname, ns.nspname, cs.relname, nt.nspname, ct.relname,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(n, o)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(n, o)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_catalog.pg_constraint c
JOIN pg_catalog.pg_class cs ON cs.oid = c.conrelid
JOIN pg_catalog.pg_namespace ns ON ns.oid = cs.relnamespace
JOIN pg_catalog.pg_class ct ON ct.oid = c.confrelid
JOIN pg_catalog.pg_namespace nt ON nt.oid = ct.relnamespace
WHERE c.contype = 'f'
ORDER BY c.conname, ns.nspname, cs.relname
"""

# Functions: their input arguments, and the columns of what they return when that is a row type.
FUNCTION_QUERY = """
SELECT n.nspname, p.proname, p.oid::int8,
       CASE WHEN p.proargmodes IS NULL
            THEN ARRAY(SELECT coalesce(p.proargnames[i], '') FROM generate_series(1, p.pronargs) AS i ORDER BY i)
            ELSE ARRAY(SELECT coalesce(p.proargnames[i], '') FROM generate_subscripts(p.proargmodes, 1) AS i
                       WHERE p.proargmodes[i] IN ('i', 'b', 'v') ORDER BY i)
       END,
       ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, o)
             ORDER BY o),
       p.pronargdefaults, p.proretset, pg_catalog.format_type(p.prorettype, NULL), p.provolatile,
       CASE WHEN rt.typrelid <> 0 THEN ARRAY(
                SELECT a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
                FROM pg_catalog.pg_attribute a WHERE a.attrelid = rt.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum)
            WHEN p.proargmodes IS NOT NULL THEN ARRAY(
                SELECT p.proargnames[i] || ' ' || pg_catalog.format_type(p.proallargtypes[i], NULL)
                FROM generate_subscripts(p.proargmodes, 1) AS i WHERE p.proargmodes[i] IN ('o', 'b', 't')
                ORDER BY i)
       END,
       pg_catalog.obj_description(p.oid, 'pg_proc')
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_type rt ON rt.oid = p.prorettype
WHERE n.nspname = ANY(%s) AND p.prokind = 'f'
ORDER BY n.nspname, p.proname, p.oid
"""

# Where each column of a view of the exposed schemas comes from, read as PostgREST reads it: the resorigtbl and
# resorigcol of the view's target list in its stored query tree (a column of a view over a view names the inner
# view: relationships_from follows the chain). The view's own column number and name must match.
VIEW_COLUMN_QUERY = r"""
SELECT vn.nspname, v.relname, va.attname, bn.nspname, b.relname, ba.attname
FROM pg_catalog.pg_rewrite r
JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
CROSS JOIN LATERAL regexp_matches(
    r.ev_action::text, ':resno (\d+) :resname (\S+) :ressortgroupref \d+ :resorigtbl (\d+) :resorigcol (\d+)', 'g'
) AS m
JOIN pg_catalog.pg_attribute va ON va.attrelid = v.oid AND va.attnum = m[1]::int AND va.attname = m[2]
JOIN pg_catalog.pg_class b ON b.oid = m[3]::oid
JOIN pg_catalog.pg_namespace bn ON bn.oid = b.relnamespace
JOIN pg_catalog.pg_attribute ba ON ba.attrelid = b.oid AND ba.attnum = m[4]::int
WHERE vn.nspname = ANY(%s) AND r.rulename = '_RETURN' AND v.relkind IN ('v', 'm')
"""

Key = tuple[str, str]  # (schema, name)
ViewColumn = tuple[Key, str, Key, str]  # (view, its column, relation it comes from, that relation's column)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool = False
    has_default: bool = False
    description: str | None = None
    default: str | None = None  # the default's SQL, from Postgres itself, for Prefer: missing=default


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


@dataclass(frozen=True)
class ForeignKey:
    name: str
    source: Key
    columns: tuple[str, ...]
    target: Key
    referenced: tuple[str, ...]


@dataclass(frozen=True)
class Junction:
    """The table between the two sides of a many-to-many relationship, and its two foreign keys."""

    relation: Key
    to_source: ForeignKey
    to_target: ForeignKey


@dataclass(frozen=True)
class Relationship:
    """How rows of `source` find rows of `target`: a foreign key read either way, or two through a junction."""

    cardinality: Literal["many-to-one", "one-to-many", "one-to-one", "many-to-many"]
    source: Key
    target: Key
    constraint: str  # the foreign key's name; for many-to-many, the junction table's
    join: tuple[tuple[str, str], ...] = ()  # (source column, target column) pairs, for a direct relationship
    junction: Junction | None = None

    def names(self) -> set[str]:
        """What a `!hint` may say to pick this relationship: a constraint, a column of it, or the junction."""
        if self.junction is not None:
            return {self.constraint, self.junction.to_source.name, self.junction.to_target.name}
        return {self.constraint} | {pair[0] for pair in self.join} | {pair[1] for pair in self.join}


def base_columns(view_columns: Iterable[ViewColumn]) -> dict[Key, dict[Key, dict[str, str]]]:
    """relation → view → {relation's column: view's column}, views over views followed to their tables."""
    direct: dict[tuple[Key, str], tuple[Key, str]] = {}
    for view, column, source, source_column in view_columns:
        direct[(view, column)] = (source, source_column)
    found: dict[Key, dict[Key, dict[str, str]]] = {}
    for (view, column), origin in direct.items():
        seen = {origin}
        while origin in direct and direct[origin] not in seen:  # a view over a view: on to what the inner one reads
            found.setdefault(origin[0], {}).setdefault(view, {}).setdefault(origin[1], column)
            origin = direct[origin]
            seen.add(origin)
        found.setdefault(origin[0], {}).setdefault(view, {}).setdefault(origin[1], column)
    return found


def through_views(fk: ForeignKey, views: dict[Key, dict[Key, dict[str, str]]]) -> list[ForeignKey]:
    """The foreign key between its tables, and as it reads between the views that show all its columns."""

    def sides(table: Key, columns: tuple[str, ...]) -> list[tuple[Key, tuple[str, ...]]]:
        shown = [
            (view, tuple(mapping[c] for c in columns))
            for view, mapping in views.get(table, {}).items()
            if all(c in mapping for c in columns)
        ]
        return [(table, columns), *shown]

    return [
        ForeignKey(fk.name, source, columns, target, referenced)
        for source, columns in sides(fk.source, fk.columns)
        for target, referenced in sides(fk.target, fk.referenced)
    ]


def relationships_from(
    keys: Iterable[ForeignKey],
    primary_keys: dict[Key, tuple[str, ...]] | None = None,
    view_columns: Iterable[ViewColumn] = (),
    exposed: set[Key] | None = None,
) -> dict[Key, list[Relationship]]:
    """Each foreign key both ways, and many-to-many through junctions: as in PostgREST, a table with foreign keys
    to both sides whose columns are all part of its primary key. Views carry the foreign keys of their tables;
    only relationships between exposed relations are kept."""
    views = base_columns(view_columns)
    keys = [
        fk
        for key in keys
        for fk in through_views(key, views)
        if exposed is None or (fk.source in exposed and fk.target in exposed)
    ]
    found: dict[Key, list[Relationship]] = {}
    for fk in keys:
        pairs = tuple(zip(fk.columns, fk.referenced, strict=True))
        found.setdefault(fk.source, []).append(Relationship("many-to-one", fk.source, fk.target, fk.name, pairs))
        reverse = tuple((b, a) for a, b in pairs)
        # a foreign key that is its table's whole primary key has at most one row per referenced row
        back = "one-to-one" if set(fk.columns) == set((primary_keys or {}).get(fk.source, ())) else "one-to-many"
        found.setdefault(fk.target, []).append(Relationship(back, fk.target, fk.source, fk.name, reverse))
    by_table: dict[Key, list[ForeignKey]] = {}
    for fk in keys:
        by_table.setdefault(fk.source, []).append(fk)
    for junction, outgoing in by_table.items():
        key_columns = set((primary_keys or {}).get(junction, ()))
        for to_source in outgoing:
            for to_target in outgoing:
                if (
                    to_source is not to_target
                    and junction not in (to_source.target, to_target.target)
                    and set(to_source.columns) | set(to_target.columns) <= key_columns
                ):
                    found.setdefault(to_source.target, []).append(
                        Relationship(
                            "many-to-many",
                            to_source.target,
                            to_target.target,
                            junction[1],
                            junction=Junction(junction, to_source, to_target),
                        )
                    )
    return found


@dataclass(frozen=True)
class Function:
    """A function callable as /rpc/name: its input arguments (name, type) and what it returns."""

    schema: str
    name: str
    oid: int
    arguments: tuple[tuple[str, str], ...]
    defaults: int  # how many of the last arguments have defaults
    returns_set: bool
    return_type: str
    volatility: Literal["i", "s", "v"]
    result: "Relation | None"  # the columns when it returns rows of a row type: filtered like a table
    description: str | None = None

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.arguments[: len(self.arguments) - self.defaults])


def functions_from_rows(rows: Iterable[tuple]) -> dict[Key, list[Function]]:
    """Overloads grouped by name; functions with unnamed arguments cannot be called by name and are left out."""
    found: dict[Key, list[Function]] = {}
    for schema, name, oid, arg_names, arg_types, defaults, returns_set, return_type, volatility, out, comment in rows:
        if any(not arg for arg in arg_names):
            continue
        result = None
        if out:
            columns = tuple(Column(*column.split(" ", 1)) for column in out)
            result = Relation(schema, name, "function", columns, (), oid)
        arguments = tuple(zip(arg_names, arg_types, strict=True))
        found.setdefault((schema, name), []).append(
            Function(schema, name, oid, arguments, defaults, returns_set, return_type, volatility, result, comment)
        )
    return found


def relations_from_rows(rows: Iterable[tuple]) -> dict[tuple[str, str], Relation]:
    """Group catalogue rows (one per column) into relations, primary-key columns in key order."""
    kinds: dict[tuple[str, str], tuple[str, int]] = {}
    columns: dict[tuple[str, str], list[Column]] = {}
    key_columns: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for schema, name, kind, oid, column, type_, not_null, has_default, pk_position, description, default in rows:
        key = (schema, name)
        kinds[key] = (kind, oid)
        columns.setdefault(key, []).append(Column(column, type_, not_null, has_default, description, default))
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
        self._relations: dict[Key, Relation] = {}
        self._relationships: dict[Key, list[Relationship]] = {}
        self._functions: dict[Key, list[Function]] = {}
        self.version = 0

    async def reload(self, conn: psycopg.AsyncConnection) -> None:
        schemas = list(self.schemas)
        relations = relations_from_rows(await (await conn.execute(CATALOG_QUERY, (schemas,))).fetchall())
        keys = [
            ForeignKey(r[0], (r[1], r[2]), tuple(r[5]), (r[3], r[4]), tuple(r[6]))
            for r in await (await conn.execute(FOREIGN_KEY_QUERY)).fetchall()
        ]
        view_columns = [
            ((r[0], r[1]), r[2], (r[3], r[4]), r[5])
            for r in await (await conn.execute(VIEW_COLUMN_QUERY, (schemas,))).fetchall()
        ]
        functions = functions_from_rows(await (await conn.execute(FUNCTION_QUERY, (schemas,))).fetchall())
        self.replace(relations, keys, functions, view_columns)

    def replace(
        self,
        relations: dict[Key, Relation],
        foreign_keys: Iterable[ForeignKey] = (),
        functions: dict[Key, list[Function]] | None = None,
        view_columns: Iterable[ViewColumn] = (),
    ) -> None:
        """Swap in a new cache; relationships are derived once here, not per request."""
        primary_keys = {key: relation.primary_key for key, relation in relations.items()}
        self._relationships = relationships_from(foreign_keys, primary_keys, view_columns, set(relations))
        self._functions = functions or {}
        self._relations = relations
        self.version += 1

    def relationships(self, source: Key) -> list[Relationship]:
        return self._relationships.get(source, [])

    def all_relationships(self) -> list[Relationship]:
        return [r for found in self._relationships.values() for r in found]

    def functions(self, schema: str, name: str) -> list[Function]:
        return self._functions.get((schema, name), [])

    def all_functions(self) -> list[Function]:
        return [f for found in self._functions.values() for f in found]

    def relations(self) -> list[Relation]:
        return list(self._relations.values())

    def lookup(self, schema: str, name: str) -> Relation | None:
        return self._relations.get((schema, name))
