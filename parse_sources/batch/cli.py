"""Commands of the batch family: `batch-load`, `example-flights`, `quality`.

Connections come from --dsn and the libpq environment (PGHOST, PGDATABASE, PGUSER, PGPASSWORD or
PGPASSWORD_FILE), the same inside Airflow and at a shell.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from parse_sources.batch import example, pgtypes
from parse_sources.batch.connection import connect
from parse_sources.batch.pipeline import TableSpec, run_batch
from parse_sources.batch.sources import CsvFile, HttpApi, JsonFile, Source


def register(subparsers: Any) -> None:
    load = subparsers.add_parser(
        "batch-load",
        help="load one batch from a file or HTTP API into raw, curated and consumption",
        description="Load one batch: raw (as received) → curated (typed, merged by key) → consumption.",
    )
    where = load.add_mutually_exclusive_group(required=True)
    where.add_argument("--csv", metavar="PATH_OR_URL", help="a CSV file with a header row")
    where.add_argument("--json", metavar="PATH_OR_URL", help="a JSON array of objects, or one object per line")
    where.add_argument("--api", metavar="URL", help="a paginated JSON API, read from the stored cursor on")
    load.add_argument("--table", required=True, help="table name in raw, curated and consumption")
    load.add_argument("--key", required=True, action="append", help="key column (repeat for a composite key)")
    load.add_argument("--type", action="append", default=[], metavar="COLUMN=TYPE", help=f"one of {pgtypes.TYPES}")
    load.add_argument("--batch-id", help="default: the digest of the content, so the same file is loaded once")
    load.add_argument("--consumption-sql", help="a query over curated served as a table (default: a view)")
    load.add_argument("--cursor-field", help="--api: the record field the cursor follows (e.g. updated_at)")
    load.add_argument("--cursor-param", default="since", help="--api: query parameter carrying the cursor")
    load.add_argument("--records-field", default="data", help="--api: body field holding the records ('' = body)")
    load.add_argument("--next-field", default="next", help="--api: body field with the next page's URL ('' = page=N)")
    load.add_argument("--dsn", default="", help="libpq connection string (default: the PG* environment)")
    load.set_defaults(handler=_load)

    flights = subparsers.add_parser("example-flights", help="write a day of example flights as CSV")
    flights.add_argument("--date", type=dt.date.fromisoformat, default=dt.date.today())
    flights.add_argument("--rows", type=int, default=500)
    flights.add_argument("--out", type=Path, required=True)
    flights.add_argument("--load", action="store_true", help="and load it as batch DATE of table flights")
    flights.add_argument("--dsn", default="")
    flights.set_defaults(handler=_example)

    quality = subparsers.add_parser("quality", help="run a table's data quality checks and store the results")
    from parse_sources.quality.suites import DIMENSIONS, SUITES

    quality.add_argument("--suite", required=True, choices=sorted(SUITES))
    quality.add_argument("--dimension", action="append", choices=DIMENSIONS, help="default: all")
    quality.add_argument("--run-id", default=f"manual-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}")
    quality.add_argument("--dsn", default="")
    quality.set_defaults(handler=_quality)


def _source(args: argparse.Namespace) -> Source:
    if args.csv:
        return CsvFile(args.csv)
    if args.json:
        return JsonFile(args.json)
    if not args.cursor_field:
        raise SystemExit("--api needs --cursor-field: the record field whose largest value is stored as the cursor")
    return HttpApi(
        args.api,
        cursor_field=args.cursor_field,
        cursor_param=args.cursor_param,
        records_field=args.records_field or None,
        next_field=args.next_field or None,
    )


def _types(pairs: list[str]) -> dict[str, str]:
    types = {}
    for pair in pairs:
        column, _, type_ = pair.partition("=")
        if type_ not in pgtypes.TYPES:
            raise SystemExit(f"--type {pair}: the type must be one of {', '.join(pgtypes.TYPES)}")
        types[column] = type_
    return types


def _load(args: argparse.Namespace) -> int:
    spec = TableSpec(args.table, tuple(args.key), _types(args.type), args.consumption_sql)
    with connect(args.dsn) as conn:
        result = run_batch(conn, spec, _source(args), args.batch_id)
    print(json.dumps(asdict(result)))
    return 0


def _example(args: argparse.Namespace) -> int:
    example.write_flights(args.date, args.out, args.rows)
    if args.load:
        with connect(args.dsn) as conn:
            result = run_batch(conn, example.FLIGHTS, CsvFile(str(args.out)), args.date.isoformat())
        print(json.dumps(asdict(result)))
    return 0


def _quality(args: argparse.Namespace) -> int:
    from parse_sources.quality.suites import DIMENSIONS, SUITES, QualityFailure, run

    with connect(args.dsn) as conn:
        try:
            results = run(conn, SUITES[args.suite], args.run_id, tuple(args.dimension or DIMENSIONS))
        except QualityFailure as failure:
            print(failure)
            return 1
    for r in results:
        print(f"PASS {r.dimension}: {r.check}: {r.detail}")
    return 0
