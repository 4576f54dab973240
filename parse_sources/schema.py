"""Table schemas from JSON records: infer Postgres types, widen them as data changes, and evolve tables to match.

Shared by the streaming sink and batch loaders. A field keeps one column for its whole life: when a value no longer
fits the column's type, the column is widened along integer → bigint → numeric, (integer|bigint) → double precision,
date → timestamptz, anything else → text; never a second "variant" column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import sql

BOOLEAN = "boolean"
INTEGER = "integer"
BIGINT = "bigint"
NUMERIC = "numeric"
DOUBLE = "double precision"
DATE = "date"
TIMESTAMPTZ = "timestamp with time zone"
JSONB = "jsonb"
TEXT = "text"

Schema = dict[str, str]
"""Column name -> Postgres type (the names `information_schema.columns.data_type` uses), in column order."""

_INT32 = 2**31
_INT64 = 2**63
_NUMBERS = {INTEGER: 0, BIGINT: 1, NUMERIC: 2}
_KNOWN = {BOOLEAN, INTEGER, BIGINT, NUMERIC, DOUBLE, DATE, TIMESTAMPTZ, JSONB, TEXT}
_PLAIN_TYPES = {float: DOUBLE, bool: BOOLEAN, dict: JSONB, list: JSONB}  # types whose values all infer alike
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_NOT_IDENTIFIER = re.compile(r"[^a-z0-9_]+")
MAX_IDENTIFIER = 63


@lru_cache(maxsize=4096)
def column_name(field_name: str) -> str:
    """A field name as a plain lower-case Postgres identifier, so SQL users never need quotes for it."""
    name = _NOT_IDENTIFIER.sub("_", field_name.strip().lower()).strip("_") or "field"
    if name[0].isdigit():
        name = f"_{name}"
    return name[:MAX_IDENTIFIER]


def infer_type(value: Any) -> str | None:
    """The narrowest Postgres type that holds `value` (a decoded JSON value); None for null, which fits any type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        if -_INT32 <= value < _INT32:
            return INTEGER
        return BIGINT if -_INT64 <= value < _INT64 else NUMERIC
    if isinstance(value, float):
        return DOUBLE
    if isinstance(value, str):
        return _string_type(value)
    if isinstance(value, dict | list):
        return JSONB
    return TEXT


def _string_type(value: str) -> str:
    if not _ISO_DATE.match(value):
        return TEXT
    try:
        if len(value) == 10:
            date.fromisoformat(value)
            return DATE
        datetime.fromisoformat(value)
    except ValueError:
        return TEXT
    return TIMESTAMPTZ


def widen(current: str | None, incoming: str | None) -> str | None:
    """The narrowest type that holds values of both types (the join of the type lattice)."""
    if current is None or current == incoming:
        return incoming if current is None else current
    if incoming is None:
        return current
    if current in _NUMBERS and incoming in _NUMBERS:
        return max(current, incoming, key=_NUMBERS.__getitem__)
    if {current, incoming} <= {INTEGER, BIGINT, DOUBLE}:
        return DOUBLE
    if {current, incoming} <= {NUMERIC, DOUBLE, INTEGER, BIGINT}:
        return NUMERIC
    if {current, incoming} == {DATE, TIMESTAMPTZ}:
        return TIMESTAMPTZ
    if current not in _KNOWN and incoming == TEXT:
        return current  # a declared type we do not model (uuid, inet...): Postgres parses the text itself
    return TEXT


def infer_schema(records: Iterable[Mapping[str, Any]], start: Schema | None = None) -> Schema:
    """The schema that holds every record, widening `start` (e.g. a table's current columns) where needed.

    A field seen only with nulls gets text, so that it still becomes a column.
    """
    schema: dict[str, str | None] = dict(start or {})
    for record in records:  # the sink's hot loop: one pass per field of every message
        for name, value in record.items():
            column = column_name(name)
            if value is None:
                schema.setdefault(column, None)
                continue
            current = schema.get(column)
            if current != TEXT:
                incoming = _PLAIN_TYPES.get(type(value)) or infer_type(value)
                if incoming != current:
                    schema[column] = widen(current, incoming)
    return {name: kind or TEXT for name, kind in schema.items()}


@dataclass(frozen=True)
class SchemaChange:
    """What `ALTER TABLE` must do so a table with `before` holds records that need `after`."""

    added: Schema = field(default_factory=dict)
    widened: Schema = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.widened)


def diff(before: Schema, after: Schema) -> SchemaChange:
    added = {name: kind for name, kind in after.items() if name not in before}
    widened = {name: kind for name, kind in after.items() if name in before and before[name] != kind}
    return SchemaChange(added, widened)


@dataclass(frozen=True)
class Table:
    schema: str
    name: str

    @classmethod
    def parse(cls, qualified: str, default_schema: str = "raw") -> Table:
        """`raw.events` or `events` (in `default_schema`); names are normalised like columns."""
        schema, _, name = qualified.rpartition(".")
        return cls(column_name(schema or default_schema), column_name(name))

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def sibling(self, suffix: str) -> Table:
        return Table(self.schema, f"{self.name[: MAX_IDENTIFIER - len(suffix)]}{suffix}")

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def create_table_sql(table: Table, columns: Schema, primary_key: str | None = None) -> sql.Composed:
    parts = [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in columns.items()]
    if primary_key:
        parts.append(sql.SQL("PRIMARY KEY ({})").format(sql.Identifier(primary_key)))
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table.identifier, sql.SQL(", ").join(parts))


def alter_table_sql(table: Table, change: SchemaChange) -> list[sql.Composed]:
    """Statements that apply `change`; safe to run again (IF NOT EXISTS; re-widening to a type is a no-op)."""
    statements = [
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
            table.identifier, sql.Identifier(name), sql.SQL(kind)
        )
        for name, kind in change.added.items()
    ]
    statements += [
        sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}::{}").format(
            table.identifier, sql.Identifier(name), sql.SQL(kind), sql.Identifier(name), sql.SQL(kind)
        )
        for name, kind in change.widened.items()
    ]
    return statements


def read_schema(conn: psycopg.Connection[Any], table: Table) -> Schema | None:
    """The table's columns in order, or None when the table does not exist."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (table.schema, table.name),
    ).fetchall()
    return {name: kind for name, kind in rows} or None


def evolve(conn: psycopg.Connection[Any], table: Table, needed: Schema, primary_key: str | None = None) -> Schema:
    """Create `table` or alter it so it holds columns `needed`; return its schema afterwards.

    Runs in the caller's transaction, so a failure leaves the table as it was.
    """
    current = read_schema(conn, table)
    if current is None:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
        conn.execute(create_table_sql(table, needed, primary_key))
        return read_schema(conn, table) or dict(needed)
    target = {**current, **{name: widen(current.get(name), kind) or TEXT for name, kind in needed.items()}}
    for statement in alter_table_sql(table, diff(current, target)):
        conn.execute(statement)
    return read_schema(conn, table) or current


def to_column_value(value: Any, kind: str) -> Any:
    """A decoded JSON value as COPY should send it to a column of type `kind`."""
    if value is None:
        return None
    if kind == JSONB or (isinstance(value, dict | list)):
        return json.dumps(value, separators=(",", ":"))
    if kind == TEXT and not isinstance(value, str):
        return json.dumps(value)
    return value
