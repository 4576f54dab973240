"""Benchmark: loading a 1,000,000-row CSV into `raw`, next to psql's COPY (the limit) and pandas `to_sql`.

    .venv/bin/python bench/etl.py [--rows 1000000]

Starts a throwaway PostgreSQL 15 from the host's binaries (default settings), writes the example flights
CSV, and loads the same file into the same raw table three ways, emptying it in between:
  psql      `\\copy raw.flights (...) FROM file (FORMAT csv, HEADER)`: no parsing on the client, the limit;
  sawmill   parse_sources' raw load (digest, parse, per-row field check, COPY), as `batch-load` runs it;
  pandas    `read_csv(dtype=str)` + `to_sql(if_exists="append")`: what people write by hand.
Targets: sawmill >= 70 % of psql and >= 5x pandas.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import psycopg  # noqa: E402
import sqlalchemy  # noqa: E402

from parse_sources.batch import example, raw  # noqa: E402
from parse_sources.batch.pipeline import load_raw  # noqa: E402
from parse_sources.batch.sources import CsvFile  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "bench"


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL 15 cluster in a temporary directory; yields a superuser DSN to database `warehouse`."""
    root = Path(tempfile.mkdtemp(prefix="sawmill-bench-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    (root / "pw").write_text(PASSWORD)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = root / "data"
    try:
        subprocess.run(
            [
                *as_postgres,
                PG_BIN / "initdb",
                "-D",
                data,
                "-U",
                "postgres",
                f"--pwfile={root / 'pw'}",
                "-A",
                "scram-sha-256",
            ],
            check=True,
            capture_output=True,
        )
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
        subprocess.run(
            [*as_postgres, PG_BIN / "pg_ctl", "start", "-w", "-D", data, "-l", root / "log", "-o", options],
            check=True,
            capture_output=True,
        )
        dsn = f"host=127.0.0.1 port={port} user=postgres password={PASSWORD}"
        with psycopg.connect(dsn + " dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE warehouse")
        with psycopg.connect(dsn + " dbname=warehouse", autocommit=True) as conn:
            conn.execute("CREATE SCHEMA raw; CREATE SCHEMA curated; CREATE SCHEMA consumption")
        yield dsn + " dbname=warehouse"
    finally:
        subprocess.run([*as_postgres, PG_BIN / "pg_ctl", "stop", "-m", "fast", "-D", data], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def write_csv(path: Path, rows: int) -> None:
    """The example flights, without the deliberately truncated line (psql's COPY would stop at it)."""
    lines = example.flights(dt.date(2024, 5, 1), rows + 1)[:-1]
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(lines)


def empty(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE raw.flights")
        conn.execute("VACUUM ANALYZE raw.flights")
        conn.execute("CHECKPOINT")


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM raw.flights").fetchone()
    return row[0] if row else 0


def by_psql(dsn: str, path: Path) -> float:
    columns = ", ".join(example.COLUMNS)
    script = (
        "BEGIN;\n"
        "SELECT set_config('sawmill.batch_id', 'psql', true), set_config('sawmill.source', 'psql', true);\n"
        f"\\copy raw.flights ({columns}) FROM '{path}' WITH (FORMAT csv, HEADER)\n"
        "COMMIT;\n"
    )
    started = time.perf_counter()
    subprocess.run(
        ["psql", "-X", "-q", "-o", "/dev/null", "-v", "ON_ERROR_STOP=1", dsn], input=script, text=True, check=True
    )
    return time.perf_counter() - started


def by_sawmill(dsn: str, path: Path) -> float:
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn, conn.transaction(), CsvFile(str(path)).extract() as extract:
        _loaded, rejected = load_raw(conn, example.FLIGHTS, extract, "sawmill")
    elapsed = time.perf_counter() - started
    assert not rejected, rejected[:3]
    return elapsed


def by_pandas(dsn: str, path: Path) -> float:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{params['port']}/warehouse",
        connect_args={"options": "-c sawmill.batch_id=pandas -c sawmill.source=pandas"},
    )
    started = time.perf_counter()
    frame = pd.read_csv(path, dtype=str)
    frame.to_sql("flights", engine, schema="raw", if_exists="append", index=False)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sawmill-bench-") as temp, throwaway_postgres() as dsn:
        path = Path(temp) / "flights.csv"
        write_csv(path, args.rows)
        print(f"{args.rows:,} rows, {path.stat().st_size / 1e6:.0f} MB of CSV, {len(example.COLUMNS)} columns")
        with psycopg.connect(dsn) as conn:
            raw.ensure_table(conn, "flights", list(example.COLUMNS))
        timings = {}
        for name, load in (("psql \\copy", by_psql), ("sawmill raw load", by_sawmill), ("pandas to_sql", by_pandas)):
            empty(dsn)
            timings[name] = load(dsn, path)
            assert count(dsn) == args.rows, f"{name} loaded {count(dsn)} rows"
            print(f"{name + ':':<20}{timings[name]:8.2f} s {args.rows / timings[name]:>12,.0f} rows/s")
        ours, limit, pandas = timings["sawmill raw load"], timings["psql \\copy"], timings["pandas to_sql"]
        print(f"sawmill / psql COPY: {limit / ours:6.0%}   target >= 70 %")
        print(f"sawmill vs pandas:   {pandas / ours:6.1f}x  target >= 5x")


if __name__ == "__main__":
    main()
