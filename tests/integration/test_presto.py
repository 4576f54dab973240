"""Presto 0.287 as the platform runs it (presto/server on the host's Java 17, started by presto/start.sh with the
config `deploy.py plan` renders) against a real Postgres laid out by the platform's init job and a real broker.

The rendered files name the swarm's services (e.g. sawmill_postgres_server:5432); here those names are swapped
for this test's addresses, and nothing else is changed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import prestodb
import psycopg
import pytest

from kafka.component import HOST_METRICS_FIELDS
from parse_sources.batch import federated
from stack import plan
from stack.config import load_settings
from tests.integration.conftest import PG_BIN, KafkaBroker, PostgresServer, free_port, running_postgres
from tests.integration.kafka_support import produce, unique

PRESTO_DIR = Path(__file__).resolve().parents[2] / "presto"
INIT_SH = PRESTO_DIR.parent / "stack/postgres/init.sh"
PASSWORD = "presto-integration"
START_TIMEOUT = 180


@dataclass(frozen=True)
class Presto:
    port: int
    topic: str
    log_file: Path

    def query(self, sql: str, user: str = "analyst") -> list[list[object]]:
        cursor = prestodb.dbapi.connect(host="127.0.0.1", port=self.port, user=user, catalog="tpch").cursor()
        cursor.execute(sql)
        return cursor.fetchall()


@pytest.fixture(scope="module")
def warehouse() -> Iterator[PostgresServer]:
    """A Postgres of its own, laid out by init.sh with role presto as the platform's only analyst."""
    with running_postgres() as server:
        for role in ("presto", "kafka"):
            server.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        env = {
            "PATH": f"{PG_BIN}:{os.environ['PATH']}",
            "PGHOST": server.host,
            "PGPORT": str(server.port),
            "POSTGRES_USER": server.user,
            "POSTGRES_PASSWORD": server.password,
            "SAWMILL_WAREHOUSE_ANALYSTS": "presto",
            "SAWMILL_WAREHOUSE_WRITERS": "kafka",
        }
        result = subprocess.run(["sh", str(INIT_SH)], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        server.execute(
            "SET ROLE kafka; CREATE TABLE raw.hosts (host text PRIMARY KEY, rack text);"
            " INSERT INTO raw.hosts VALUES ('web-1', 'r1'), ('web-2', 'r2');",
            dbname="warehouse",
        )
        yield server


def rendered_config(topic: str, warehouse: PostgresServer, kafka: KafkaBroker, port: int) -> dict[str, str]:
    """The presto files `deploy.py plan` renders for a platform declaring `topic`, pointed at this test's servers."""
    settings = load_settings(kafka={"topics": {topic: {"partitions": 2, "fields": HOST_METRICS_FIELDS}}, "sinks": []})
    files = plan.make_plan(settings).component("presto").files
    addresses = {
        "sawmill_postgres_server:5432": f"127.0.0.1:{warehouse.port}",
        "sawmill_kafka_broker-0:9092": kafka.bootstrap_servers,
        "sawmill-presto-coordinator:8080": f"127.0.0.1:{port}",
        "http-server.http.port=8080": f"http-server.http.port={port}",
    }
    for name, content in files.items():
        for swarm_name, here in addresses.items():
            content = content.replace(swarm_name, here)
        files[name] = content
    return files


def start(files: dict[str, str], root: Path) -> subprocess.Popen[bytes]:
    """presto/start.sh as the coordinator's container runs it: etc/ laid out as the stack mounts the configs."""
    etc = root / "etc"
    for name, target in {
        "coordinator.properties": "config.properties",
        "jvm.config": "jvm.config",
        "log.properties": "log.properties",
        "catalog/warehouse.properties": "catalog/warehouse.properties",
        "catalog/kafka.properties": "catalog/kafka.properties",
        "catalog/tpch.properties": "catalog/tpch.properties",
        "kafka-tables": "kafka-tables",
    }.items():
        (etc / target).parent.mkdir(parents=True, exist_ok=True)
        (etc / target).write_text(files[name])
    (root / "password").write_text(PASSWORD)
    env = {
        "PATH": os.environ["PATH"],
        "PRESTO_HOME": str(PRESTO_DIR / "server"),
        "PRESTO_ETC": str(etc),
        "PRESTO_DATA": str(root / "data"),
        "PRESTO_NODE_ADDRESS": "127.0.0.1",
        "PRESTO_NODE_ID": "integration",
        "PRESTO_DB_PASSWORD_FILE": str(root / "password"),
    }
    with (root / "presto.log").open("wb") as log:
        return subprocess.Popen(["sh", str(PRESTO_DIR / "start.sh")], env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_active(port: int, process: subprocess.Popen[bytes], log_file: Path) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"presto exited with {process.returncode}:\n{log_file.read_text()[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/info", timeout=2).json()["starting"] is False:
                # queries run once the coordinator has seen its own catalogs announced (a few seconds later)
                prestodb.dbapi.connect(host="127.0.0.1", port=port, user="probe").cursor().execute(
                    "SELECT count(*) FROM warehouse.raw.hosts"
                )
                return
        except (httpx.HTTPError, prestodb.exceptions.PrestoQueryError):
            pass
        time.sleep(1)
    pytest.fail(f"presto had not started within {START_TIMEOUT} s:\n{log_file.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def presto(warehouse: PostgresServer, kafka: KafkaBroker) -> Iterator[Presto]:
    if shutil.which("java") is None:
        pytest.fail("java is missing: integration tests need Java 17 (apt-get install -y openjdk-17-jre-headless)")
    subprocess.run(["sh", str(PRESTO_DIR / "fetch-server.sh")], check=True, capture_output=True)
    topic = kafka.create_topic(unique("presto_metrics"), partitions=2)
    root = Path(tempfile.mkdtemp(prefix="sawmill-presto-"))
    port = free_port()
    process = start(rendered_config(topic, warehouse, kafka, port), root)
    try:
        wait_active(port, process, root / "presto.log")
        yield Presto(port, topic, root / "presto.log")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


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
    presto: Presto, kafka: KafkaBroker
) -> None:
    produce(kafka.bootstrap_servers, presto.topic, [metric("web-1", n) for n in range(10)])
    table = f'kafka.default."{presto.topic}"'

    columns = [row[0] for row in presto.query(f"SHOW COLUMNS FROM {table}")]
    assert columns[: len(HOST_METRICS_FIELDS)] == list(HOST_METRICS_FIELDS)
    assert {"_partition_id", "_partition_offset", "_message", "_key"} <= set(columns)
    web_1 = f"{table} WHERE host = 'web-1'"
    assert presto.query(f"SELECT count(*), sum(procs_running), max(cpu_user) FROM {web_1}") == [[10, 45, 9.0]]
    assert presto.query(f"SELECT min(ts) FROM {web_1}")[0][0].startswith("2026-12-03 10:00:00")
    message, partition = presto.query(f"SELECT _message, _partition_id FROM {web_1} AND procs_running = 3")[0]
    assert json.loads(message)["data"]["extra"] == "ignored"  # undeclared fields stay in the message
    assert partition in (0, 1)


def test_a_topic_joins_a_warehouse_table_in_one_query(presto: Presto, kafka: KafkaBroker) -> None:
    produce(
        kafka.bootstrap_servers,
        presto.topic,
        [metric(host, 50 + n) for host in ("web-1", "web-2", "db-1") for n in range(3)],
    )
    rows = presto.query(
        f'SELECT h.rack, count(*) FROM kafka.default."{presto.topic}" m'
        " JOIN warehouse.raw.hosts h ON h.host = m.host WHERE m.procs_running >= 50 GROUP BY h.rack ORDER BY h.rack"
    )
    assert rows == [["r1", 3], ["r2", 3]]


def test_tpch_is_there_to_try_presto_on(presto: Presto) -> None:
    assert presto.query("SELECT count(*) FROM tpch.tiny.nation") == [[25]]


def test_the_airflow_job_stores_prestos_per_minute_summary_of_a_topic_in_consumption(
    presto: Presto, kafka: KafkaBroker, warehouse: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = dt.datetime.now(dt.UTC).replace(second=30, microsecond=0)
    records = [
        (f"db-9:{n}", {"host": "db-9", "ts": now.isoformat(), "cpu_user": 10.0 * n, "cpu_system": 1.0,
                       "mem_available_kb": 1000 - n})
        for n in range(1, 4)
    ]  # fmt: skip
    produce(kafka.bootstrap_servers, presto.topic, records)
    monkeypatch.setenv("PRESTO_HOST", "127.0.0.1")
    monkeypatch.setenv("PRESTO_PORT", str(presto.port))
    dsn = warehouse.dsn("warehouse", user="kafka", password=PASSWORD)

    for _ in range(2):  # a re-run refreshes the same minutes
        with psycopg.connect(dsn) as conn:
            assert federated.summarize_host_metrics(federated.presto_cursor(), conn, presto.topic, hours=24) >= 1

    rows = warehouse.execute(
        f"SELECT minute, samples, cpu_busy_pct, mem_available_kb_min FROM {federated.TABLE} WHERE host = 'db-9'",
        dbname="warehouse",
    )
    assert rows == [(now.replace(second=0, tzinfo=None), 3, 21.0, 997)]
