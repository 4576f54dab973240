"""Presto on a real platform, as an analyst reaches it: presto-python-client over https://presto.localhost through
nginx's basic auth, SQL over the metrics demo's table (warehouse) and topic (kafka). The shared platform runs one
worker, so queries cross containers as they do across nodes.

Only name resolution is simulated: *.localhost resolves to 127.0.0.1 in this process (no /etc/hosts entry), so
the client, its TLS checks and the nextUri links Presto hands back are used unchanged.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import prestodb
import pytest

from tests.e2e.conftest import HTTPS_PORT, Platform

COUNT_TIMEOUT = 120


@pytest.fixture
def localhost_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """*.localhost resolves to 127.0.0.1 here, as browsers and systemd-resolved resolve it."""
    original = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return original(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def presto(platform: Platform, localhost_names: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Connect]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", platform.cafile)
    password = platform.deploy("secrets", "show", "presto_password").stdout.strip()
    yield Connect(password)


class Connect:
    def __init__(self, password: str) -> None:
        self.password = password

    def query(self, sql: str, user: str = "admin") -> list[list[object]]:
        connection = prestodb.dbapi.connect(
            host="presto.localhost",
            port=HTTPS_PORT,
            user=user,
            http_scheme="https",
            auth=prestodb.auth.BasicAuthentication("admin", self.password),
            catalog="tpch",
            schema="tiny",
        )
        cursor = connection.cursor()
        cursor.execute(sql)
        return cursor.fetchall()


def grows(presto: Connect, sql: str) -> tuple[int, int]:
    """The count `sql` answers, first once it is positive, then once it has grown (bounded in time)."""
    deadline = time.monotonic() + COUNT_TIMEOUT
    first = 0
    while time.monotonic() < deadline:
        try:
            first = presto.query(sql)[0][0]
        except prestodb.exceptions.PrestoQueryError as exc:  # the sink has not made the table yet
            if "does not exist" not in str(exc):
                raise
        if first:
            break
        time.sleep(2)
    assert first > 0, f"{sql} answered no rows within {COUNT_TIMEOUT} s"
    later = first
    while later == first and time.monotonic() < deadline:
        time.sleep(2)
        later = presto.query(sql)[0][0]
    return first, later


def test_presto_needs_the_generated_password(platform: Platform) -> None:
    assert platform.get("presto.localhost", "/v1/info").status == 401
    assert platform.get("presto.localhost", "/ui/").status == 401


def test_the_metrics_demo_counts_grow_through_both_catalogs(presto: Connect) -> None:
    first, later = grows(presto, "SELECT count(*) FROM warehouse.raw.host_metrics")
    assert later > first
    first, later = grows(presto, "SELECT count(*) FROM kafka.default.host_metrics")
    assert later > first
    [[hosts, busy]] = presto.query(
        "SELECT count(DISTINCT host), max(cpu_user + cpu_system) FROM kafka.default.host_metrics"
    )
    assert hosts >= 1 and 0 <= busy <= 100


def test_presto_runs_queries_as_the_user_nginx_authenticated(presto: Connect) -> None:
    assert presto.query("SELECT current_user", user="someone-else") == [["admin"]]


def test_the_warehouse_catalog_cannot_write(presto: Connect) -> None:
    with pytest.raises(prestodb.exceptions.PrestoQueryError, match="permission denied"):
        presto.query("CREATE TABLE warehouse.consumption.from_presto AS SELECT 1 AS n")


def test_the_worker_is_an_active_node_of_the_cluster(presto: Connect) -> None:
    workers = "SELECT count(*) FROM system.runtime.nodes WHERE coordinator = false AND state = 'active'"
    assert presto.query(workers) == [[1]]
    assert presto.query("SELECT count(*) FROM tpch.tiny.nation") == [[25]]
