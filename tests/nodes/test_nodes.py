"""`deploy.py nodes` forms and labels a swarm of hosts it reaches only over SSH, as in production.

Three simulated hosts (tests/nodes/simulated.py): a manager and two workers, then a fourth added later. The tests
run in order, each starting from the swarm the previous one left, as an operator's runs would.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.images import BASE_IMAGE
from stack.swarm import CheckFailed, DockerSwarm, Mount
from tests.nodes.simulated import DEPLOY_USER, Node, PlatformOnNodes, SimulatedNodes, platform_on_nodes, simulated_nodes

ROOT = Path(__file__).resolve().parents[2]
RUNNING_TIMEOUT_S = 90
TEST_LABELS = {"sawmill.test": "nodes"}
ROLES = {"manager-1": "manager", "worker-1": "worker", "worker-2": "worker"}
LABELS = {
    "manager-1": {"entry": "true"},
    "worker-1": {"data": "true"},
    "worker-2": {"broker": "0"},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedNodes]:
    with simulated_nodes() as nodes:
        nodes.add(*ROLES)
        yield nodes


@pytest.fixture(scope="module")
def hosts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hosts")


def nodes_command(sim: SimulatedNodes, hosts_file: Path) -> subprocess.CompletedProcess[str]:
    """`deploy.py nodes` as an operator runs it: only SSH reaches the hosts."""
    return subprocess.run(
        [sys.executable, "deploy.py", "nodes", str(hosts_file), "--ssh-user", DEPLOY_USER],
        cwd=ROOT,
        env=sim.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def swarm_nodes(manager: Node) -> dict[str, dict]:
    """The swarm's nodes by address, as the manager's own engine lists them."""
    ids = manager.docker("node", "ls", "-q").split()
    return {n["Status"]["Addr"]: n for n in json.loads(manager.docker("node", "inspect", *ids))}


def test_nodes_forms_the_swarm_from_nothing_with_every_node_ready_and_labelled(
    sim: SimulatedNodes, hosts_dir: Path
) -> None:
    hosts = sim.hosts_file(hosts_dir / "hosts.json", ROLES, LABELS)
    started = time.monotonic()
    result = nodes_command(sim, hosts)
    seconds = time.monotonic() - started
    print(f"\nswarm of {len(ROLES)} nodes formed over SSH in {seconds:.1f} s")
    assert result.returncode == 0, result.stderr
    listed = swarm_nodes(sim.nodes["manager-1"])
    assert len(listed) == 3
    for name, role in ROLES.items():
        node = listed[sim.nodes[name].address]
        assert node["Spec"]["Role"] == role
        assert node["Status"]["State"] == "ready"
        assert node["Spec"]["Labels"] == LABELS[name]
    for name in ROLES:  # the table on stdout names each host, its role, its state and labels
        line = next(line for line in result.stdout.splitlines() if line.startswith(name))
        assert ROLES[name] in line and "ready" in line and next(iter(LABELS[name])) in line


def test_the_join_token_is_in_no_output(sim: SimulatedNodes, hosts_dir: Path) -> None:
    token = sim.nodes["manager-1"].docker("swarm", "join-token", "-q", "worker")
    result = nodes_command(sim, hosts_dir / "hosts.json")
    assert token not in result.stdout + result.stderr


def test_a_second_run_changes_nothing_and_says_so(sim: SimulatedNodes, hosts_dir: Path) -> None:
    before = {a: n["Version"]["Index"] for a, n in swarm_nodes(sim.nodes["manager-1"]).items()}
    started = time.monotonic()
    result = nodes_command(sim, hosts_dir / "hosts.json")
    print(f"\na second run (no change) took {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stderr
    assert "nothing to change" in result.stderr
    assert {a: n["Version"]["Index"] for a, n in swarm_nodes(sim.nodes["manager-1"]).items()} == before


def listening(node: Node, protocol: str, port: int) -> set[str]:
    """The local addresses a socket of `port` is bound to (`ss -ltn` / `ss -lun` inside the node)."""
    flag = "-ltnH" if protocol == "tcp" else "-lunH"
    lines = node.run("ss", flag, f"sport = :{port}").splitlines()
    return {line.split()[3].rsplit(":", 1)[0] for line in lines}


def test_the_swarm_ports_listen_on_the_private_address_only(sim: SimulatedNodes) -> None:
    for name, node in sim.nodes.items():
        assert listening(node, "tcp", 7946) == {node.address}, name
        assert listening(node, "udp", 7946) == {node.address}, name
    manager = sim.nodes["manager-1"]
    assert listening(manager, "tcp", 2377) == {manager.address}


def test_a_stopped_node_is_reported_and_the_others_still_converge(sim: SimulatedNodes, hosts_dir: Path) -> None:
    sim.nodes["worker-2"].stop()
    try:
        changed = LABELS | {"worker-1": {"data": "true", "compute": "true"}}
        hosts = sim.hosts_file(hosts_dir / "changed.json", ROLES, changed)
        started = time.monotonic()
        result = nodes_command(sim, hosts)
        print(f"\nnodes with one host down took {time.monotonic() - started:.1f} s")
        assert result.returncode == 0, result.stderr
        assert "worker-2: unreachable over SSH" in result.stderr
        worker_2 = next(line for line in result.stdout.splitlines() if line.startswith("worker-2"))
        assert "unreachable" in worker_2
        listed = swarm_nodes(sim.nodes["manager-1"])
        assert listed[sim.nodes["worker-1"].address]["Spec"]["Labels"] == changed["worker-1"]
    finally:
        sim.nodes["worker-2"].start()


def test_a_stopped_node_started_again_is_back_in_the_swarm_by_itself(sim: SimulatedNodes) -> None:
    """Its engine keeps its swarm state on its volume: no `nodes` run is needed for it to rejoin."""
    address = sim.nodes["worker-2"].address
    deadline = time.monotonic() + RUNNING_TIMEOUT_S
    while swarm_nodes(sim.nodes["manager-1"])[address]["Status"]["State"] != "ready":
        assert time.monotonic() < deadline, "worker-2 did not come back within the timeout"
        time.sleep(1)


def test_a_node_added_later_joins_with_its_labels(sim: SimulatedNodes, hosts_dir: Path) -> None:
    sim.add("worker-3")
    roles = ROLES | {"worker-3": "worker"}
    labels = LABELS | {"worker-3": {"compute": "true"}}
    result = nodes_command(sim, sim.hosts_file(hosts_dir / "grown.json", roles, labels))
    assert result.returncode == 0, result.stderr
    assert "worker-3 joined as worker" in result.stderr
    node = swarm_nodes(sim.nodes["manager-1"])[sim.nodes["worker-3"].address]
    assert node["Status"]["State"] == "ready"
    assert node["Spec"]["Labels"] == labels["worker-3"]


@pytest.fixture
def remote(sim: SimulatedNodes, monkeypatch: pytest.MonkeyPatch) -> DockerSwarm:
    """The engine's Swarm interface pointed at the manager over SSH, as `DOCKER_HOST=ssh://...` does for deploy.py."""
    monkeypatch.setenv("DOCKER_HOST", f"ssh://{DEPLOY_USER}@{sim.nodes['manager-1'].address}")
    monkeypatch.setenv("PATH", sim.env()["PATH"])
    return DockerSwarm()


def test_a_stack_deployed_over_ssh_runs_on_the_workers(
    sim: SimulatedNodes, remote: DockerSwarm, tmp_path: Path
) -> None:
    for node in sim.nodes.values():  # no registry yet: each node gets the image as `docker save | docker load`
        sim.load_image(BASE_IMAGE, node)
    stack_file = tmp_path / "stack.yml"
    stack_file.write_text(
        json.dumps(
            {
                "version": "3.8",
                "services": {
                    "probe": {
                        "image": BASE_IMAGE,
                        "command": ["sleep", "600"],
                        "deploy": {
                            "replicas": 2,
                            "endpoint_mode": "dnsrr",
                            "placement": {"constraints": ["node.role == worker"], "max_replicas_per_node": 1},
                        },
                    }
                },
            }
        )
    )
    remote.deploy_stack("probe", stack_file)
    try:
        deadline = time.monotonic() + RUNNING_TIMEOUT_S
        while [s.running for s in remote.services("probe")] != [2]:
            assert time.monotonic() < deadline, sim.nodes["manager-1"].docker(
                "service", "ps", "--no-trunc", "probe_probe"
            )
            time.sleep(1)
        placed = sim.nodes["manager-1"].docker(
            "service", "ps", "probe_probe", "--filter", "desired-state=running", "--format", "{{.Node}}"
        )
        workers = {name for name, node in sim.nodes.items() if name.startswith("worker")}
        assert len(set(placed.split())) == 2 and set(placed.split()) <= workers
    finally:
        remote.remove_stack("probe")


def test_a_secret_is_read_back_from_a_remote_swarm(remote: DockerSwarm) -> None:
    remote.create_secret("probe_secret", b"read-over-ssh", TEST_LABELS)
    try:
        assert remote.read_secret("probe_secret", BASE_IMAGE, TEST_LABELS) == b"read-over-ssh"
    finally:
        remote.remove_services(TEST_LABELS)
        remote.remove_secrets(["probe_secret"])


def test_checks_of_rendered_files_run_on_a_remote_engine(remote: DockerSwarm, tmp_path: Path) -> None:
    """The files are copied into the check's container: a remote engine cannot bind-mount this machine's."""
    rendered = tmp_path / "site.conf"
    rendered.write_text("server_name api.example.test;\n")
    copied = Mount(rendered, "/etc/not-in-the-image/site.conf")
    remote.run_check(BASE_IMAGE, ["grep", "-q", "api.example.test", copied.target], [copied])
    with pytest.raises(CheckFailed, match="refused"):
        remote.run_check(BASE_IMAGE, ["sh", "-c", "echo refused >&2; exit 1"], [copied])


def test_deploy_py_asks_the_swarm_that_host_names(sim: SimulatedNodes, tmp_path: Path) -> None:
    """`--host ssh://...`: status, lock and plan read the remote manager's swarm, not this machine's."""
    manager = sim.nodes["manager-1"]
    manager.run("sh", "-c", "printf made-there | docker secret create nodetest_postgres_password -")
    env = sim.env() | {"SAWMILL_PREFIX": "nodetest", "SAWMILL_BUILD_DIR": str(tmp_path / "build")}

    def deploy(*args: str) -> str:
        argv = [sys.executable, "deploy.py", "--host", f"ssh://{DEPLOY_USER}@{manager.address}", *args]
        result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    try:
        assert {row["health"] for row in json.loads(deploy("status", "--json"))["services"]} == {"not deployed"}
        assert deploy("lock", "status").startswith("free")
        planned = deploy("plan")
        assert "secret nodetest_postgres_password" not in planned  # it exists there, and only there
        assert "secret nodetest_db_connect_api_key will be generated" in planned
    finally:
        manager.docker("secret", "rm", "nodetest_postgres_password")


@pytest.fixture(scope="module")
def postgres_platform(sim: SimulatedNodes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformOnNodes]:
    """A platform of Postgres alone (prefix `nodeimages`) on every node the module's swarm has by now."""
    platform = platform_on_nodes(sim, tmp_path_factory.mktemp("platform"), "nodeimages", ["postgres"])
    yield platform
    platform.deploy("down", "--purge", "--hosts", str(platform.hosts), "--ssh-user", DEPLOY_USER)


def holds(node: Node, ref: str) -> bool:
    return node.run("docker", "image", "inspect", "--format", "{{.Id}}", ref, check=False).startswith("sha256:")


def test_up_refuses_a_swarm_of_several_nodes_without_the_hosts_list(postgres_platform: PlatformOnNodes) -> None:
    result = postgres_platform.deploy("up")
    assert result.returncode == 1
    assert re.search(r"this swarm has [4-9] nodes", result.stderr) and "--hosts hosts.json" in result.stderr
    assert "nodeimages_postgres" not in postgres_platform.manager.docker("stack", "ls")


def test_up_with_the_hosts_list_puts_its_images_on_every_node_and_deploys(
    sim: SimulatedNodes, postgres_platform: PlatformOnNodes
) -> None:
    started = time.monotonic()
    result = postgres_platform.up()
    print(f"\nup of postgres on {len(sim.nodes)} nodes, images copied to each: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stderr[-3000:]
    for name, node in sim.nodes.items():
        assert all(holds(node, ref) for ref in postgres_platform.refs), name
    server = next(line for line in result.stdout.splitlines() if " server " in line)
    assert "healthy" in server and "manager-1" in server  # pinned where `up` labelled: the manager it was given
    again = postgres_platform.up()
    assert again.returncode == 0, again.stderr[-3000:]
    assert "copying" not in again.stderr  # every node has them: nothing travels twice


def test_nodes_gives_a_node_that_lacks_them_the_images_the_platform_runs(
    sim: SimulatedNodes, postgres_platform: PlatformOnNodes
) -> None:
    """As for a node added after `up`, or one whose images were pruned: `nodes` fills it, and only it."""
    worker = sim.nodes["worker-3"]
    worker.run("docker", "image", "rm", "--force", *postgres_platform.refs)  # its init job's container stays
    env = postgres_platform.env
    argv = [sys.executable, "deploy.py", "nodes", str(postgres_platform.hosts), "--ssh-user", DEPLOY_USER]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert all(holds(worker, ref) for ref in postgres_platform.refs)
    copied = [line for line in result.stderr.splitlines() if "copying" in line]
    assert len(copied) == 1 and copied[0].startswith("→ worker-3:"), result.stderr


def test_down_volumes_needs_the_hosts_list_and_then_removes_the_volumes_on_every_node(
    sim: SimulatedNodes, postgres_platform: PlatformOnNodes
) -> None:
    """A volume lives on the node whose task made it: here one on a worker, as a broker's would be."""
    stack = "nodeimages_postgres"
    worker = sim.nodes["worker-1"]
    worker.docker("volume", "create", "--label", f"com.docker.stack.namespace={stack}", f"{stack}_elsewhere")
    refused = postgres_platform.deploy("down", "--volumes")
    assert refused.returncode == 2 and "--hosts hosts.json" in refused.stderr, refused.stderr
    assert stack in postgres_platform.manager.docker("stack", "ls"), "refused before anything was removed"
    hosts = ["--hosts", str(postgres_platform.hosts), "--ssh-user", DEPLOY_USER]
    done = postgres_platform.deploy("down", "--volumes", *hosts)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"worker-1: removed volume(s) {stack}_elsewhere" in done.stderr
    for name, node in sim.nodes.items():
        assert node.docker("volume", "ls", "--quiet", "--filter", f"label=com.docker.stack.namespace={stack}") == "", (
            name
        )
