"""Losing a worker: a platform spread over three simulated hosts keeps answering through nginx.

Postgres, db_connect at three replicas and the webserver, deployed by `deploy.py up --hosts` over SSH (the
images built on this machine, loaded into the manager, copied to the workers by `up`). Then a worker is stopped
as a host would die, under a poller that reads through the entrance every 0.1 s: its tasks are started
elsewhere, and no request fails. Started again, it rejoins the swarm by itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from stack import http
from tests.nodes.simulated import DEPLOY_USER, PlatformOnNodes, SimulatedNodes, platform_on_nodes, simulated_nodes
from tests.poller import Poller

PREFIX = "nodeloss"
RECOVERY_TIMEOUT_S = 180
NODES = ("manager-1", "worker-1", "worker-2")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedNodes]:
    with simulated_nodes() as nodes:
        nodes.add(*NODES)
        yield nodes


@pytest.fixture(scope="module")
def platform(sim: SimulatedNodes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformOnNodes]:
    work = tmp_path_factory.mktemp("platform")
    platform = platform_on_nodes(sim, work, PREFIX, ["postgres", "db_connect", "webserver"], db_connect__replicas="3")
    formed = platform.deploy("nodes", str(platform.hosts), "--ssh-user", "deploy")
    assert formed.returncode == 0, formed.stderr
    started = time.monotonic()
    result = platform.up()
    print(f"\ncold up of postgres, db_connect x3 and the webserver on 3 nodes: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stderr[-4000:]
    yield platform
    platform.deploy("down", "--purge", "--hosts", str(platform.hosts), "--ssh-user", DEPLOY_USER)


def services(platform: PlatformOnNodes) -> dict[str, dict]:
    status = platform.deploy("status", "--json", timeout=120)
    assert status.returncode == 0, status.stderr
    return {f"{row['component']}/{row['service']}": row for row in json.loads(status.stdout)["services"]}


def health_poller(platform: PlatformOnNodes) -> Poller:
    """GET https://api.localhost/health through the manager's door every 0.1 s, counting failures."""
    cafile = str(platform.hosts.parent / "build" / "ca.crt")
    address = platform.manager.address
    return Poller(lambda: http.get("api.localhost", 443, "/health", cafile=cafile, timeout=10, address=address).status)


def test_every_service_is_healthy_and_db_connect_runs_on_every_node(platform: PlatformOnNodes) -> None:
    rows = services(platform)
    assert {name: row["health"] for name, row in rows.items() if row["health"] != "completed"} == {
        name: "healthy" for name, row in rows.items() if row["health"] != "completed"
    }
    assert sorted(rows["db_connect/api"]["nodes"].split(",")) == sorted(NODES)
    assert rows["webserver/door"]["nodes"] == "manager-1"  # where `up` labelled: the entrance
    assert rows["webserver/nginx"]["nodes"] == "manager-1"  # both replicas beside it


def test_losing_a_worker_drops_no_request_and_its_tasks_start_elsewhere(
    sim: SimulatedNodes, platform: PlatformOnNodes
) -> None:
    manager = sim.nodes["manager-1"]
    with health_poller(platform) as poller:
        time.sleep(3)
        lost = time.monotonic()
        sim.nodes["worker-2"].kill()
        deadline = lost + RECOVERY_TIMEOUT_S
        while True:
            listed = manager.docker("service", "ps", f"{PREFIX}_db_connect_api", "--filter", "desired-state=running",
                                    "--format", "{{.Node}} {{.CurrentState}}")  # fmt: skip
            running = [line.split()[0] for line in listed.splitlines() if " Running " in f" {line} "]
            if len(running) == 3 and "worker-2" not in running:
                break
            assert time.monotonic() < deadline, f"db_connect not back to 3 replicas:\n{listed}"
            time.sleep(1)
        recovered = time.monotonic() - lost
        time.sleep(5)
    print(
        f"\nworker-2 lost: db_connect at 3 replicas again after {recovered:.1f} s; {poller.ok} reads through nginx"
        f" ok, {poller.failed} failed {poller.errors[:3]}, slowest {poller.slowest:.1f} s"
    )
    assert poller.ok > 50
    assert poller.failed == 0, poller.errors[:5]


def test_the_lost_worker_comes_back_into_the_swarm(sim: SimulatedNodes, platform: PlatformOnNodes) -> None:
    """As a host that rebooted: nothing is run for it (no `deploy.py nodes`); the manager lists it ready again, and
    the platform still answers through the entrance."""
    manager, lost = sim.nodes["manager-1"], sim.nodes["worker-2"]
    assert manager.docker("node", "inspect", lost.name, "--format", "{{.Status.State}}") == "down"
    started = time.monotonic()
    lost.start()
    while (state := manager.docker("node", "inspect", lost.name, "--format", "{{.Status.State}}")) != "ready":
        assert time.monotonic() < started + RECOVERY_TIMEOUT_S, f"worker-2 is {state} {RECOVERY_TIMEOUT_S} s on"
        time.sleep(1)
    print(f"\nworker-2 started again: ready in the swarm after {time.monotonic() - started:.1f} s")
    cafile = str(platform.hosts.parent / "build" / "ca.crt")
    assert http.get("api.localhost", 443, "/health", cafile=cafile, address=manager.address).status == 200
