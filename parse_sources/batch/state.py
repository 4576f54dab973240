"""The ETL's own bookkeeping in schema `etl`: loaded batches, incremental cursors, quarantined rows.

It lives in the warehouse beside the data, so a batch's rows and its bookkeeping commit together.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from parse_sources.batch import pgtypes
from parse_sources.batch.sources import Rejected

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS etl;
CREATE TABLE IF NOT EXISTS etl.batches (
    target text NOT NULL,
    batch_id text NOT NULL,
    source text NOT NULL,
    digest text NOT NULL,
    rows_loaded bigint NOT NULL,
    rows_quarantined bigint NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, batch_id)
);
CREATE TABLE IF NOT EXISTS etl.cursors (
    target text NOT NULL,
    source text NOT NULL,
    cursor text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, source)
);
CREATE TABLE IF NOT EXISTS etl.quarantine (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target text NOT NULL,
    batch_id text NOT NULL,
    stage text NOT NULL CHECK (stage IN ('raw', 'curated')),
    record_number bigint,  -- stage raw: the record's number in the source
    raw_id bigint,  -- stage curated: the row in raw.<target> that did not fit
    record jsonb,
    reason text NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS quarantine_batch ON etl.quarantine (target, batch_id);
"""


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create `etl` once; concurrent first loads wait on one lock instead of racing on CREATE."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('parse_sources.etl'))")
        conn.execute(SCHEMA_SQL)
        conn.execute(pgtypes.FUNCTIONS_SQL)


def lock_target(conn: psycopg.Connection, target: str) -> None:
    """Batches of one table run one at a time (until the transaction ends); other tables are not held up."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('parse_sources.batch'), hashtext(%s))", (target,))


@dataclass(frozen=True)
class LoadedBatch:
    digest: str
    rows_loaded: int
    rows_quarantined: int


def loaded_batch(conn: psycopg.Connection, target: str, batch_id: str) -> LoadedBatch | None:
    row = conn.execute(
        "SELECT digest, rows_loaded, rows_quarantined FROM etl.batches WHERE target = %s AND batch_id = %s",
        (target, batch_id),
    ).fetchone()
    return LoadedBatch(*row) if row else None


def forget_batch(conn: psycopg.Connection, target: str, batch_id: str) -> None:
    """Remove what an earlier load of this batch left in `raw` and the quarantine, before loading it again."""
    conn.execute(sql.SQL("DELETE FROM {} WHERE _batch_id = %s").format(sql.Identifier("raw", target)), (batch_id,))
    conn.execute("DELETE FROM etl.quarantine WHERE target = %s AND batch_id = %s", (target, batch_id))
    conn.execute("DELETE FROM etl.batches WHERE target = %s AND batch_id = %s", (target, batch_id))


def record_batch(
    conn: psycopg.Connection, target: str, batch_id: str, source: str, digest: str, loaded: int, quarantined: int
) -> None:
    conn.execute(
        "INSERT INTO etl.batches (target, batch_id, source, digest, rows_loaded, rows_quarantined)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (target, batch_id, source, digest, loaded, quarantined),
    )


def cursor(conn: psycopg.Connection, target: str, source: str) -> str | None:
    row = conn.execute("SELECT cursor FROM etl.cursors WHERE target = %s AND source = %s", (target, source)).fetchone()
    return row[0] if row else None


def save_cursor(conn: psycopg.Connection, target: str, source: str, value: str) -> None:
    conn.execute(
        "INSERT INTO etl.cursors (target, source, cursor) VALUES (%s, %s, %s)"
        " ON CONFLICT (target, source) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()",
        (target, source, value),
    )


def quarantine(conn: psycopg.Connection, target: str, batch_id: str, rejected: list[Rejected]) -> None:
    """Rows the source or `raw` refused, with why; the `curated` stage quarantines in SQL (see curated.py)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO etl.quarantine (target, batch_id, stage, record_number, record, reason)"
            " VALUES (%s, %s, 'raw', %s, %s, %s)",
            [(target, batch_id, r.record_number, Jsonb(r.record), r.reason) for r in rejected],
        )
