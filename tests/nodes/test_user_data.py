"""The user data terraform/ renders, run for real: a bare host boots with it as a droplet would, ends up with a
running Docker engine and the deploy user, and `deploy.py nodes` joins it to a swarm — over SSH only.

The host (tests/nodes/cloud_image) is Debian booted by systemd with cloud-init reading a NoCloud seed in place of
DigitalOcean's metadata service, sshd, and no engine: Docker comes from Debian's archive during the first boot, as
on a droplet. The user data is the output of a real `terraform apply` of terraform/modules/cloud-init.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.terraform_support import apply_cloud_init, needs_terraform, terraform_runner
from tests.nodes.simulated import DEPLOY_USER, Node, SimulatedNodes, simulated_nodes
from tests.nodes.test_nodes import nodes_command, swarm_nodes

pytestmark = needs_terraform
ROLES = {"manager-1": "manager", "cloud-1": "worker"}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedNodes]:
    """A manager of the usual kind, and a host that got only Terraform's user data (with this run's key)."""
    with simulated_nodes() as nodes:
        key = nodes.key.with_suffix(".pub").read_text().strip()
        work = tmp_path_factory.mktemp("terraform")
        user_data = apply_cloud_init(terraform_runner(work), work, {"ssh_authorized_keys": [key]})
        nodes.add("manager-1")
        nodes.boot_cloud_host("cloud-1", user_data)
        yield nodes


@pytest.fixture(scope="module")
def host(sim: SimulatedNodes) -> Node:
    return sim.nodes["cloud-1"]


def test_the_first_boot_ran_every_step_of_the_user_data(host: Node) -> None:
    status = host.run("cloud-init", "status", "--long", check=False)
    assert status.startswith("status: done"), status


def test_the_engine_runs_and_starts_again_at_boot(host: Node) -> None:
    assert host.run("systemctl", "is-active", "docker") == "active"
    assert host.run("systemctl", "is-enabled", "docker") == "enabled"


def test_the_deploy_user_drives_docker_over_ssh_with_its_key_only(sim: SimulatedNodes, host: Node) -> None:
    engine = sim.ssh(host, "docker", "info", "--format", "{{.ServerVersion}}")
    assert engine.returncode == 0, engine.stderr
    assert engine.stdout.strip()
    assert host.run("id", "-nG", DEPLOY_USER).split().count("docker") == 1
    assert host.run("passwd", "--status", DEPLOY_USER).split()[1] == "L", "no password: the key is the only way in"
    sshd = host.run("sshd", "-T")
    assert "passwordauthentication no" in sshd
    root = subprocess.run(
        ["ssh", f"root@{host.address}", "true"], env=sim.env(), capture_output=True, text=True, timeout=60
    )
    assert root.returncode != 0, "root may not log in over SSH"


def test_deploy_py_nodes_joins_the_host_to_the_swarm(
    sim: SimulatedNodes, host: Node, tmp_path_factory: pytest.TempPathFactory
) -> None:
    hosts = sim.hosts_file(tmp_path_factory.mktemp("hosts") / "hosts.json", ROLES, {})
    result = nodes_command(sim, hosts)
    assert result.returncode == 0, result.stderr
    joined = swarm_nodes(sim.nodes["manager-1"])[host.address]
    assert (joined["Spec"]["Role"], joined["Status"]["State"]) == ("worker", "ready")
    assert joined["Description"]["Hostname"] == "cloud-1"
