"""Losing a worker: a platform spread over three simulated hosts keeps answering through nginx, and its stream
loses no row.

Postgres, Kafka with three brokers (one per node, placed by `up`), the metrics demo and its sink, db_connect at
three replicas and the webserver, deployed by `deploy.py up --hosts` over SSH (the images built on this machine,
loaded into the manager, copied to the workers by `up`). Then a worker is killed as a host would die, under a
poller that reads through the entrance every 0.1 s: its stateless tasks start elsewhere, no request fails, the two
other brokers keep a quorum leader and the demo's rows keep landing. Started again, the worker rejoins the swarm by
itself and its broker catches up; every sample the demo took is then in Postgres exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from stack import http
from tests import kafka_tools
from tests.nodes.simulated import (
    DEPLOY_USER,
    Node,
    PlatformOnNodes,
    SimulatedNodes,
    platform_on_nodes,
    simulated_nodes,
)
from tests.poller import Poller

PREFIX = "nodeloss"
RECOVERY_TIMEOUT_S = 180
NODES = ("manager-1", "worker-1", "worker-2")
BROKERS = 3
SAMPLE_EVERY_S = 1  # the metrics demo's interval
COMPONENTS = ["postgres", "kafka", "db_connect", "webserver"]
SETTINGS = {
    "db_connect__replicas": "3",
    "kafka__brokers": str(BROKERS),
    "kafka__heap_mb": "256",
    "kafka__metrics_interval": str(SAMPLE_EVERY_S),
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedNodes]:
    with simulated_nodes() as nodes:
        nodes.add(*NODES)
        yield nodes


@pytest.fixture(scope="module")
def platform(sim: SimulatedNodes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformOnNodes]:
    work = tmp_path_factory.mktemp("platform")
    platform = platform_on_nodes(sim, work, PREFIX, COMPONENTS, **SETTINGS)
    formed = platform.deploy("nodes", str(platform.hosts), "--ssh-user", "deploy")
    assert formed.returncode == 0, formed.stderr
    started = time.monotonic()
    result = platform.up()
    print(f"\ncold up of {', '.join(COMPONENTS)} on 3 nodes: {time.monotonic() - started:.1f} s")
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


def container_of(node: Node, service: str) -> str:
    """The ID of `service`'s task container running on `node`."""
    found = node.docker("ps", "--quiet", "--filter", f"label=com.docker.swarm.service.name={PREFIX}_{service}")
    assert found, f"no {service} container on {node.name}"
    return found.split()[0]


def in_broker(node: Node, broker: int) -> kafka_tools.Run:
    """Runs a command inside broker `broker`'s container on `node`."""
    return lambda argv: node.docker("exec", container_of(node, f"kafka_broker-{broker}"), *argv)


def psql(platform: PlatformOnNodes, sql: str) -> str:
    """SQL as the superuser in the warehouse, inside Postgres's container (on the manager, where `up` pinned it)."""
    container = container_of(platform.manager, "postgres_server")
    return platform.manager.docker("exec", container, "psql", "-U", "postgres", "-d", "warehouse", "-tAc", sql)


def rows(platform: PlatformOnNodes) -> int:
    found = psql(platform, "SELECT to_regclass('raw.host_metrics') IS NOT NULL") == "t"
    return int(psql(platform, "SELECT count(*) FROM raw.host_metrics")) if found else 0


def wait_until(condition: Callable[[], bool], what: str, seconds: float = RECOVERY_TIMEOUT_S) -> float:
    """Seconds until `condition` held; fails the test with `what` after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() < started + seconds, f"{what}: not within {seconds:.0f} s"
        time.sleep(1)
    return time.monotonic() - started


@dataclass
class Loss:
    """What the loss test did, for the tests after it."""

    worker: str = ""
    broker: int = -1
    producer: str = ""  # the node the metrics demo ran on


@pytest.fixture(scope="module")
def loss() -> Loss:
    return Loss()


def test_every_service_is_healthy_with_db_connect_on_every_node_and_one_broker_per_node(
    platform: PlatformOnNodes,
) -> None:
    listed = services(platform)
    assert {name: row["health"] for name, row in listed.items() if row["health"] != "completed"} == {
        name: "healthy" for name, row in listed.items() if row["health"] != "completed"
    }
    assert sorted(listed["db_connect/api"]["nodes"].split(",")) == sorted(NODES)
    assert listed["webserver/door"]["nodes"] == "manager-1"  # where `up` labelled: the entrance
    assert listed["webserver/nginx"]["nodes"] == "manager-1"  # both replicas beside it
    assert sorted(listed[f"kafka/broker-{b}"]["nodes"] for b in range(BROKERS)) == sorted(NODES)
    assert listed["kafka/broker-0"]["nodes"] == "manager-1"


def test_losing_a_worker_drops_no_request_keeps_a_kafka_leader_and_its_tasks_start_elsewhere(
    sim: SimulatedNodes, platform: PlatformOnNodes, loss: Loss
) -> None:
    """The worker lost is one the metrics demo does not run on: its samples are the record of what was sent."""
    listed = services(platform)
    loss.producer = listed["kafka/metrics-demo"]["nodes"]
    loss.worker = next(n for n in NODES if n.startswith("worker") and n != loss.producer)
    loss.broker = next(b for b in range(BROKERS) if listed[f"kafka/broker-{b}"]["nodes"] == loss.worker)
    manager = sim.nodes["manager-1"]
    on_manager = in_broker(manager, 0)
    wait_until(lambda: rows(platform) > 0, "the metrics demo's first rows")
    with health_poller(platform) as poller:
        time.sleep(3)
        lost = time.monotonic()
        sim.nodes[loss.worker].kill()

        def db_connect_back() -> bool:
            listed = manager.docker("service", "ps", f"{PREFIX}_db_connect_api", "--filter", "desired-state=running",
                                    "--format", "{{.Node}} {{.CurrentState}}")  # fmt: skip
            running = [line.split()[0] for line in listed.splitlines() if " Running " in f" {line} "]
            return len(running) == 3 and loss.worker not in running

        wait_until(db_connect_back, "db_connect back to 3 replicas")
        recovered = time.monotonic() - lost
        leader, voters = kafka_tools.quorum(on_manager)
        before = rows(platform)
        flowing = wait_until(lambda: rows(platform) > before, f"new rows without broker-{loss.broker}")
        time.sleep(3)
    print(
        f"\n{loss.worker} lost (broker-{loss.broker}): db_connect at 3 replicas again after {recovered:.1f} s;"
        f" {poller.ok} reads through nginx ok, {poller.failed} failed {poller.errors[:3]}, slowest"
        f" {poller.slowest:.1f} s; quorum leader broker-{leader}; new rows {flowing:.1f} s after"
    )
    assert poller.ok > 50
    assert poller.failed == 0, poller.errors[:5]
    assert voters == list(range(BROKERS)) and leader != loss.broker


def test_the_lost_worker_comes_back_into_the_swarm_and_its_broker_catches_up(
    sim: SimulatedNodes, platform: PlatformOnNodes, loss: Loss
) -> None:
    """As a host that rebooted: nothing is run for it (no `deploy.py nodes`); the manager lists it ready again, its
    broker's task starts there again (its log is there) and follows the quorum, and the platform still answers."""
    manager, lost = sim.nodes["manager-1"], sim.nodes[loss.worker]
    assert manager.docker("node", "inspect", lost.name, "--format", "{{.Status.State}}") == "down"
    started = time.monotonic()
    lost.start()
    wait_until(
        lambda: manager.docker("node", "inspect", lost.name, "--format", "{{.Status.State}}") == "ready",
        f"{lost.name} ready in the swarm",
    )
    ready = time.monotonic() - started
    caught_up = wait_until(
        lambda: kafka_tools.voter_lag(in_broker(manager, 0), loss.broker) == 0, f"broker-{loss.broker} caught up"
    )
    print(
        f"\n{lost.name} started again: ready in the swarm after {ready:.1f} s,"
        f" its broker caught up {caught_up:.1f} s on"
    )
    cafile = str(platform.hosts.parent / "build" / "ca.crt")
    assert http.get("api.localhost", 443, "/health", cafile=cafile, address=manager.address).status == 200


def test_every_sample_of_the_metrics_demo_landed_exactly_once_across_the_loss(
    sim: SimulatedNodes, platform: PlatformOnNodes, loss: Loss
) -> None:
    """The demo stopped, the sink drained: each partition's offsets 0..end-1 are rows once each (nothing lost or
    doubled between Kafka and Postgres), each sample's key once (no resend doubled), and the samples of the
    demo's host follow each other at its interval (none lost between the demo and Kafka)."""
    manager = sim.nodes["manager-1"]
    demo = f"{PREFIX}_kafka_metrics-demo"
    manager.docker("service", "scale", "--detach", f"{demo}=0")
    wait_until(lambda: "Running" not in manager.docker("service", "ps", demo, "--format", "{{.CurrentState}}"),
               "the demo stopped on its node")  # fmt: skip
    ends = kafka_tools.end_offsets(in_broker(manager, 0), "host_metrics")
    assert ends and sum(ends.values()) > 0
    wait_until(lambda: rows(platform) >= sum(ends.values()), "the sink drained the topic")
    landed = psql(
        platform,
        "SELECT _kafka_partition, count(*), count(DISTINCT _kafka_offset), min(_kafka_offset), max(_kafka_offset)"
        " FROM raw.host_metrics GROUP BY 1 ORDER BY 1",
    )
    by_partition = {
        int(p): (int(n), int(d), int(lo), int(hi)) for p, n, d, lo, hi in (r.split("|") for r in landed.split())
    }
    assert by_partition == {p: (end, end, 0, end - 1) for p, end in ends.items() if end}
    assert psql(platform, "SELECT count(*) - count(DISTINCT _kafka_key) FROM raw.host_metrics") == "0"
    gaps = psql(
        platform,
        "SELECT count(*), coalesce(max(gap), 0) FROM (SELECT extract(epoch FROM ts - lag(ts) OVER (ORDER BY ts)) AS gap"
        f" FROM raw.host_metrics WHERE host = '{loss.producer}') s",
    )
    samples, widest = gaps.split("|")
    print(f"\n{sum(ends.values())} messages, {samples} samples of {loss.producer}; widest gap {float(widest):.1f} s")
    assert float(widest) < 5 * SAMPLE_EVERY_S, f"samples of {loss.producer} missing: a {widest} s gap"


def test_api_keys_work_when_no_db_connect_task_runs_on_the_manager(
    sim: SimulatedNodes, platform: PlatformOnNodes
) -> None:
    """`docker exec` reaches the manager's own containers only: the command then runs in a task made like
    db_connect's (image, environment, secrets, network), held to the manager, and removed after."""
    manager = sim.nodes["manager-1"]
    service = f"{PREFIX}_db_connect_api"
    manager.docker("service", "update", "--detach", "--constraint-add", "node.role==worker", service)
    on_manager = ("ps", "--quiet", "--filter", f"label=com.docker.swarm.service.name={service}")
    wait_until(lambda: not manager.docker(*on_manager), "db_connect's task on the manager gone")
    created = platform.deploy("api-keys", "create", "--role", "api_reader", "--name", "made-elsewhere")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    cafile = str(platform.hosts.parent / "build" / "ca.crt")
    read = http.get("api.localhost", 443, "/consumption/host_metrics?limit=1", cafile=cafile,
                    address=manager.address, headers={"X-API-Key": key})  # fmt: skip
    assert read.status == 200, read.body
    assert "made-elsewhere" in platform.deploy("api-keys", "list").stdout
    leftovers = manager.docker("service", "ls", "--quiet", "--filter", f"label=sawmill.prefix={PREFIX}")
    assert leftovers == "", "the command's task is removed"
