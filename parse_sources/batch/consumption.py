"""Zone `consumption`: what db_connect, Metabase and Presto read; a view of curated or a table built by a query.

Readers get SELECT through the default privileges the platform's init job sets for the writer's tables.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from parse_sources.batch.curated import CURATED_META


def drop_view(conn: psycopg.Connection, table: str) -> None:
    """A view pins its columns' types: it goes before curated's columns are widened, and comes back after."""
    conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier("consumption", table)))


def publish(conn: psycopg.Connection, table: str, columns: list[str], query: str | None, rebuild_view: bool) -> None:
    """consumption.<table>: rebuilt from `query` when one is given, else a view of curated (made when missing)."""
    target = sql.Identifier("consumption", table)
    if query is not None:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        conn.execute(sql.SQL("CREATE TABLE {} AS ").format(target) + sql.SQL(query))  # type: ignore[arg-type]
        return
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"consumption.{table}",)).fetchone()
    if exists and exists[0] and not rebuild_view:
        return
    drop_view(conn, table)
    conn.execute(
        sql.SQL("CREATE VIEW {v} AS SELECT {cols}, _loaded_at FROM {t}").format(
            v=target,
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns if c not in CURATED_META),
            t=sql.Identifier("curated", table),
        )
    )
