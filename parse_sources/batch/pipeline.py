"""One batch through the zones, in one transaction: raw → curated → consumption, with its bookkeeping.

A batch is identified by its id (the scheduler's logical date, or the content's digest by default). Loading
the same id with the same content again changes nothing; with new content, it replaces the earlier load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg

from parse_sources.batch import consumption, curated, names, raw, state
from parse_sources.batch.sources import Extract, Rejected, Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSpec:
    """A table of the warehouse and how it is curated and served."""

    name: str
    key: tuple[str, ...]
    types: dict[str, str] = field(default_factory=dict)  # declared column types; others are inferred
    consumption_sql: str | None = None  # a query over curated served as a table; None: a view of curated

    def __post_init__(self) -> None:
        names.table(self.name)
        if not self.key:
            raise ValueError(f"table {self.name}: a key is needed to merge into curated")


@dataclass(frozen=True)
class BatchResult:
    table: str
    batch_id: str
    status: str  # "loaded", "unchanged" (same batch, same content) or "empty" (nothing new at the source)
    rows_loaded: int = 0  # into raw
    rows_merged: int = 0  # rows of curated inserted or changed
    rows_quarantined: int = 0
    columns_added: list[str] = field(default_factory=list)
    columns_widened: list[str] = field(default_factory=list)


def run_batch(conn: psycopg.Connection, spec: TableSpec, source: Source, batch_id: str | None = None) -> BatchResult:
    state.ensure_schema(conn)
    with conn.transaction():
        state.lock_target(conn, spec.name)
        stored_cursor = state.cursor(conn, spec.name, source.location)
        with source.extract(stored_cursor) as extract:
            batch_id = batch_id or f"sha256:{extract.digest[:16]}"
            previous = state.loaded_batch(conn, spec.name, batch_id)
            if previous and previous.digest == extract.digest:
                log.info("%s: batch %s was loaded with the same content; nothing to do", spec.name, batch_id)
                return BatchResult(spec.name, batch_id, "unchanged")
            if not extract.columns and not extract.rejected:
                log.info("%s: nothing new at %s", spec.name, extract.location)
                return BatchResult(spec.name, batch_id, "empty")
            if previous:
                log.info("%s: batch %s changed at the source; replacing it", spec.name, batch_id)
                state.forget_batch(conn, spec.name, batch_id)
            loaded, rejected = load_raw(conn, spec, extract, batch_id)
        state.quarantine(conn, spec.name, batch_id, rejected)
        evolution = curated.plan_evolution(conn, spec.name, spec.key, spec.types, batch_id)
        if evolution.widened:
            consumption.drop_view(conn, spec.name)
        curated.apply_evolution(conn, spec.name, spec.key, evolution)
        merged, unfit = curated.merge(conn, spec.name, spec.key, evolution.types, batch_id)
        consumption.publish(conn, spec.name, list(evolution.types), spec.consumption_sql, evolution.changes_schema)
        state.record_batch(conn, spec.name, batch_id, extract.location, extract.digest, loaded, len(rejected) + unfit)
        if extract.cursor is not None and extract.cursor != stored_cursor:
            state.save_cursor(conn, spec.name, source.location, extract.cursor)
    result = BatchResult(
        spec.name, batch_id, "loaded", loaded, merged, len(rejected) + unfit, evolution.added, evolution.widened
    )
    log.info("%s", result)
    return result


def load_raw(conn: psycopg.Connection, spec: TableSpec, extract: Extract, batch_id: str) -> tuple[int, list[Rejected]]:
    """Into raw.<table>, adding the columns it lacks; return the rows loaded and every record rejected."""
    columns = names.columns(extract.columns)
    raw.ensure_table(conn, spec.name, columns)
    raw.set_batch(conn, batch_id, extract.location)
    if extract.file is not None:
        try:
            with conn.transaction():  # a savepoint: a malformed file falls back to the row-checking path
                return raw.copy_file(conn, spec.name, columns, extract.file), extract.rejected
        except psycopg.errors.DataError as error:
            log.info(
                "%s: %s; loading row by row to quarantine the malformed rows", spec.name, error.diag.message_primary
            )
    loaded, rejected = raw.copy_rows(conn, spec.name, columns, extract.rows)
    return loaded, extract.rejected + rejected
