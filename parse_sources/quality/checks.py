"""The checks, one class per kind, each a SQL measurement against one zone of one table."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class Outcome:
    measured: float
    passed: bool
    detail: str  # what was measured, what was allowed and, on failure, where to look


def _relation(zone: str, table: str) -> sql.Composable:
    return sql.Identifier(zone, table)


def _share(
    conn: psycopg.Connection, zone: str, table: str, where: sql.Composable, allowed: float, what: str
) -> Outcome:
    """The share of rows matching `where`, passing at most `allowed`; a failure says how to see those rows."""
    rows, matching = conn.execute(
        sql.SQL("SELECT count(*), count(*) FILTER (WHERE {w}) FROM {t}").format(w=where, t=_relation(zone, table))
    ).fetchone() or (0, 0)
    rate = matching / rows if rows else 0.0
    detail = f"{matching} of {rows} rows {what} ({rate:.2%}; allowed {allowed:.2%})"
    if rate > allowed:
        detail += f"; see SELECT * FROM {zone}.{table} WHERE {where.as_string(conn)}"
    return Outcome(rate, rate <= allowed, detail)


def _scalar(conn: psycopg.Connection, query: sql.Composable, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class Completeness:
    """Share of NULLs in a column, at most `max_null_rate`."""

    dimension: ClassVar[str] = "completeness"
    column: str
    max_null_rate: float = 0.0
    zone: str = "consumption"

    @property
    def name(self) -> str:
        return f"null rate of {self.column}"

    def measure(self, conn: psycopg.Connection, table: str) -> Outcome:
        missing = sql.SQL("{c} IS NULL").format(c=sql.Identifier(self.column))
        return _share(conn, self.zone, table, missing, self.max_null_rate, f"have no {self.column}")


@dataclass(frozen=True)
class Uniqueness:
    """No two rows share a key."""

    dimension: ClassVar[str] = "uniqueness"
    columns: tuple[str, ...]
    zone: str = "consumption"

    @property
    def name(self) -> str:
        return f"duplicate keys ({', '.join(self.columns)})"

    def measure(self, conn: psycopg.Connection, table: str) -> Outcome:
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        duplicates = _scalar(
            conn,
            sql.SQL("SELECT count(*) FROM (SELECT {c} FROM {t} GROUP BY {c} HAVING count(*) > 1) d").format(
                c=cols, t=_relation(self.zone, table)
            ),
        )
        keys = ", ".join(self.columns)
        detail = f"{duplicates} keys ({keys}) appear more than once in {self.zone}.{table}"
        if duplicates:
            detail += f"; see SELECT {keys}, count(*) FROM {self.zone}.{table} GROUP BY {keys} HAVING count(*) > 1"
        return Outcome(float(duplicates), duplicates == 0, detail)


@dataclass(frozen=True)
class Validity:
    """Values within a range, matching a pattern, or among allowed values; NULLs are completeness's business."""

    dimension: ClassVar[str] = "validity"
    column: str
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    allowed: tuple[str, ...] | None = None
    max_invalid_rate: float = 0.0
    zone: str = "consumption"

    @property
    def name(self) -> str:
        rules = []
        if self.minimum is not None or self.maximum is not None:
            rules.append(f"in [{self.minimum}, {self.maximum}]")
        if self.pattern is not None:
            rules.append(f"matches {self.pattern}")
        if self.allowed is not None:
            rules.append(f"in {{{', '.join(self.allowed)}}}")
        return f"{self.column} {' and '.join(rules)}"

    def _invalid(self) -> sql.Composable:
        c = sql.Identifier(self.column)
        conditions = []
        if self.minimum is not None:
            conditions.append(sql.SQL("{c} < {v}").format(c=c, v=sql.Literal(self.minimum)))
        if self.maximum is not None:
            conditions.append(sql.SQL("{c} > {v}").format(c=c, v=sql.Literal(self.maximum)))
        if self.pattern is not None:
            conditions.append(sql.SQL("{c}::text !~ {v}").format(c=c, v=sql.Literal(self.pattern)))
        if self.allowed is not None:
            conditions.append(sql.SQL("NOT ({c}::text = ANY({v}))").format(c=c, v=sql.Literal(list(self.allowed))))
        if not conditions:
            raise ValueError(f"validity check on {self.column} has no rule: give a range, a pattern or allowed values")
        return sql.SQL("{c} IS NOT NULL AND ({any})").format(c=c, any=sql.SQL(" OR ").join(conditions))

    def measure(self, conn: psycopg.Connection, table: str) -> Outcome:
        return _share(conn, self.zone, table, self._invalid(), self.max_invalid_rate, f"break '{self.name}'")


@dataclass(frozen=True)
class Consistency:
    """The zones reconcile: every distinct key that reached raw and was not quarantined is in curated and served."""

    dimension: ClassVar[str] = "consistency"
    key: tuple[str, ...]
    name: ClassVar[str] = "raw ⇄ curated ⇄ consumption row counts"

    def measure(self, conn: psycopg.Connection, table: str) -> Outcome:
        keys = sql.SQL(", ").join(map(sql.Identifier, self.key))
        raw_keys, curated, served = conn.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM (SELECT DISTINCT {k} FROM {raw} r WHERE NOT EXISTS ("
                " SELECT 1 FROM etl.quarantine q"
                " WHERE q.target = %s AND q.stage = 'curated' AND q.raw_id = r._raw_id)) d),"
                " (SELECT count(*) FROM {cur}), (SELECT count(*) FROM {con})"
            ).format(
                k=keys,
                raw=_relation("raw", table),
                cur=_relation("curated", table),
                con=_relation("consumption", table),
            ),
            (table,),
        ).fetchone() or (0, 0, 0)
        passed = raw_keys == curated == served
        detail = f"distinct keys in raw (not quarantined) {raw_keys}, curated {curated}, consumption {served}"
        if not passed:
            detail += f"; a load or merge of {table} was partial: compare raw.{table} with curated.{table} by key"
        return Outcome(float(abs(raw_keys - curated) + abs(curated - served)), passed, detail)


@dataclass(frozen=True)
class Timeliness:
    """The newest data is no older than the schedule allows."""

    dimension: ClassVar[str] = "timeliness"
    max_age: dt.timedelta
    column: str = "_loaded_at"
    zone: str = "consumption"

    @property
    def name(self) -> str:
        return f"freshness of {self.column} within {self.max_age}"

    def measure(self, conn: psycopg.Connection, table: str) -> Outcome:
        age = _scalar(
            conn,
            sql.SQL("SELECT extract(epoch FROM now() - max({c}))::float8 FROM {t}").format(
                c=sql.Identifier(self.column), t=_relation(self.zone, table)
            ),
        )
        if age is None:
            return Outcome(float("inf"), False, f"{self.zone}.{table} has no rows: has its load run?")
        passed = age <= self.max_age.total_seconds()
        detail = f"newest {self.column} is {dt.timedelta(seconds=round(age))} old (allowed {self.max_age})"
        if not passed:
            detail += f"; the load of {table} is late: check its DAG's last runs"
        return Outcome(age, passed, detail)


@dataclass(frozen=True)
class Accuracy:
    """Values agree with a trusted reference sample (a CSV with the key and the columns to compare)."""

    dimension: ClassVar[str] = "accuracy"
    reference: Path
    key: tuple[str, ...]
    compare: tuple[str, ...]
    min_match_rate: float = 1.0
    zone: str = "consumption"

    @property
    def name(self) -> str:
        return f"{', '.join(self.compare)} against {self.reference.name}"

    def measure(self, conn: psycopg.Connection, table: str) -> Outcome:
        with self.reference.open(newline="") as handle:
            rows = [tuple(r[c] for c in (*self.key, *self.compare)) for r in csv.DictReader(handle)]
        if not rows:
            return Outcome(0.0, False, f"{self.reference} has no rows: give a reference sample or drop the check")
        columns = (*self.key, *self.compare)
        # VALUES rather than a temporary table: the platform's writer may not create temporary tables.
        reference = sql.SQL("(VALUES {rows}) AS r ({cols})").format(
            rows=sql.SQL(", ").join(
                sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(columns))) for _ in rows
            ),
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        )
        join = sql.SQL(" AND ").join(sql.SQL("t.{c}::text = r.{c}").format(c=sql.Identifier(c)) for c in self.key)
        same = sql.SQL(" AND ").join(
            sql.SQL("t.{c}::text IS NOT DISTINCT FROM r.{c}").format(c=sql.Identifier(c)) for c in self.compare
        )
        compared, matching = conn.execute(
            sql.SQL("SELECT count(*), count(*) FILTER (WHERE {same}) FROM {t} t JOIN {reference} ON {join}").format(
                same=same, t=_relation(self.zone, table), reference=reference, join=join
            ),
            [value for row in rows for value in row],
        ).fetchone() or (0, 0)
        if not compared:
            return Outcome(0.0, False, f"no row of {self.zone}.{table} matches a key of {self.reference.name}")
        rate = matching / compared
        detail = (
            f"{matching} of {compared} rows agree with {self.reference.name}"
            f" ({rate:.2%}; needed {self.min_match_rate:.2%})"
        )
        return Outcome(rate, rate >= self.min_match_rate, detail)


Check = Completeness | Uniqueness | Validity | Consistency | Timeliness | Accuracy
