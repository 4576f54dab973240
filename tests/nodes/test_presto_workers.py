"""Presto's workers on several nodes: a coordinator and two workers deployed by `up --hosts` onto three simulated
hosts, the workers held to the two nodes the hosts list labels `compute` (presto.worker_label; Swarm spreads them
over those), find the coordinator across the overlay network, and run an analyst's query through nginx, asked
with presto-python-client as from a laptop.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import prestodb
import pytest

from tests.nodes.simulated import DEPLOY_USER, PlatformOnNodes, platform_on_nodes, simulated_nodes

PREFIX = "nodepresto"
ROLES = {"manager-1": "manager", "worker-1": "worker", "worker-2": "worker"}
NODES = tuple(ROLES)
LABEL = "compute"  # presto.worker_label: the hosts list puts it on the two workers
LABELLED = ("worker-1", "worker-2")
WORKERS = 2
COMPONENTS = ["postgres", "presto", "webserver"]
READY_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformOnNodes]:
    with simulated_nodes() as sim:
        sim.add(*NODES)
        work = tmp_path_factory.mktemp("platform")
        platform = platform_on_nodes(sim, work, PREFIX, COMPONENTS, presto__workers=str(WORKERS), presto__heap_mb="768",
                                     presto__worker_label=LABEL)  # fmt: skip
        sim.hosts_file(platform.hosts, ROLES, {name: {LABEL: "true"} for name in LABELLED})
        formed = platform.deploy("nodes", str(platform.hosts), "--ssh-user", DEPLOY_USER)
        assert formed.returncode == 0, formed.stderr
        started = time.monotonic()
        result = platform.up()
        print(
            f"\ncold up of {', '.join(COMPONENTS)} ({WORKERS} Presto workers) on 3 nodes:"
            f" {time.monotonic() - started:.1f} s"
        )
        assert result.returncode == 0, result.stderr[-4000:]
        yield platform
        platform.deploy("down", "--purge", "--hosts", str(platform.hosts), "--ssh-user", DEPLOY_USER)


@pytest.fixture
def presto(platform: PlatformOnNodes, monkeypatch: pytest.MonkeyPatch) -> prestodb.dbapi.Connection:
    """presto-python-client at https://presto.localhost, which resolves to the manager's door (as DNS would)."""
    original = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if isinstance(host, str) and host.endswith(".localhost"):
            host = platform.manager.address
        return original(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(platform.hosts.parent / "build" / "ca.crt"))
    password = platform.deploy("secrets", "show", "presto_password").stdout.strip()
    return prestodb.dbapi.connect(host="presto.localhost", port=443, user="analyst", http_scheme="https",
                                  auth=prestodb.auth.BasicAuthentication("admin", password), catalog="tpch",
                                  schema="tiny")  # fmt: skip


def query(connection: prestodb.dbapi.Connection, sql: str) -> tuple[list[list[object]], str]:
    """The rows and the query's ID."""
    cursor = connection.cursor()
    cursor.execute(sql)
    rows = cursor.fetchall()
    return rows, cursor.stats["queryId"]


def test_the_workers_run_one_on_each_node_labelled_for_them(platform: PlatformOnNodes) -> None:
    status = platform.deploy("status", "--json", timeout=120)
    assert status.returncode == 0, status.stderr
    rows = {r["service"]: r for r in json.loads(status.stdout)["services"] if r["component"] == "presto"}
    assert rows["worker"]["health"] == "healthy"
    assert sorted(rows["worker"]["nodes"].split(",")) == sorted(LABELLED)  # one on each labelled node


def test_a_query_through_nginx_runs_on_the_workers_of_both_nodes(presto: prestodb.dbapi.Connection) -> None:
    """With workers, the coordinator schedules no work on itself (presto/coordinator.properties): the query's tasks
    all run on the workers, which Swarm put on two nodes."""
    workers = "SELECT node_id FROM system.runtime.nodes WHERE state = 'active' AND NOT coordinator"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(active := query(presto, workers)[0]) < WORKERS:
        assert time.monotonic() < deadline, f"{len(active)} of {WORKERS} workers active after {READY_TIMEOUT_S} s"
        time.sleep(2)
    counted, query_id = query(presto, "SELECT count(*) FROM lineitem")
    assert counted == [[60175]]  # TPC-H's lineitem at scale 0.01
    tasks, _ = query(presto, f"SELECT DISTINCT node_id FROM system.runtime.tasks WHERE query_id = '{query_id}'")
    assert {t[0] for t in tasks} == {w[0] for w in active}
