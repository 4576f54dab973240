"""Land a batch of Kafka messages in a Postgres table in one transaction: rows, dead letters and offsets together.

Messages are COPYed, as raw JSON, into a temporary staging table, then upserted on the message key in one statement
that also extracts the fields (see staging), so a message the topic holds twice (a producer retry without
idempotence, a replayed file) is still one row, holding its latest value.

Most topics carry new keys, and ON CONFLICT costs about a third of the statement even when nothing conflicts, so the
writer first tries a plain INSERT (in a savepoint); a batch that hits an existing key is upserted instead, and so are
the next few batches of that topic before the plain INSERT is tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Message
from psycopg import sql

from parse_sources import schema
from parse_sources.schema import Schema, Table
from parse_sources.stream import staging
from parse_sources.stream.dead_letters import DeadLetterTable
from parse_sources.stream.offsets import OffsetStore

log = logging.getLogger(__name__)

KEY = "_kafka_key"
META: Schema = {
    KEY: schema.TEXT,
    "_kafka_partition": schema.INTEGER,
    "_kafka_offset": schema.BIGINT,
    "_kafka_timestamp": schema.TIMESTAMPTZ,
}
_STAGE = sql.Identifier("sawmill_sink_stage")
_UPSERT_ONLY_BATCHES = 16  # after a batch met an existing key, upsert the next ones without trying a plain INSERT
_RETRIES = 3  # concurrent schema changes by another replica can fail a batch; it is retried from scratch
_ROW_ERRORS = (psycopg.errors.DataError, psycopg.errors.IntegrityError)  # a value the column cannot hold


@dataclass(frozen=True)
class BatchResult:
    written: int  # rows upserted
    dead: int  # messages sent to the dead-letter table
    skipped: int  # messages already landed (by an earlier run or another replica)
    next_offsets: dict[int, int]


class TableWriter:
    """Writes batches of one topic into one table, creating and widening the table as records require."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        table: Table,
        topic: str,
        dead_letters: Table,
        declared: Schema,
        view: Table | None = None,
    ) -> None:
        self.conn = conn
        self.table = table
        self.view = view  # published as `SELECT *` of the table, e.g. in consumption, kept in step with its columns
        self.topic = topic
        self.offsets = OffsetStore(conn, table, topic)
        self.dead_letters = DeadLetterTable(conn, dead_letters)
        self._declared = {schema.column_name(name): kind for name, kind in declared.items()}
        self._columns: Schema | None = None  # the table's columns as last read or changed by this writer
        self._staged = False  # whether this session's staging table exists
        self._insert_statement: sql.Composed | None = None  # for the columns in self._columns
        self._upsert_statement: sql.Composed | None = None  # the same, with ON CONFLICT
        self._upsert_only = 0  # batches left that go straight to the upsert

    def setup(self) -> None:
        """Create the offsets and dead-letter tables, and the target table when a schema is declared."""
        with self.conn.transaction():
            self._lock_ddl()
            self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.table.schema)))
            self.offsets.create()
            self.dead_letters.create()
            if self._declared:
                self._columns = self._evolve(META | self._declared)

    def write(self, batch: staging.Batch) -> BatchResult:
        """Land the batch's messages exactly once, or raise with nothing written."""
        for attempt in range(1, _RETRIES + 1):
            try:
                with self.conn.transaction():
                    return self._write(batch)
            except _ROW_ERRORS as exc:
                if attempt == _RETRIES:
                    log.warning("batch of %d failed (%s); landing its messages one by one", len(batch.messages), exc)
                    return self._write_one_by_one(batch.messages)
                self._forget()
            except psycopg.errors.DatabaseError as exc:
                if attempt == _RETRIES or isinstance(exc, psycopg.OperationalError):
                    raise
                log.info("batch failed (%s); retrying with a fresh look at the table", exc)
                self._forget()
        raise AssertionError("unreachable")

    def _write(self, batch: staging.Batch, truncate_stage: bool = False) -> BatchResult:
        messages = batch.messages
        next_offsets = self.offsets.lock(m.partition() for m in messages)
        fresh = [m for m in messages if m.offset() >= next_offsets[m.partition()]]
        rows, dead = batch.fresh(next_offsets)
        self._upsert(rows, truncate_stage)
        self.dead_letters.add(dead)
        advanced = {}
        for message in fresh:
            advanced[message.partition()] = max(advanced.get(message.partition(), 0), message.offset() + 1)
        self.offsets.advance(advanced)
        return BatchResult(len(rows), len(dead), len(messages) - len(fresh), next_offsets | advanced)

    def _write_one_by_one(self, messages: Sequence[Message]) -> BatchResult:
        """Each message in its own savepoint, so only the ones whose values Postgres rejects become dead letters."""
        self._forget()
        written = dead = skipped = 0
        next_offsets: dict[int, int] = {}
        with self.conn.transaction():
            for message in messages:
                try:
                    with self.conn.transaction():
                        result = self._write(staging.decode([message]), truncate_stage=True)
                except _ROW_ERRORS as exc:
                    self._forget()
                    self.offsets.lock([message.partition()])
                    self.dead_letters.add([(message, f"rejected by Postgres: {exc}".strip())])
                    self.offsets.advance({message.partition(): message.offset() + 1})
                    dead += 1
                    next_offsets[message.partition()] = message.offset() + 1
                    continue
                written, dead, skipped = written + result.written, dead + result.dead, skipped + result.skipped
                next_offsets |= result.next_offsets
        return BatchResult(written, dead, skipped, next_offsets)

    def _upsert(self, rows: dict[bytes, staging.Row], truncate_stage: bool) -> None:
        if not rows:
            return
        needed = schema.infer_schema((row.record for row in rows.values()), self._columns or META)
        if needed != self._columns or self._upsert_statement is None:
            self._lock_ddl()
            self._columns = self._evolve(META | needed)
            self._insert_statement, self._upsert_statement = self._insert_sql()
        if not self._staged:
            self.conn.execute(
                sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                    _STAGE, sql.SQL(staging.COLUMNS)
                )
            )
            self._staged = True
        elif truncate_stage:
            self.conn.execute(sql.SQL("TRUNCATE {}").format(_STAGE))
        with self.conn.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(_STAGE)) as copy:
            copy.write(staging.copy_text(rows.values()))
        if self._upsert_only:
            self._upsert_only -= 1
        else:
            try:
                with self.conn.transaction():
                    self.conn.execute(self._insert_statement)
                return
            except psycopg.errors.UniqueViolation:
                self._upsert_only = _UPSERT_ONLY_BATCHES
        self.conn.execute(self._upsert_statement)

    def _insert_sql(self) -> tuple[sql.Composed, sql.Composed]:
        """The insert, and the upsert, that extract each field from the staged jsonb and cast it to its column's type.

        Casts name the base type (no modifier), so a value too long for varchar(n) fails instead of being cut.
        """
        types = self.conn.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (str(self.table),),
        ).fetchall()
        data = [(name, kind) for name, kind in types if name not in META]
        fields = [
            sql.SQL("s.value -> 'data' -> {}").format(sql.Literal(name))
            if kind in ("json", "jsonb")
            else sql.SQL("(s.value -> 'data' ->> {})::{}").format(sql.Literal(name), sql.SQL(kind))
            for name, kind in data
        ]
        names = [sql.Identifier(name) for name, _ in types]
        updates = [sql.SQL("{} = EXCLUDED.{}").format(name, name) for name in names if name != sql.Identifier(KEY)]
        insert = sql.SQL(
            "INSERT INTO {table} ({names}) SELECT s.key, s.partition, s.kafka_offset,"
            " 'epoch'::timestamptz + s.timestamp_ms * interval '1 millisecond'{fields} FROM {stage} s"
        ).format(
            table=self.table.identifier,
            names=sql.SQL(", ").join(names),
            fields=sql.SQL("").join(sql.SQL(", {}").format(field) for field in fields),
            stage=_STAGE,
        )
        on_conflict = sql.SQL(" ON CONFLICT ({key}) DO UPDATE SET {updates}").format(
            key=sql.Identifier(KEY), updates=sql.SQL(", ").join(updates)
        )
        return insert, insert + on_conflict

    def _evolve(self, needed: Schema) -> Schema:
        """The table made to hold `needed`, and its view published again when the columns changed. Postgres will
        not change the type of a column a view reads, so a widening drops the view first: in this transaction,
        readers see the old view until it commits."""
        if self.view is None:
            return schema.evolve(self.conn, self.table, needed, KEY)
        try:
            with self.conn.transaction():
                columns = schema.evolve(self.conn, self.table, needed, KEY)
        except psycopg.errors.FeatureNotSupported:  # "cannot alter type of a column used by a view"
            self.conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(self.view.identifier))
            columns = schema.evolve(self.conn, self.table, needed, KEY)
        if schema.read_schema(self.conn, self.view) != columns:
            self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.view.schema)))
            self.conn.execute(
                sql.SQL("CREATE OR REPLACE VIEW {} AS SELECT * FROM {}").format(
                    self.view.identifier, self.table.identifier
                )
            )
        return columns

    def _lock_ddl(self) -> None:
        """Serialise DDL on this table among replicas (transaction-scoped), so they never race to create a column."""
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"sawmill-sink:{self.table}",))

    def _forget(self) -> None:
        """After a rollback, what this writer believed about the table and the staging table may be stale."""
        self._columns = None
        self._staged = False
        self._insert_statement = self._upsert_statement = None
