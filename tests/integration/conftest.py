"""Integration fixtures: a real, throwaway PostgreSQL 15 cluster built from the host's binaries.

Shared by every integration test (db_connect, the Kafka sink, ETL), so it knows nothing about any of them.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import make_conninfo

from db_connect.app import create_app
from db_connect.settings import Settings

PG_BIN = Path("/usr/lib/postgresql/15/bin")
INIT_SH = Path(__file__).resolve().parents[2] / "stack/postgres/init.sh"
# checkov and gitlab-ci-local, installed by scripts/test.sh outside the repository, so a fresh clone reuses them
TOOLS = Path(os.environ.get("SAWMILL_TOOLS", Path.home() / ".cache" / "sawmill" / "tools"))
SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "integration-superuser"


def free_port() -> int:
    """A TCP port nothing listens on right now (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    data_dir: Path

    def dsn(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        """A libpq connection string; the superuser's unless another user is named."""
        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=dbname,
            user=user or self.user,
            password=password if user else self.password,
        )

    @property
    def superuser_dsn(self) -> str:
        return self.dsn()

    def execute(
        self, query: str, params: Sequence[Any] | None = None, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser in autocommit (so CREATE DATABASE works); return its rows."""
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []


def as_postgres_user(argv: list[str]) -> list[str]:
    """Postgres refuses to run as root; tests do run as root (in CI and in scripts/test.sh)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A new cluster, stopped and deleted on exit. Tests share `postgres`; a test owning a whole cluster uses this."""
    initdb = PG_BIN / "initdb"
    if not initdb.exists():
        pytest.fail(
            f"{initdb} is missing: integration tests need the host's PostgreSQL 15. "
            "Run them through scripts/test.sh, which installs it."
        )
    root = Path(tempfile.mkdtemp(prefix="sawmill-pg-"))
    data_dir, log_file, password_file = root / "data", root / "postgres.log", root / "superuser-password"
    password_file.write_text(SUPERUSER_PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(password_file, "postgres")
    port = free_port()
    server = PostgresServer("127.0.0.1", port, SUPERUSER, SUPERUSER_PASSWORD, data_dir)

    def run(argv: list[str]) -> None:
        result = subprocess.run(as_postgres_user(argv), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = log_file.read_text() if log_file.exists() else ""
            pytest.fail(f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}\n{log}")

    try:
        run(
            [
                str(initdb),
                f"--pgdata={data_dir}",
                f"--username={SUPERUSER}",
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        # Durability off: this cluster lives for one test session.
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        run(
            [
                str(PG_BIN / "pg_ctl"),
                "start",
                "--wait",
                "--timeout=60",
                f"--pgdata={data_dir}",
                f"--log={log_file}",
                f"--options={options}",
            ]
        )
        yield server
    finally:
        if (data_dir / "postmaster.pid").exists():
            subprocess.run(
                as_postgres_user([str(PG_BIN / "pg_ctl"), "stop", "--mode=fast", f"--pgdata={data_dir}"]),
                capture_output=True,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


# --- Kafka: one KRaft broker (combined broker + controller) as a host process --------------------------------------

KAFKA_DIR = Path(__file__).resolve().parents[2] / "kafka"


@dataclass(frozen=True)
class KafkaBroker:
    bootstrap_servers: str
    log_file: Path

    def create_topic(self, name: str, partitions: int = 1) -> str:
        """A new topic (replication 1), ready to produce to when this returns."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)[name].result(timeout=30)
        return name


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """The broker the platform runs, started with the image's own entrypoint from kafka/lib and the host's Java.

    A host process starts in ~3 s and needs no registry or image build; kafka/fetch-jars.sh fills kafka/lib once.
    """
    if shutil.which("java") is None:
        pytest.fail("java is missing: integration tests need Java 17 (apt-get install -y openjdk-17-jre-headless)")
    subprocess.run(["sh", str(KAFKA_DIR / "fetch-jars.sh")], check=True, capture_output=True)
    root = Path(tempfile.mkdtemp(prefix="sawmill-kafka-"))
    port, controller_port = free_port(), free_port()
    log_file = root / "kafka.log"
    env = {
        "PATH": os.environ["PATH"],
        "CLUSTER_ID": "c2F3bWlsbC1pbnRlZ3JhdA",
        "KAFKA_LIBS": str(KAFKA_DIR / "lib"),
        "KAFKA_RUN_DIR": str(root),
        "KAFKA_HEAP_OPTS": "-Xms256m -Xmx1g",
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@127.0.0.1:{controller_port}",
        "KAFKA_LOG_DIRS": str(root / "data"),
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "4",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            ["sh", str(KAFKA_DIR / "docker-entrypoint.sh")], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    broker = KafkaBroker(f"127.0.0.1:{port}", log_file)
    try:
        _wait_for_kafka(broker, process, timeout=60)
        yield broker
    finally:
        stop(process)
        shutil.rmtree(root, ignore_errors=True)


def run_init(server: PostgresServer, **settings: str) -> subprocess.CompletedProcess[str]:
    """The platform's init job (stack/postgres/init.sh) on `server`, as its service runs it (`sh init.sh`), with
    these SAWMILL_* settings."""
    env = {
        "PATH": f"{PG_BIN}:{os.environ['PATH']}",
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "POSTGRES_USER": server.user,
        "POSTGRES_PASSWORD": server.password,
        **settings,
    }
    return subprocess.run(["sh", str(INIT_SH)], env=env, capture_output=True, text=True, timeout=60, check=False)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as Swarm stops a task; SIGKILL if it has not exited within 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for_kafka(broker: KafkaBroker, process: subprocess.Popen[bytes], timeout: float) -> None:
    import time

    from confluent_kafka.admin import AdminClient

    host, port = broker.bootstrap_servers.split(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"kafka exited with {process.returncode}:\n{broker.log_file.read_text()[-3000:]}")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:  # not listening yet
            time.sleep(0.3)
            continue
        if AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10).brokers:
            return
    pytest.fail(f"kafka did not answer within {timeout} s:\n{broker.log_file.read_text()[-3000:]}")


# --- the warehouse as the ETL sees it (batch ETL, Airflow) ----------------------------------------------

ETL_WRITER = "etl_writer"
ETL_WRITER_PASSWORD = "integration-etl-writer"


def writer_database(postgres: PostgresServer, name: str) -> str:
    """Database `name` laid out as the platform's init job lays out the warehouse; the DSN of a writer role.

    The writer has exactly the platform's writer grants (CONNECT, CREATE and TEMPORARY on the database; USAGE
    and CREATE on raw, curated, consumption), so a job passing here as the writer passes on the platform.
    """
    if not postgres.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ETL_WRITER,)):
        postgres.execute(f"CREATE ROLE {ETL_WRITER} LOGIN PASSWORD '{ETL_WRITER_PASSWORD}'")
    postgres.execute(f'CREATE DATABASE "{name}"')
    postgres.execute(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
    postgres.execute(f'GRANT CONNECT, CREATE, TEMPORARY ON DATABASE "{name}" TO {ETL_WRITER}')
    for schema in ("raw", "curated", "consumption"):
        postgres.execute(f"CREATE SCHEMA {schema}", dbname=name)
        postgres.execute(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {ETL_WRITER}", dbname=name)
    return postgres.dsn(name, user=ETL_WRITER, password=ETL_WRITER_PASSWORD)


@pytest.fixture
def warehouse(postgres: PostgresServer) -> Iterator[str]:
    """A fresh warehouse database and the DSN of a writer role (see writer_database)."""
    import uuid

    name = f"warehouse_{uuid.uuid4().hex[:10]}"
    try:
        yield writer_database(postgres, name)
    finally:
        postgres.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


# --- db_connect: a warehouse with the authenticator and API roles the platform's init job creates ---
# (by hand here, in a database of its own on the shared server; tests/integration/test_postgres_init.py runs the init
# job itself, on a cluster of its own, since it owns the database `warehouse` and cluster-wide roles)

DB_CONNECT_PASSWORD = "db-connect-password-9a1e"
DB_CONNECT_API_KEY = "test-api-key-5f0c2b"
DB_CONNECT_JWT_SECRET = "jwt-secret-for-tests-0123456789abcdef"
DB_CONNECT_ROLES_SQL = f"""
CREATE ROLE db_connect LOGIN NOINHERIT PASSWORD '{DB_CONNECT_PASSWORD}';
CREATE ROLE api_anon NOLOGIN;
CREATE ROLE api_reader NOLOGIN;
CREATE ROLE api_writer NOLOGIN;
GRANT api_anon, api_reader, api_writer TO db_connect;
"""
DB_CONNECT_SCHEMAS_SQL = """
CREATE SCHEMA consumption;
CREATE SCHEMA raw;
CREATE SCHEMA db_connect AUTHORIZATION db_connect;
GRANT USAGE ON SCHEMA consumption TO api_anon, api_reader, api_writer;
GRANT TEMPORARY ON DATABASE dbc_warehouse TO api_writer;
"""


@dataclass(frozen=True)
class DbConnectWarehouse:
    """Database `dbc_warehouse` on the shared server, roles as in stack/postgres/init.sh, and secret files."""

    server: PostgresServer
    secrets: Path
    dbname: str = "dbc_warehouse"

    def execute(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.server.execute(query, params, dbname=self.dbname)

    def environment(self) -> dict[str, str]:
        """db_connect's settings as the container gets them, pointing at this database."""
        return {
            "PGHOST": self.server.host,
            "PGPORT": str(self.server.port),
            "PGDATABASE": self.dbname,
            "PGUSER": "db_connect",
            "PGPASSWORD_FILE": str(self.secrets / "db_password"),
            "API_KEY_FILE": str(self.secrets / "api_key"),
            "JWT_SECRET_FILE": str(self.secrets / "jwt_secret"),
        }


def serve_db_connect(warehouse: DbConnectWarehouse) -> tuple[subprocess.Popen[str], str]:
    """What the image runs, `uvicorn db_connect.app:app` configured by environment variables only; and its URL.

    Returns once /health answers 200; the output (stdout and stderr) is the process's stdout pipe.
    """
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")} | warehouse.environment()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "db_connect.app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise AssertionError(f"uvicorn did not become healthy:\n{server.communicate()[0]}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def db_connect_warehouse(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DbConnectWarehouse]:
    secrets = tmp_path_factory.mktemp("db_connect_secrets")
    (secrets / "db_password").write_text(DB_CONNECT_PASSWORD + "\n")
    (secrets / "api_key").write_text(DB_CONNECT_API_KEY + "\n")
    (secrets / "jwt_secret").write_text(DB_CONNECT_JWT_SECRET + "\n")
    postgres.execute("CREATE DATABASE dbc_warehouse")
    postgres.execute(DB_CONNECT_ROLES_SQL)
    warehouse = DbConnectWarehouse(postgres, secrets)
    warehouse.execute(DB_CONNECT_SCHEMAS_SQL)
    yield warehouse
    postgres.execute("DROP DATABASE dbc_warehouse WITH (FORCE)")
    postgres.execute("DROP ROLE db_connect, api_anon, api_reader, api_writer")


@contextmanager
def db_connect_client(
    warehouse: DbConnectWarehouse, setup_sql: str, teardown_sql: str, **settings: Any
) -> Iterator[TestClient]:
    """db_connect in-process with the platform key (api_reader) over setup_sql's objects, dropped afterwards."""
    warehouse.execute(setup_sql)
    try:
        app = create_app(Settings(**warehouse.environment(), **settings))
        with TestClient(app, headers={"X-API-Key": DB_CONNECT_API_KEY}) as client:
            yield client
    finally:
        warehouse.execute(teardown_sql)
