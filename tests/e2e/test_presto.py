"""Presto on a real platform, as an analyst reaches it: presto-python-client over https://presto.localhost through
nginx's basic auth, SQL over the metrics demo's table (warehouse) and topic (kafka). The shared platform runs one
worker, so queries cross containers as they do across nodes.

Only name resolution is simulated: *.localhost resolves to 127.0.0.1 in this process (no /etc/hosts entry), so
the client, its TLS checks and the nextUri links Presto hands back are used unchanged.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import prestodb
import pytest
from python_on_whales import docker

from tests.e2e.conftest import HTTPS_PORT, Platform, running_container, service_versions

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


WORKERS_ACTIVE = "SELECT count(*) FROM system.runtime.nodes WHERE coordinator = false AND state = 'active'"


def test_a_worker_killed_mid_query_fails_that_query_clearly_and_the_next_runs_once_it_is_back(
    platform: Platform, presto: Connect
) -> None:
    assert presto.query(WORKERS_ACTIVE) == [[1]]
    errors: list[Exception] = []

    def long_query() -> None:
        try:
            presto.query("SELECT sum(extendedprice * discount) FROM tpch.sf100.lineitem")  # hours on one worker
        except Exception as exc:  # the failure is the point; the main thread asserts on it
            errors.append(exc)

    runner = threading.Thread(target=long_query, daemon=True)
    runner.start()
    running = "SELECT count(*) FROM system.runtime.queries WHERE state = 'RUNNING' AND query LIKE '%sf100.lineitem%'"
    deadline = time.monotonic() + 60
    while presto.query(running) != [[2]] and time.monotonic() < deadline:  # itself and the long query
        assert not errors, f"the long query failed before its worker was killed: {errors}"
        time.sleep(1)
    assert presto.query(running) == [[2]], "the long query was not running within 60 s"
    docker.kill(running_container(f"{platform.prefix}_presto_worker"))

    # query.remote-task.max-error-duration = 1m (presto/coordinator.properties.j2): ~61 s measured
    runner.join(timeout=120)
    assert not runner.is_alive(), "the query went on for 120 s after its worker was killed"
    assert len(errors) == 1 and isinstance(errors[0], prestodb.exceptions.PrestoQueryError)
    assert errors[0].error_name == "TOO_MANY_REQUESTS_FAILED", errors[0]
    assert "too many errors talking to a worker node" in errors[0].message
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # Swarm starts a new worker task, which announces itself
        try:
            if presto.query(WORKERS_ACTIVE) == [[1]] and presto.query("SELECT count(*) FROM tpch.tiny.nation") == [
                [25]
            ]:
                return
        except prestodb.exceptions.PrestoQueryError:
            pass
        time.sleep(3)
    pytest.fail("no query succeeded within 180 s of the worker's restart")


def test_a_property_presto_does_not_know_stops_up_before_anything_changes(platform: Platform, presto: Connect) -> None:
    before = service_versions()
    result = platform.deploy("up", check=False, SAWMILL_PRESTO__PROPERTIES=json.dumps({"query.max-exec": "1h"}))
    assert result.returncode == 1
    assert "presto.properties: Presto does not know the property 'query.max-exec'" in result.stdout + result.stderr
    assert service_versions() == before
    assert presto.query("SELECT count(*) FROM tpch.tiny.nation") == [[25]]


def test_deploy_py_presto_runs_sql_in_the_coordinator_as_the_readme_shows(platform: Platform) -> None:
    result = platform.deploy("presto", "--", "--execute", "SELECT count(*) FROM tpch.tiny.nation")
    assert result.stdout.strip() == '"25"'
