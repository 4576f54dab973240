"""Benchmark Presto's two catalogs against the limits of their sources, measured in the same run on the same data.

    .venv/bin/python bench/presto.py [--rows 1000000]

Starts a throwaway Postgres 15 (host binaries, laid out by the platform's init job), a KRaft broker (kafka/lib)
and Presto as the platform runs it (presto/server on the host's Java 17, the config `deploy.py plan` renders,
the coordinator running queries itself as with presto.workers = 0), then, for the same --rows rows:
  warehouse: a full scan through Presto (every column reaches Presto: sums over each) next to
             `COPY (SELECT ...) TO STDOUT` of the same table, read to the end by psycopg;
  kafka:     a full scan of a topic of metrics-demo messages through Presto (every declared field decoded) next
             to a bare confluent-kafka consume loop over the same topic;
and prints rows/s for each and Presto's share (target >= 25 % of each source's limit). Also: seconds from
starting Presto to its first answered query, and its resident memory when idle after the scans.
Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.sink import bare_consume  # noqa: E402
from parse_sources.stream.producer import RecordProducer, producer_config  # noqa: E402
from tests.integration import conftest  # noqa: E402  (the same throwaway servers the integration tests use)
from tests.integration.presto_support import PASSWORD, lay_out_warehouse, running_presto  # noqa: E402

TABLE_COLUMNS = "id, host, ts, cpu_user, procs_running"


def fill_table(pg: conftest.PostgresServer, rows: int) -> None:
    with psycopg.connect(pg.dsn("warehouse", user="kafka", password=PASSWORD), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE raw.bench AS SELECT n AS id, 'host-' || mod(n, 50) AS host,"
            " timestamp '2026-01-01' + n * interval '1 second' AS ts,"
            " (mod(n, 1000) / 10.0)::double precision AS cpu_user,"
            " mod(n, 7) AS procs_running FROM generate_series(1, %s) AS n",
            (rows,),
        )
        conn.execute("ANALYZE raw.bench")


def copy_out(pg: conftest.PostgresServer, rows: int) -> float:
    with psycopg.connect(pg.dsn("warehouse", user="presto", password=PASSWORD)) as conn:
        started = time.perf_counter()
        size = 0
        with conn.cursor().copy(f"COPY (SELECT {TABLE_COLUMNS} FROM raw.bench) TO STDOUT") as copy:
            for block in copy:
                size += len(block)
        elapsed = time.perf_counter() - started
    assert size > rows * 20, f"COPY returned only {size} bytes"
    return rows / elapsed


def fill_topic(bootstrap: str, topic: str, rows: int) -> None:
    producer = RecordProducer(producer_config(bootstrap), topic)
    producer.send_all(
        (f"host-{n % 50}:{n}", {"host": f"host-{n % 50}", "ts": "2026-01-01T00:00:00.000+00:00",
                               "cpu_user": (n % 1000) / 10, "procs_running": n % 7})
        for n in range(rows)
    )  # fmt: skip
    producer.flush(timeout=300)


def presto_scan(presto: object, sql: str, rows: int) -> float:
    started = time.perf_counter()
    [[count, *_]] = presto.query(sql)  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - started
    assert count == rows, f"{sql} counted {count} rows, not {rows}"
    return rows / elapsed


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    rows = args.rows

    postgres = contextlib.contextmanager(conftest.postgres.__wrapped__)  # the fixtures' own setup and teardown
    broker = contextlib.contextmanager(conftest.kafka.__wrapped__)
    with postgres() as pg, broker() as kafka:
        lay_out_warehouse(pg)
        topic = kafka.create_topic("bench_presto", 3)
        print(f"filling a {rows:,}-row table and a {rows:,}-message topic ...", flush=True)
        fill_table(pg, rows)
        fill_topic(kafka.bootstrap_servers, topic, rows)
        with running_presto(topic, pg, kafka) as presto:
            print(f"Presto: first query answered {presto.started_s:.1f} s after its start", flush=True)
            copy = copy_out(pg, rows)
            scan = presto_scan(
                presto,
                "SELECT count(*), sum(id), sum(length(host)), max(ts), sum(cpu_user), sum(procs_running)"
                " FROM warehouse.raw.bench",
                rows,
            )
            print(f"warehouse: COPY TO STDOUT {copy:,.0f} rows/s; Presto full scan {scan:,.0f} rows/s"
                  f" = {100 * scan / copy:.0f} % (target >= 25 %)", flush=True)  # fmt: skip
            bare = bare_consume(kafka.bootstrap_servers, topic, rows)
            scan = presto_scan(
                presto,
                "SELECT count(*), sum(length(host)), max(ts), sum(cpu_user), sum(procs_running)"
                f' FROM kafka.default."{topic}"',
                rows,
            )
            print(f"kafka: bare consume loop {bare:,.0f} messages/s; Presto full scan {scan:,.0f} rows/s"
                  f" = {100 * scan / bare:.0f} % (target >= 25 %)", flush=True)  # fmt: skip
            time.sleep(10)
            print(f"Presto idle after the scans: {resident_mb(presto.pid):,.0f} MB resident (heap limit in jvm.config)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
