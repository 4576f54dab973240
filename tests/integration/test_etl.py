"""Batch ETL against a real Postgres: sources → raw → curated → consumption, as a writer role of the platform."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from parse_sources.__main__ import main
from parse_sources.batch import example
from parse_sources.batch.pipeline import TableSpec, run_batch
from parse_sources.batch.sources import CsvFile, HttpApi, JsonFile

ORDERS = TableSpec("orders", key=("order_id",))
ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def rows(dsn: str, query: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def column_types(dsn: str, schema: str, table: str) -> dict[str, str]:
    return dict(
        rows(
            dsn,
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        )
    )


def load(dsn: str, spec: TableSpec, source: Any, batch_id: str | None = None) -> Any:
    with psycopg.connect(dsn) as conn:
        return run_batch(conn, spec, source, batch_id)


class LocalHttp:
    """Files and a paginated API on 127.0.0.1, recording the requests it was sent."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.records: list[dict[str, Any]] = []
        self.page_size = 2
        self.requests: list[str] = []

    def respond(self, path: str) -> tuple[int, bytes]:
        self.requests.append(path)
        url = urllib.parse.urlsplit(path)
        if url.path in self.files:
            return 200, self.files[url.path]
        if url.path != "/api/orders":
            return 404, b"{}"
        query = dict(urllib.parse.parse_qsl(url.query))
        since = query.get("since", "")
        page = int(query.get("page", "1"))
        newer = [r for r in self.records if r["updated_at"] > since]
        chunk = newer[(page - 1) * self.page_size : page * self.page_size]
        more = page * self.page_size < len(newer)
        next_url = f"/api/orders?{urllib.parse.urlencode({'since': since, 'page': page + 1})}" if more else None
        return 200, json.dumps({"data": chunk, "next": next_url}).encode()


@pytest.fixture
def http() -> Iterator[tuple[LocalHttp, str]]:
    site = LocalHttp()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = site.respond(self.path)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_csv_batch_lands_typed_in_curated_and_served_from_consumption_with_load_metadata(
    warehouse: str, tmp_path: Path
) -> None:
    source = write(tmp_path / "orders.csv", "Order ID,Amount,Placed On,Paid\n1,10,2024-05-01,true\n2,12.5,,false\n")
    result = load(warehouse, ORDERS, CsvFile(str(source)), "2024-05-01")
    assert (result.status, result.rows_loaded, result.rows_merged, result.rows_quarantined) == ("loaded", 2, 2, 0)
    raw = rows(warehouse, "SELECT _batch_id, _source, _loaded_at IS NOT NULL, order_id, amount FROM raw.orders")
    assert raw == [("2024-05-01", str(source), True, "1", "10"), ("2024-05-01", str(source), True, "2", "12.5")]
    assert column_types(warehouse, "curated", "orders") == {
        "order_id": "bigint",
        "amount": "double precision",
        "placed_on": "date",
        "paid": "boolean",
        "_batch_id": "text",
        "_loaded_at": "timestamp with time zone",
        "_merged_at": "timestamp with time zone",
    }
    served = rows(warehouse, "SELECT order_id, amount, placed_on, paid FROM consumption.orders ORDER BY 1")
    assert served == [(1, 10.0, dt.date(2024, 5, 1), True), (2, 12.5, None, False)]


def test_loading_the_same_batch_again_changes_nothing(warehouse: str, tmp_path: Path) -> None:
    source = CsvFile(str(write(tmp_path / "orders.csv", "order_id,amount\n1,10\n2,20\n")))
    load(warehouse, ORDERS, source, "b1")
    before = rows(warehouse, "SELECT xmin::text, * FROM curated.orders ORDER BY order_id")
    raw_before = rows(warehouse, "SELECT count(*) FROM raw.orders")
    again = load(warehouse, ORDERS, source, "b1")
    assert again.status == "unchanged"
    default_id = load(warehouse, ORDERS, source)  # same content under its digest: merged, but nothing differs
    assert (default_id.status, default_id.rows_merged) == ("loaded", 0)
    assert rows(warehouse, "SELECT xmin::text, * FROM curated.orders ORDER BY order_id") == before
    assert rows(warehouse, "SELECT count(*) FROM raw.orders WHERE _batch_id = 'b1'") == raw_before
    assert load(warehouse, ORDERS, source).status == "unchanged"


def test_new_content_for_a_batch_id_replaces_its_earlier_load(warehouse: str, tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", "order_id,amount\n1,10\n2,20\n")
    load(warehouse, ORDERS, CsvFile(str(path)), "2024-05-01")
    write(path, "order_id,amount\n1,11\n")
    result = load(warehouse, ORDERS, CsvFile(str(path)), "2024-05-01")
    assert (result.status, result.rows_loaded, result.rows_merged) == ("loaded", 1, 1)
    assert rows(warehouse, "SELECT order_id, amount FROM raw.orders") == [("1", "11")]
    assert rows(warehouse, "SELECT order_id, amount FROM curated.orders ORDER BY 1") == [(1, 11), (2, 20)]


def test_bad_rows_are_quarantined_with_their_reason_and_the_rest_loads(warehouse: str, tmp_path: Path) -> None:
    spec = TableSpec("orders", key=("order_id",), types={"amount": "bigint", "placed_on": "date"})
    text = "order_id,amount,placed_on\n1,10,2024-05-01\n2,ten,2024-05-02\n3,30\n4,40,2024-02-30\n,50,2024-05-03\n"
    result = load(warehouse, spec, CsvFile(str(write(tmp_path / "o.csv", text))), "b1")
    assert (result.rows_loaded, result.rows_merged, result.rows_quarantined) == (4, 1, 4)
    quarantined = rows(
        warehouse, "SELECT stage, record_number, reason FROM etl.quarantine ORDER BY stage, record_number, raw_id"
    )
    assert quarantined == [
        ("curated", None, "column amount: 'ten' is not a valid bigint"),
        ("curated", None, "column placed_on: '2024-02-30' is not a valid date"),
        ("curated", None, "key column order_id is empty"),
        ("raw", 3, "expected 3 fields, got 2"),
    ]
    assert rows(warehouse, "SELECT record FROM etl.quarantine WHERE stage = 'raw'") == [(["3", "30"],)]
    assert rows(warehouse, "SELECT rows_loaded, rows_quarantined FROM etl.batches") == [(4, 4)]
    assert rows(warehouse, "SELECT order_id FROM consumption.orders") == [(1,)]


def test_schema_evolves_new_columns_are_added_and_types_widen_without_variant_columns(
    warehouse: str, tmp_path: Path
) -> None:
    load(warehouse, ORDERS, CsvFile(str(write(tmp_path / "1.csv", "order_id,amount,day\n1,10,2024-05-01\n"))))
    second = "OrderId,Amount,Day,Coupon Code\n2,12.5,2024-05-02 10:30:00+00,SPRING\n"
    result = load(warehouse, ORDERS, CsvFile(str(write(tmp_path / "2.csv", second))))
    assert (result.columns_added, result.columns_widened) == (["coupon_code"], ["amount", "day"])
    types = column_types(warehouse, "curated", "orders")
    assert [c for c in types if not c.startswith("_")] == ["order_id", "amount", "day", "coupon_code"]
    assert (types["amount"], types["day"], types["coupon_code"]) == (
        "double precision",
        "timestamp with time zone",
        "text",
    )
    assert rows(warehouse, "SELECT order_id, amount, coupon_code FROM consumption.orders ORDER BY 1") == [
        (1, 10.0, None),
        (2, 12.5, "SPRING"),
    ]
    third = load(warehouse, ORDERS, CsvFile(str(write(tmp_path / "3.csv", "order_id,amount\n3,7\n"))))
    assert (third.columns_added, third.columns_widened, third.rows_quarantined) == ([], [], 0)
    assert column_types(warehouse, "curated", "orders")["amount"] == "double precision"


def test_a_value_that_fits_no_widening_is_quarantined_and_does_not_change_the_column(
    warehouse: str, tmp_path: Path
) -> None:
    load(warehouse, ORDERS, CsvFile(str(write(tmp_path / "1.csv", "order_id,amount\n1,10\n"))))
    result = load(warehouse, ORDERS, CsvFile(str(write(tmp_path / "2.csv", "order_id,amount\n2,n/a\n3,4\n"))))
    assert (result.rows_merged, result.rows_quarantined, result.columns_widened) == (1, 1, [])
    assert column_types(warehouse, "curated", "orders")["amount"] == "bigint"


def test_two_source_columns_with_one_name_fail_the_batch_and_leave_no_trace(warehouse: str, tmp_path: Path) -> None:
    source = CsvFile(str(write(tmp_path / "o.csv", "order_id,Amount,amount\n1,2,3\n")))
    with pytest.raises(ValueError, match="'Amount' and 'amount' are both 'amount'"):
        load(warehouse, ORDERS, source)
    assert rows(warehouse, "SELECT count(*) FROM etl.batches") == [(0,)]
    assert rows(warehouse, "SELECT to_regclass('raw.orders')") == [(None,)]


def test_a_json_file_over_http_keeps_nested_values_as_jsonb(
    warehouse: str, http: tuple[LocalHttp, str], tmp_path: Path
) -> None:
    site, base = http
    records = [{"order_id": 1, "items": [{"sku": "a"}], "gift": True}, {"order_id": 2, "note": "x"}, [1, 2]]
    site.files["/orders.json"] = json.dumps(records).encode()
    result = load(warehouse, ORDERS, JsonFile(f"{base}/orders.json"))
    assert (result.rows_loaded, result.rows_quarantined) == (2, 1)
    assert rows(warehouse, "SELECT order_id, items, gift, note FROM consumption.orders ORDER BY 1") == [
        (1, [{"sku": "a"}], True, None),
        (2, None, None, "x"),
    ]
    assert rows(warehouse, "SELECT reason FROM etl.quarantine") == [("record is a JSON list, not an object",)]
    assert rows(warehouse, "SELECT DISTINCT _source FROM raw.orders") == [(f"{base}/orders.json",)]


def test_newline_delimited_json_from_a_path(warehouse: str, tmp_path: Path) -> None:
    path = write(tmp_path / "o.ndjson", '{"order_id": 1, "amount": 3}\n{"order_id": 2, "amount"\n')
    result = load(warehouse, ORDERS, JsonFile(str(path)))
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    assert rows(warehouse, "SELECT record_number, reason LIKE 'line 2 of % is not JSON%' FROM etl.quarantine") == [
        (2, True)
    ]


def test_a_paginated_api_is_read_incrementally_from_the_cursor_kept_in_postgres(
    warehouse: str, http: tuple[LocalHttp, str]
) -> None:
    site, base = http
    site.records = [{"order_id": i, "updated_at": f"2024-05-0{i}T00:00:00Z"} for i in range(1, 6)]
    api = HttpApi(f"{base}/api/orders", cursor_field="updated_at")
    first = load(warehouse, ORDERS, api, "run-1")
    assert (first.rows_loaded, first.rows_merged) == (5, 5)
    assert len(site.requests) == 3  # pages of 2, 2 and 1 records, following "next"
    assert rows(warehouse, "SELECT cursor FROM etl.cursors") == [("2024-05-05T00:00:00Z",)]

    site.requests.clear()
    assert load(warehouse, ORDERS, api, "run-2").status == "empty"
    assert site.requests == ["/api/orders?since=2024-05-05T00%3A00%3A00Z&page=1"]

    site.records.append({"order_id": 6, "updated_at": "2024-05-06T00:00:00Z"})
    site.records[0] = {"order_id": 1, "updated_at": "2024-05-07T00:00:00Z", "status": "refunded"}
    third = load(warehouse, ORDERS, api, "run-3")
    assert (third.rows_loaded, third.rows_merged, third.columns_added) == (2, 2, ["status"])
    assert rows(warehouse, "SELECT cursor FROM etl.cursors") == [("2024-05-07T00:00:00Z",)]
    assert rows(warehouse, "SELECT count(*), count(status) FROM consumption.orders") == [(6, 1)]


def test_a_consumption_query_is_served_as_a_table(warehouse: str, tmp_path: Path) -> None:
    spec = TableSpec(
        "orders",
        key=("order_id",),
        consumption_sql="SELECT customer, sum(amount) AS total FROM curated.orders GROUP BY customer",
    )
    text = "order_id,customer,amount\n1,ann,10\n2,ann,5\n3,bob,1\n"
    load(warehouse, spec, CsvFile(str(write(tmp_path / "o.csv", text))))
    assert rows(warehouse, "SELECT relkind::text FROM pg_class WHERE oid = 'consumption.orders'::regclass") == [("r",)]
    assert rows(warehouse, "SELECT customer, total FROM consumption.orders ORDER BY 1") == [("ann", 15), ("bob", 1)]


def test_batch_load_runs_from_the_command_line(
    warehouse: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "o.csv", "order_id,amount\n1,10\n")
    argv = ["batch-load", "--csv", str(path), "--table", "orders", "--key", "order_id", "--type", "amount=text"]
    assert main([*argv, "--dsn", warehouse, "--batch-id", "cli-1"]) == 0
    assert json.loads(capsys.readouterr().out)["rows_loaded"] == 1
    assert column_types(warehouse, "curated", "orders")["amount"] == "text"


def test_the_example_flights_load_daily_and_quarantine_the_truncated_line(warehouse: str, tmp_path: Path) -> None:
    day = dt.date(2024, 5, 1)
    path = example.write_flights(day, tmp_path / "flights.csv", rows=200)
    result = load(warehouse, example.FLIGHTS, CsvFile(str(path)), day.isoformat())
    assert (result.rows_loaded, result.rows_merged, result.rows_quarantined) == (199, 199, 1)
    assert example.write_flights(day, tmp_path / "again.csv", rows=200).read_bytes() == path.read_bytes()
    assert rows(warehouse, "SELECT reason FROM etl.quarantine") == [("expected 11 fields, got 5",)]
    assert rows(warehouse, "SELECT count(DISTINCT flight_date) FROM consumption.flights") == [(1,)]


def test_a_well_formed_file_and_a_malformed_one_load_the_same_values(warehouse: str, tmp_path: Path) -> None:
    """A clean file is COPYed as is; one bad row sends the file through the row-checking path instead."""
    clean = 'order_id,note,amount\n1,"",5\n2,"a, b",\n3,"say ""hi""",7\n'
    load(warehouse, TableSpec("clean", key=("order_id",)), CsvFile(str(write(tmp_path / "c.csv", clean))))
    messy = clean + "4,truncated\n"
    result = load(warehouse, TableSpec("messy", key=("order_id",)), CsvFile(str(write(tmp_path / "m.csv", messy))))
    assert result.rows_quarantined == 1
    query = "SELECT order_id, note, amount FROM raw.{} ORDER BY order_id"
    expected = [("1", None, "5"), ("2", "a, b", None), ("3", 'say "hi"', "7")]
    assert rows(warehouse, query.format("clean")) == expected
    assert rows(warehouse, query.format("messy")) == expected


def test_a_load_killed_in_the_middle_leaves_nothing_and_a_rerun_lands_every_row(warehouse: str, tmp_path: Path) -> None:
    """The batch is one transaction: SIGKILL the loader while raw is being COPYed, and no zone keeps a row."""
    count = 1_000_000
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("order_id,amount\n")
        out.writelines(f"{i},{i % 997}\n" for i in range(count))
    argv = ["batch-load", "--csv", str(path), "--table", "orders", "--key", "order_id", "--batch-id", "big-1"]
    loader = subprocess.Popen(
        [sys.executable, "-m", "parse_sources", *argv, "--dsn", warehouse],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    copying = "SELECT count(*) FROM pg_stat_progress_copy WHERE tuples_processed > 0"
    deadline = time.monotonic() + 60
    try:
        while rows(warehouse, copying)[0][0] == 0:
            assert loader.poll() is None, "the loader finished before it could be killed mid-COPY"
            assert time.monotonic() < deadline, "the COPY never started"
            time.sleep(0.01)
        loader.kill()
        loader.wait(timeout=10)
    finally:
        if loader.poll() is None:
            loader.kill()
    while rows(warehouse, "SELECT count(*) FROM pg_stat_progress_copy")[0][0]:  # Postgres ends the orphaned COPY
        assert time.monotonic() < deadline, "the COPY outlived its client"
        time.sleep(0.1)
    for table in ("raw.orders", "curated.orders", "consumption.orders"):
        if rows(warehouse, "SELECT to_regclass(%s)", (table,))[0][0] is not None:
            assert rows(warehouse, f"SELECT count(*) FROM {table}") == [(0,)], table

    assert main([*argv, "--dsn", warehouse]) == 0
    assert rows(warehouse, "SELECT count(*), count(DISTINCT order_id) FROM curated.orders") == [(count, count)]
