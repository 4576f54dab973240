"""Zone `raw`: rows as received (all text) plus load metadata, written with COPY.

Load metadata comes from column defaults that read transaction settings, so COPY sends only the source's
bytes and the server fills in batch id, source and load time: the fast path stays a plain COPY.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

import psycopg
from psycopg import sql

from parse_sources.batch.sources import CsvBytes, Rejected

META_COLUMNS = ("_raw_id", "_batch_id", "_source", "_loaded_at")
CHUNK_ROWS = 20_000


def ensure_table(conn: psycopg.Connection, table: str, columns: Sequence[str]) -> list[str]:
    """Create raw.<table>, or add the columns it does not have yet (as text); return those added."""
    ident = sql.Identifier("raw", table)
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} ("
            " _raw_id bigint GENERATED ALWAYS AS IDENTITY,"
            " _batch_id text NOT NULL DEFAULT current_setting('sawmill.batch_id'),"
            " _source text NOT NULL DEFAULT current_setting('sawmill.source'),"
            " _loaded_at timestamptz NOT NULL DEFAULT now())"
        ).format(t=ident)
    )
    conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (_batch_id)").format(i=sql.Identifier(f"{table}_batch"), t=ident)
    )
    existing = set(table_columns(conn, "raw", table))
    added = [c for c in columns if c not in existing]
    for name in added:
        conn.execute(sql.SQL("ALTER TABLE {t} ADD COLUMN {c} text").format(t=ident, c=sql.Identifier(name)))
    return added


def table_columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    """Column name → data type, in table order."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    ).fetchall()
    return dict(rows)


def set_batch(conn: psycopg.Connection, batch_id: str, source: str) -> None:
    """What the metadata defaults read, for this transaction only."""
    conn.execute(
        "SELECT set_config('sawmill.batch_id', %s, true), set_config('sawmill.source', %s, true)", (batch_id, source)
    )


def copy_rows(
    conn: psycopg.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[str | None]]
) -> tuple[int, list[Rejected]]:
    """COPY the rows that have one value per column; the others come back as rejected, with their number.

    Rows are parsed and re-serialised by the csv module (C code) in chunks, so Python touches each row once.
    """
    width = len(columns)
    statement = sql.SQL("COPY {t} ({cols}) FROM STDIN (FORMAT csv)").format(
        t=sql.Identifier("raw", table), cols=sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    loaded, rejected, offset = 0, [], 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    iterator = iter(rows)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        while chunk := list(itertools.islice(iterator, CHUNK_ROWS)):
            good = [row for row in chunk if len(row) == width]
            if len(good) != len(chunk):
                rejected += [
                    Rejected(offset + i + 1, list(row), f"expected {width} fields, got {len(row)}")
                    for i, row in enumerate(chunk)
                    if len(row) != width
                ]
            writer.writerows(good)
            copy.write(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()
            loaded += len(good)
            offset += len(chunk)
    return loaded, rejected


def copy_file(conn: psycopg.Connection, table: str, columns: Sequence[str], file: CsvBytes) -> int:
    """COPY a CSV file as is: the server parses it, so this runs at COPY's own speed.

    Raises psycopg.errors.DataError on the first malformed row; the caller then takes `copy_rows`, which
    quarantines such rows. FORCE_NULL makes a quoted empty field NULL, as `copy_rows` does.
    """
    idents = sql.SQL(", ").join(map(sql.Identifier, columns))
    encoding = "UTF8" if file.encoding.lower().replace("-", "") == "utf8" else file.encoding
    statement = sql.SQL(
        "COPY {t} ({cols}) FROM STDIN (FORMAT csv, HEADER true, DELIMITER {d}, ENCODING {e}, FORCE_NULL ({cols}))"
    ).format(t=sql.Identifier("raw", table), cols=idents, d=sql.Literal(file.delimiter), e=sql.Literal(encoding))
    with conn.cursor() as cur, Path(file.path).open("rb") as handle:
        with cur.copy(statement) as copy:
            while block := handle.read(1 << 20):
                copy.write(block)
        return cur.rowcount
