"""Schema `quality`: every check's result, kept, so trends and the latest state can be read through db_connect."""

from __future__ import annotations

import psycopg

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS quality;
CREATE TABLE IF NOT EXISTS quality.results (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text NOT NULL,
    table_name text NOT NULL,
    dimension text NOT NULL,
    check_name text NOT NULL,
    measured double precision,
    passed boolean NOT NULL,
    detail text NOT NULL,
    checked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS results_latest ON quality.results (table_name, dimension, check_name, checked_at DESC);
CREATE OR REPLACE VIEW quality.latest AS
    SELECT DISTINCT ON (table_name, dimension, check_name) *
    FROM quality.results ORDER BY table_name, dimension, check_name, checked_at DESC, id DESC;
"""
# The platform's init job (stack/postgres/init.sh) makes every warehouse reader, and every request role that reads
# (db_connect's api_reader, api_writer), a member of this group role: granting to it reaches them all, including
# readers added later, without this job knowing their names or running again.
READER_GROUP = "warehouse_reader"
GRANTS_SQL = f"""
GRANT USAGE ON SCHEMA quality TO {READER_GROUP};
GRANT SELECT ON ALL TABLES IN SCHEMA quality TO {READER_GROUP};
-- no FOR ROLE: tables this role (the schema's owner) creates in quality later are readable too
ALTER DEFAULT PRIVILEGES IN SCHEMA quality GRANT SELECT ON TABLES TO {READER_GROUP};
"""


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create `quality` and let the warehouse's readers see it (they only see `consumption` by default)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('parse_sources.quality'))")
        conn.execute(SCHEMA_SQL)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_GROUP,)).fetchone():
            conn.execute(GRANTS_SQL)


def store(
    conn: psycopg.Connection,
    run_id: str,
    table: str,
    dimension: str,
    check_name: str,
    measured: float,
    passed: bool,
    detail: str,
) -> None:
    conn.execute(
        "INSERT INTO quality.results (run_id, table_name, dimension, check_name, measured, passed, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (run_id, table, dimension, check_name, measured if measured != float("inf") else None, passed, detail),
    )
