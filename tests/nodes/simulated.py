"""Simulated swarm hosts on this machine: containers that run Debian's Docker engine and an SSH server.

Each node is what a provisioned host is to `deploy.py`: an address, sshd, and a `deploy` user in the docker
group, reached with a key made for this run only. `--privileged` cannot start in this sandbox, so the nodes get
the narrower set measured in shared/ENVIRONMENT.md, and their /var/lib/docker lives on a volume (overlay2 on
the container's own overlay filesystem fails). A cloud host (`boot_cloud_host`) is the other kind: systemd and
cloud-init, no engine and no deploy user until its user data brings them. Everything is named `sawmill-node-*` on
the network `sawmill-nodes-test`, and is removed on exit, including leftovers of an interrupted earlier run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from stack import images, plan
from stack.config import load_settings
from stack.images import BASE_IMAGE, BUILD_BASE_SCRIPT, context_digest
from stack.swarm import DockerSwarm

ROOT = Path(__file__).resolve().parents[2]
NETWORK = "sawmill-nodes-test"
PREFIX = "sawmill-node-"
IMAGE_DIR = Path(__file__).parent / "image"
CLOUD_IMAGE_DIR = Path(__file__).parent / "cloud_image"
# A first boot installs Docker from Debian's archive: minutes, not seconds.
FIRST_BOOT_TIMEOUT_S = 600
DEPLOY_USER = "deploy"
START_TIMEOUT_S = 90
DOCKER_TIMEOUT_S = 120
# The host's engine, as this process found it: a test pointing DOCKER_HOST at a node must not move these calls there.
HOST_ENV = dict(os.environ)
# What a Docker engine inside a container needs here (`--privileged` cannot start in this sandbox).
ENGINE_OPTIONS = [
    "--cap-add=SYS_ADMIN",
    "--cap-add=NET_ADMIN",
    "--cap-add=SYS_PTRACE",  # runc joins the namespaces of a task whose process left root (Postgres): ptrace rules
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    "--device-cgroup-rule=a *:* rwm",
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
]


# /run is a fresh tmpfs at every start, as a real host's is at boot. Kept in the container's layer, a killed
# engine's containerd.pid named a PID the restarted container had given to another process, and dockerd waited for
# a containerd that was not there ("failed to start containerd: timeout"): 3 of 10 kill/start cycles; 0 of 12 so.
FRESH_RUN = ["--tmpfs", "/run"]


def docker(*argv: str, stdin: bytes | None = None, check: bool = True) -> str:
    """The host's docker CLI, bounded in time (only our own containers, network and volumes are touched)."""
    done = subprocess.run(
        ["docker", *argv], input=stdin, env=HOST_ENV, capture_output=True, timeout=DOCKER_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(argv[:3])} failed: {done.stderr.decode().strip()}")
    return done.stdout.decode().strip()


def node_image(folder: Path = IMAGE_DIR, repository: str = "sawmill/node") -> str:
    """A test host's image, tagged by the digest of its folder, built once (and the base image first if missing)."""
    tag = f"{repository}:{context_digest(folder)[:12]}"
    if _image_exists(tag):
        return tag
    if not _image_exists(BASE_IMAGE):
        subprocess.run(["bash", str(BUILD_BASE_SCRIPT), BASE_IMAGE], env=HOST_ENV, check=True, timeout=600)
    build = ["docker", "build", "-q", "-t", tag, "--build-arg", f"BASE={BASE_IMAGE}", str(folder)]
    done = subprocess.run(build, env=HOST_ENV, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:  # apt from Debian's archive: longer than docker()'s bound, and worth its own message
        raise RuntimeError(f"building {tag} from {folder} failed:\n{done.stderr[-3000:]}")
    return tag


def _image_exists(ref: str) -> bool:
    inspect = subprocess.run(["docker", "image", "inspect", ref], env=HOST_ENV, capture_output=True, timeout=60)
    return inspect.returncode == 0


@dataclass
class Node:
    """One simulated host; `name` is the short name a hosts file gives it, `address` its IP on the network."""

    name: str
    address: str

    @property
    def container(self) -> str:
        return PREFIX + self.name

    def run(self, *argv: str, check: bool = True) -> str:
        """A command inside the node, as root (for checks a test makes, never for what deploy.py does)."""
        return docker("exec", self.container, *argv, check=check)

    def docker(self, *argv: str) -> str:
        """The node's own engine, asked directly (to check what deploy.py did over SSH)."""
        return self.run("docker", *argv)

    def stop(self) -> None:
        docker("stop", "--time", "5", self.container)

    def kill(self) -> None:
        """As a host dies: no engine or task is told."""
        docker("kill", self.container)

    def start(self) -> None:
        docker("start", self.container)
        _wait_ready(self)


@dataclass
class SimulatedNodes:
    """The nodes of one test run and the SSH set-up that reaches them."""

    image: str
    ssh_dir: Path
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    def add(self, *names: str) -> list[Node]:
        """Start nodes (side by side), wait until their engines and sshd answer, and let this run's key in."""
        started = [_run_node(name, self.image, "--init", *FRESH_RUN) for name in names]
        public = self.key.with_suffix(".pub").read_bytes()
        path = f"/home/{DEPLOY_USER}/.ssh/authorized_keys"
        install = f"cat > {path} && chown {DEPLOY_USER}: {path}"
        for node in started:
            self.nodes[node.name] = node
            _wait_ready(node)
            docker("exec", "-i", node.container, "sh", "-c", install, stdin=public)
        return started

    def boot_cloud_host(self, name: str, user_data: str) -> Node:
        """A bare host (tests/nodes/cloud_image: systemd, cloud-init, sshd, no Docker) booted with `user_data`
        as its first-boot configuration, as a droplet boots with Terraform's; waits until cloud-init finished.
        Nothing else is done to it: what it ends up with is what the user data gave it."""
        seed = self.ssh_dir / f"seed-{name}"
        seed.mkdir()
        (seed / "user-data").write_text(user_data)
        (seed / "meta-data").write_text(f"instance-id: {PREFIX}{name}\nlocal-hostname: {name}\n")
        systemd = ["--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp", "--env", "container=docker"]
        image = node_image(CLOUD_IMAGE_DIR, "sawmill/cloud-host")
        node = _run_node(name, image, "--volume", f"{seed}:/var/lib/cloud/seed/nocloud:ro", *systemd)
        self.nodes[name] = node
        deadline = time.monotonic() + FIRST_BOOT_TIMEOUT_S
        finished = "test -e /run/cloud-init/result.json && echo finished"  # written as the last stage ends
        while node.run("sh", "-c", finished, check=False) != "finished":
            if time.monotonic() > deadline:
                log = node.run("tail", "-n", "30", "/var/log/cloud-init-output.log", check=False)
                raise TimeoutError(f"{name}: cloud-init not finished after {FIRST_BOOT_TIMEOUT_S} s:\n{log}")
            time.sleep(2)
        return node

    def load_image(self, ref: str, node: Node) -> None:
        """Move an image of this machine into a node, as `docker save | docker load` (no registry needed)."""
        save = subprocess.Popen(["docker", "save", ref], env=HOST_ENV, stdout=subprocess.PIPE)
        try:
            load = ["docker", "exec", "-i", node.container, "docker", "load", "-q"]
            done = subprocess.run(load, env=HOST_ENV, stdin=save.stdout, capture_output=True, timeout=DOCKER_TIMEOUT_S)
            if done.returncode != 0:
                raise RuntimeError(f"loading {ref} into {node.name} failed: {done.stderr.decode().strip()}")
        finally:
            save.wait(timeout=DOCKER_TIMEOUT_S)

    def env(self) -> dict[str, str]:
        """The environment for `deploy.py`: `ssh` on PATH is this run's (its key, its known_hosts)."""
        return HOST_ENV | {"PATH": f"{self.ssh_dir / 'bin'}:{HOST_ENV['PATH']}"}

    def ssh(self, node: Node, *argv: str) -> subprocess.CompletedProcess[str]:
        """A command as the deploy user over SSH, as deploy.py reaches a node."""
        command = ["ssh", f"{DEPLOY_USER}@{node.address}", *argv]
        return subprocess.run(command, env=self.env(), capture_output=True, text=True, timeout=60, check=False)

    def hosts_file(self, path: Path, roles: dict[str, str], labels: dict[str, dict[str, str]]) -> Path:
        """A hosts list in the shape Terraform's output has: name, private address, role, labels."""
        hosts = [
            {"name": name, "address": self.nodes[name].address, "role": role, "labels": labels.get(name, {})}
            for name, role in roles.items()
        ]
        path.write_text(json.dumps(hosts, indent=2))
        return path


def _run_node(name: str, image: str, *options: str) -> Node:
    """A host container on the test network, its engine's data on a volume of its own; its address."""
    container = PREFIX + name
    docker("run", "-d", "--name", container, "--hostname", name, "--network", NETWORK,
           "--volume", f"{container}-docker:/var/lib/docker", *ENGINE_OPTIONS, *options, image)  # fmt: skip
    network = f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}'
    return Node(name, docker("inspect", "-f", network, container))


def _wait_ready(node: Node) -> None:
    """Until the node's engine answers and sshd listens; bounded."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        engine = docker("exec", node.container, "docker", "info", "--format", "{{.ServerVersion}}", check=False)
        sshd = docker("exec", node.container, "sh", "-c", "ss -ltn 'sport = :22' | tail -n +2", check=False)
        if engine and sshd:
            return
        time.sleep(0.5)
    log = docker("exec", node.container, "tail", "-n", "20", "/var/log/dockerd.log", check=False)
    raise TimeoutError(f"node {node.name} not ready within {START_TIMEOUT_S} s; dockerd.log:\n{log}")


def _write_ssh_setup(ssh_dir: Path) -> None:
    """A key made now, an ssh_config that uses only it, and an `ssh` wrapper that reads that config."""
    (ssh_dir / "bin").mkdir(parents=True)
    key = ssh_dir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sawmill-nodes-test", "-f", str(key)],
                   check=True, timeout=30)  # fmt: skip
    config = ssh_dir / "ssh_config"
    config.write_text(
        "Host *\n"
        f"  IdentityFile {key}\n"
        "  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking accept-new\n"
        f"  UserKnownHostsFile {ssh_dir / 'known_hosts'}\n"
        "  BatchMode yes\n"
        "  ConnectTimeout 5\n"
        "  LogLevel ERROR\n"
    )
    # OpenSSH reads ~/.ssh from the password database, not $HOME: a wrapper is how a test points it elsewhere
    wrapper = ssh_dir / "bin" / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {config} "$@"\n')
    wrapper.chmod(0o755)


def remove_all() -> None:
    """Every container, volume and the network this module makes (also those of an interrupted run)."""
    containers = docker("ps", "-aq", "--filter", f"name=^{PREFIX}").split()
    if containers:
        docker("rm", "-f", "-v", *containers)
    volumes = docker("volume", "ls", "-q", "--filter", f"name=^{PREFIX}").split()
    if volumes:
        docker("volume", "rm", "-f", *volumes)
    if docker("network", "ls", "-q", "--filter", f"name=^{NETWORK}$"):
        docker("network", "rm", NETWORK)


@contextmanager
def simulated_nodes() -> Iterator[SimulatedNodes]:
    """An empty network of our own to add nodes to; everything removed afterwards."""
    image = node_image()
    remove_all()
    docker("network", "create", "--driver", "bridge", NETWORK)
    with tempfile.TemporaryDirectory(prefix="sawmill-nodes-ssh-") as tmp:
        try:
            _write_ssh_setup(Path(tmp))
            yield SimulatedNodes(image, Path(tmp))
        finally:
            with suppress(RuntimeError, subprocess.TimeoutExpired):
                remove_all()


@dataclass(frozen=True)
class PlatformOnNodes:
    """A platform deployed by `deploy.py` on this machine onto the simulated swarm, over SSH only."""

    manager: Node
    env: dict[str, str]
    hosts: Path  # every node: manager-1 the manager, the others workers
    refs: list[str]  # the images `up` would build

    def deploy(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "deploy.py", "--host", f"ssh://{DEPLOY_USER}@{self.manager.address}", *args]
        return subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)

    def up(self) -> subprocess.CompletedProcess[str]:
        return self.deploy("up", "--hosts", str(self.hosts), "--ssh-user", DEPLOY_USER)


def platform_on_nodes(sim: SimulatedNodes, work: Path, prefix: str, components: list[str],
                      **settings: str) -> PlatformOnNodes:  # fmt: skip
    """What `up` needs to deploy `components` (and SAWMILL_<KEY> `settings`) from this machine onto the swarm.

    Their images are built on this machine and loaded into the manager, where `up` then finds them and builds
    nothing: building inside a node works as anywhere else and is not what these tests are about."""
    (work / "sawmill.toml").write_text("")  # not the checkout's
    env = sim.env() | {
        "SAWMILL_CONFIG": str(work / "sawmill.toml"),
        "SAWMILL_PREFIX": prefix,
        "SAWMILL_COMPONENTS": ",".join(components),
        "SAWMILL_BUILD_DIR": str(work / "build"),
        **{f"SAWMILL_{key.upper()}": value for key, value in settings.items()},
    }
    the_plan = plan.make_plan(load_settings(components=components))
    # (an image no registry here has, such as Kafka's console, has no ref: `up` leaves its service out)
    refs = [r for cp in the_plan.components if cp.name in components for r in cp.images if r.ref]
    images.ensure(DockerSwarm(), refs)  # on this machine's engine, if an earlier test did not build them already
    manager = sim.nodes["manager-1"]
    for ref in images.with_parents(refs):
        assert ref.ref is not None
        sim.load_image(ref.ref, manager)
    roles = {name: "manager" if name == "manager-1" else "worker" for name in sim.nodes}
    hosts = sim.hosts_file(work / "hosts.json", roles, {})
    return PlatformOnNodes(manager, env, hosts, [r.ref for r in refs if r.ref and r.local_build])
