"""Presto as the platform runs it, on the host: presto/server on the host's Java 17, started by presto/start.sh
with the files `deploy.py plan` renders, beside a warehouse laid out by the platform's init job. Shared by the
integration tests and bench/presto.py.

The rendered files name the swarm's services (e.g. sawmill_postgres_server:5432); here those names are swapped
for local addresses, and nothing else is changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import prestodb

from kafka.component import HOST_METRICS_FIELDS
from presto.component import COMPONENT
from stack import plan
from stack.config import load_settings
from tests.integration.conftest import KafkaBroker, PostgresServer, free_port, run_init, stop

PRESTO_DIR = Path(__file__).resolve().parents[2] / "presto"
PASSWORD = "presto-integration"
SERVER = PRESTO_DIR / "server"
START_TIMEOUT = 180
# rendered file -> where the coordinator's container has it (presto/stack.yml.j2)
ETC = {
    "coordinator.properties": "config.properties",
    "jvm.config": "jvm.config",
    "log.properties": "log.properties",
    "catalog/warehouse.properties": "catalog/warehouse.properties",
    "catalog/kafka.properties": "catalog/kafka.properties",
    "catalog/tpch.properties": "catalog/tpch.properties",
    "kafka-tables": "kafka-tables",
}


@dataclass(frozen=True)
class Presto:
    port: int
    pid: int
    log_file: Path
    started_s: float  # from starting the process to the first answered query

    def query(self, sql: str, user: str = "analyst") -> list[list[object]]:
        cursor = prestodb.dbapi.connect(host="127.0.0.1", port=self.port, user=user, catalog="tpch").cursor()
        cursor.execute(sql)
        return cursor.fetchall()


def lay_out_warehouse(server: PostgresServer) -> None:
    """The platform's init job on `server`, with role presto as the only analyst and kafka as the writer."""
    for role in ("presto", "kafka"):
        server.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    result = run_init(server, SAWMILL_WAREHOUSE_ANALYSTS="presto", SAWMILL_WAREHOUSE_WRITERS="kafka")
    assert result.returncode == 0, result.stderr


def rendered_config(topic: str, warehouse: PostgresServer, kafka: KafkaBroker, port: int) -> dict[str, str]:
    """The presto files `deploy.py plan` renders for a platform declaring `topic` (the metrics demo's fields),
    pointed at these servers."""
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


@contextmanager
def running_presto(topic: str, warehouse: PostgresServer, kafka: KafkaBroker) -> Iterator[Presto]:
    """A coordinator (running queries itself, as with presto.workers = 0) until the block ends."""
    _lay_out_server()
    root = Path(tempfile.mkdtemp(prefix="sawmill-presto-"))
    port = free_port()
    files = rendered_config(topic, warehouse, kafka, port)
    for name, target in ETC.items():
        (root / "etc" / target).parent.mkdir(parents=True, exist_ok=True)
        (root / "etc" / target).write_text(files[name])
    (root / "password").write_text(PASSWORD)
    env = {
        "PATH": os.environ["PATH"],
        "PRESTO_HOME": str(SERVER),
        "PRESTO_ETC": str(root / "etc"),
        "PRESTO_DATA": str(root / "data"),
        "PRESTO_NODE_ADDRESS": "127.0.0.1",
        "PRESTO_NODE_ID": "integration",
        "PRESTO_DB_PASSWORD_FILE": str(root / "password"),
    }
    log_file = root / "presto.log"
    started = time.monotonic()
    with log_file.open("wb") as log:
        process = subprocess.Popen(["sh", str(PRESTO_DIR / "start.sh")], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_it_answers(port, process, log_file)
        yield Presto(port, process.pid, log_file, time.monotonic() - started)
    finally:
        stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_it_answers(port: int, process: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"presto exited with {process.returncode}:\n{log_file.read_text()[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/info", timeout=2).json()["starting"] is False:
                # queries run once the coordinator has seen its own catalogs announced (a few seconds later)
                cursor = prestodb.dbapi.connect(host="127.0.0.1", port=port, user="probe").cursor()
                cursor.execute("SELECT count(*) FROM tpch.tiny.nation")
                return
        except (httpx.HTTPError, prestodb.exceptions.PrestoQueryError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"presto answered no query within {START_TIMEOUT} s:\n{log_file.read_text()[-4000:]}")


def check_presto_settings(root: Path, **presto: object) -> subprocess.CompletedProcess[str]:
    """Run presto/check.sh as `up` does before Presto deploys, on the files rendered for these presto settings,
    laid out under `root` as the Check mounts them under /opt/sawmill (Presto on the host's Java)."""
    _lay_out_server()
    files = plan.make_plan(load_settings(presto=presto)).component("presto").files
    port = f"http-server.http.port={free_port()}"
    (check,) = COMPONENT.checks
    for name, target in check.files.items():
        path = root / Path(target).relative_to("/opt/sawmill")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[name].replace("http-server.http.port=8080", port))
    env = {"PATH": os.environ["PATH"], "PRESTO_HOME": str(SERVER), "PRESTO_CHECK_ROOT": str(root)}
    return subprocess.run(["sh", str(root / "check.sh")], env=env, capture_output=True, text=True, timeout=600)


def _lay_out_server() -> None:
    if shutil.which("java") is None:
        raise RuntimeError("java is missing: Presto needs Java 17 (apt-get install -y openjdk-17-jre-headless)")
    subprocess.run(["sh", str(PRESTO_DIR / "fetch-server.sh")], check=True, capture_output=True)
