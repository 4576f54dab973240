"""Presto 0.287 as the platform runs it (presto/server on the host's Java 17, started by presto/start.sh with the
config `deploy.py plan` renders: tests/integration/presto_support.py) against a real Postgres laid out by the
platform's init job and a real broker.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import prestodb
import psycopg
import pytest

from kafka.component import HOST_METRICS_FIELDS
from parse_sources.batch import federated
from tests.integration.conftest import KafkaBroker, PostgresServer, running_postgres
from tests.integration.kafka_support import produce, unique
from tests.integration.presto_support import (
    PASSWORD,
    Presto,
    check_presto_settings,
    lay_out_warehouse,
    running_presto,
)


@pytest.fixture(scope="module")
def warehouse() -> Iterator[PostgresServer]:
    """A Postgres of its own, laid out by init.sh with role presto as the platform's only analyst."""
    with running_postgres() as server:
        lay_out_warehouse(server)
        server.execute(
            "SET ROLE kafka; CREATE TABLE raw.hosts (host text PRIMARY KEY, rack text);"
            " INSERT INTO raw.hosts VALUES ('web-1', 'r1'), ('web-2', 'r2');",
            dbname="warehouse",
        )
        yield server


@pytest.fixture(scope="module")
def topic(kafka: KafkaBroker) -> str:
    return kafka.create_topic(unique("presto_metrics"), partitions=2)


@pytest.fixture(scope="module")
def presto(warehouse: PostgresServer, kafka: KafkaBroker, topic: str) -> Iterator[Presto]:
    with running_presto(topic, warehouse, kafka) as presto:
        yield presto


def metric(host: str, n: int) -> tuple[str, dict[str, object]]:
    ts = f"2026-12-03T10:{n // 60:02d}:{n % 60:02d}.000+00:00"
    return f"{host}:{ts}", {"host": host, "ts": ts, "cpu_user": float(n), "procs_running": n, "extra": "ignored"}


def test_the_warehouse_catalog_reads_every_layer_as_the_read_only_role(presto: Presto) -> None:
    assert presto.query("SELECT host, rack FROM warehouse.raw.hosts ORDER BY host") == [
        ["web-1", "r1"],
        ["web-2", "r2"],
    ]
    assert presto.query("SELECT current_user") == [["analyst"]]


def test_a_query_that_writes_through_the_warehouse_catalog_is_refused(
    presto: Presto, warehouse: PostgresServer
) -> None:
    for statement in (
        "INSERT INTO warehouse.raw.hosts VALUES ('web-3', 'r3')",
        "CREATE TABLE warehouse.consumption.copied AS SELECT * FROM warehouse.raw.hosts",
    ):
        with pytest.raises(prestodb.exceptions.PrestoQueryError, match="permission denied"):
            presto.query(statement)
    assert warehouse.execute("SELECT count(*) FROM raw.hosts", dbname="warehouse") == [(2,)]


def test_a_topic_is_a_table_with_its_declared_fields_and_the_internal_columns(
    presto: Presto, kafka: KafkaBroker, topic: str
) -> None:
    produce(kafka.bootstrap_servers, topic, [metric("web-1", n) for n in range(10)])
    table = f'kafka.default."{topic}"'

    columns = [row[0] for row in presto.query(f"SHOW COLUMNS FROM {table}")]
    assert columns[: len(HOST_METRICS_FIELDS)] == list(HOST_METRICS_FIELDS)
    assert {"_partition_id", "_partition_offset", "_message", "_key"} <= set(columns)
    web_1 = f"{table} WHERE host = 'web-1'"
    assert presto.query(f"SELECT count(*), sum(procs_running), max(cpu_user) FROM {web_1}") == [[10, 45, 9.0]]
    assert presto.query(f"SELECT min(ts) FROM {web_1}")[0][0].startswith("2026-12-03 10:00:00")
    message, partition = presto.query(f"SELECT _message, _partition_id FROM {web_1} AND procs_running = 3")[0]
    assert json.loads(message)["data"]["extra"] == "ignored"  # undeclared fields stay in the message
    assert partition in (0, 1)


def test_a_topic_joins_a_warehouse_table_in_one_query(presto: Presto, kafka: KafkaBroker, topic: str) -> None:
    produce(
        kafka.bootstrap_servers,
        topic,
        [metric(host, 50 + n) for host in ("web-1", "web-2", "db-1") for n in range(3)],
    )
    rows = presto.query(
        f'SELECT h.rack, count(*) FROM kafka.default."{topic}" m'
        " JOIN warehouse.raw.hosts h ON h.host = m.host WHERE m.procs_running >= 50 GROUP BY h.rack ORDER BY h.rack"
    )
    assert rows == [["r1", 3], ["r2", 3]]


def test_tpch_is_there_to_try_presto_on(presto: Presto) -> None:
    assert presto.query("SELECT count(*) FROM tpch.tiny.nation") == [[25]]


def test_the_airflow_job_stores_prestos_per_minute_summary_of_a_topic_in_consumption(
    presto: Presto, kafka: KafkaBroker, topic: str, warehouse: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = dt.datetime.now(dt.UTC).replace(second=30, microsecond=0)
    records = [
        (f"db-9:{n}", {"host": "db-9", "ts": now.isoformat(), "cpu_user": 10.0 * n, "cpu_system": 1.0,
                       "mem_available_kb": 1000 - n})
        for n in range(1, 4)
    ]  # fmt: skip
    produce(kafka.bootstrap_servers, topic, records)
    monkeypatch.setenv("PRESTO_HOST", "127.0.0.1")
    monkeypatch.setenv("PRESTO_PORT", str(presto.port))
    dsn = warehouse.dsn("warehouse", user="kafka", password=PASSWORD)

    for _ in range(2):  # a re-run refreshes the same minutes
        with psycopg.connect(dsn) as conn:
            assert federated.summarize_host_metrics(federated.presto_cursor(), conn, topic, hours=24) >= 1

    rows = warehouse.execute(
        f"SELECT minute, samples, cpu_busy_pct, mem_available_kb_min FROM {federated.TABLE} WHERE host = 'db-9'",
        dbname="warehouse",
    )
    assert rows == [(now.replace(second=0, tzinfo=None), 3, 21.0, 997)]


# `up` runs presto/check.sh on the rendered files before Presto deploys: a property from sawmill.toml that Presto
# would refuse at start-up is a config error that names it, and the running Presto is not touched.


def test_a_node_property_presto_does_not_know_is_refused_naming_the_setting_and_the_key(tmp_path: Path) -> None:
    result = check_presto_settings(tmp_path, properties={"query.max-execution-time": "1h", "query.max-exec": "1h"})
    assert result.returncode == 1
    assert "presto.properties: Presto does not know the property 'query.max-exec'; remove it" in result.stderr


def test_a_catalog_property_presto_does_not_know_is_refused_naming_the_catalog(tmp_path: Path) -> None:
    # a Trino key people copy from Trino's docs: Presto 0.287's PostgreSQL connector has no such property
    result = check_presto_settings(tmp_path, catalog_properties={"warehouse": {"postgresql.array-mapping": "AS_ARRAY"}})
    assert result.returncode == 1
    assert "presto.catalog_properties.warehouse: Presto does not know the property 'postgresql.array-mapping'" in (
        result.stderr
    )


def test_a_value_presto_cannot_read_is_refused_with_prestos_reason(tmp_path: Path) -> None:
    result = check_presto_settings(tmp_path, properties={"query.max-execution-time": "soon"})
    assert result.returncode == 1
    assert "presto.properties: Presto refused a value in sawmill.toml: Error: Could not coerce value 'soon'" in (
        result.stderr
    )


def test_properties_presto_knows_pass_on_the_coordinator_and_on_a_worker(tmp_path: Path) -> None:
    result = check_presto_settings(
        tmp_path,
        workers=1,
        properties={"query.max-execution-time": "30m"},
        catalog_properties={"warehouse": {"case-insensitive-name-matching": "true"}},
    )
    assert (result.returncode, result.stderr) == (0, "")
