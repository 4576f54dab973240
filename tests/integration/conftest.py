"""Integration fixtures: a real, throwaway PostgreSQL 15 cluster built from the host's binaries.

Shared by every integration test (db_connect, the Kafka sink, ETL), so it knows nothing about any of them.
"""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

PG_BIN = Path("/usr/lib/postgresql/15/bin")
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
