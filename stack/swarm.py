"""The one seam between the engine and Docker: every question to the swarm and every change to it.

The engine decides (what to create, update, skip, remove, wait for, report) and calls these methods;
`DockerSwarm` carries them out with python-on-whales, and the unit tests drive the same decisions against
an in-memory fake (tests/unit/fake_swarm.py). Values returned are plain data, never python-on-whales objects.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from python_on_whales import DockerException, docker

from stack.fifo import fifo

NAMESPACE_LABEL = "com.docker.stack.namespace"
ONE_SHOT_TASK_S = 60  # how long a task held to this node (reading a secret, a component's command) may live
SERVICE_LOGS_TIMEOUT_S = 20
LOG_LINES = 20


class AlreadyExists(Exception):
    """A config or secret of that name exists (creation is atomic: the basis of the deploy lock)."""


class CheckFailed(Exception):
    """A command run on rendered files (e.g. `nginx -t`) refused them; str() is its output."""


@dataclass(frozen=True)
class LiveSpec:
    """What a person can change by hand on a running service, in the form the rendered stack file has."""

    image: str
    replicas: int | None
    env: dict[str, str]
    secrets: tuple[str, ...]  # secret names, sorted
    ports: tuple[str, ...]  # "published:target/protocol mode", sorted


@dataclass(frozen=True)
class ServiceState:
    name: str
    stack: str
    job: bool
    replicas: int | None  # asked for; None for global services and jobs
    running: int  # tasks running that should be
    job_state: str | None  # a job's newest task's state
    update_state: str | None  # "updating", "completed", "rollback_completed", ...
    update_started: dt.datetime | None
    update_message: str | None
    spec: LiveSpec
    nodes: tuple[str, ...] = ()  # IDs of the nodes its running tasks are on

    @property
    def short(self) -> str:
        return self.name.removeprefix(f"{self.stack}_")

    def update_since(self, since: dt.datetime) -> str | None:
        """The update's state if it began after `since` (i.e. this run caused it)."""
        if self.update_started is None or self.update_started < since:
            return None
        return self.update_state


@dataclass(frozen=True)
class Config:
    name: str
    labels: dict[str, str]
    data: bytes
    created: dt.datetime


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str


class Swarm(Protocol):
    """The swarm as the engine sees it (see the module docstring)."""

    def network_exists(self, name: str) -> bool: ...
    def create_network(self, name: str, labels: dict[str, str]) -> None: ...
    def remove_network(self, name: str) -> None: ...

    def secrets(self, labels: dict[str, str]) -> list[str]: ...
    def secret_exists(self, name: str) -> bool: ...
    def create_secret(self, name: str, value: bytes, labels: dict[str, str]) -> None: ...
    def remove_secrets(self, names: list[str]) -> None: ...
    def read_secret(self, name: str, image: str, labels: dict[str, str]) -> bytes: ...

    def configs(self, labels: dict[str, str]) -> list[Config]: ...
    def config(self, name: str) -> Config | None: ...
    def create_config(self, name: str, data: bytes, labels: dict[str, str]) -> None: ...
    def remove_configs(self, names: list[str]) -> None: ...

    def nodes(self) -> list[NodeState]: ...
    def this_node(self) -> str: ...
    def label_node(self, node_id: str, label: str) -> None: ...
    def remove_node_labels(self, starting: str) -> None: ...
    def node_memory(self) -> list[int]: ...

    def image_exists(self, ref: str) -> bool: ...
    def build(self, ref: str, context: Path, build_args: dict[str, str]) -> None: ...
    def pull(self, ref: str) -> None: ...

    def deploy_stack(self, name: str, stack_file: Path) -> None: ...
    def remove_stack(self, name: str) -> None: ...
    def stack_gone(self, name: str) -> bool: ...
    def remove_volumes(self, stack: str) -> None: ...
    def services(self, stack: str) -> list[ServiceState]: ...
    def remove_services(self, labels: dict[str, str]) -> None: ...
    def rollback(self, service: str) -> None: ...
    def restart_service(self, service: str) -> None: ...
    def service_started(self, service: str) -> dt.datetime | None: ...
    def evidence(self, service: str, since: dt.datetime) -> list[str]: ...
    def logs(self, service: str, tail: int) -> str: ...
    def exec_in(self, service: str, argv: list[str], labels: dict[str, str]) -> str: ...
    def run_check(self, image: str, command: list[str], mounts: list[Mount]) -> None: ...


@contextmanager
def _quiet() -> Iterator[None]:
    """python-on-whales 0.81 prints "reference: <id>" for every Secret object it makes; keep stdout clean."""
    with redirect_stdout(io.StringIO()):
        yield


def _label_filter(labels: dict[str, str]) -> list[tuple[str, str]]:
    return [("label", f"{k}={v}") for k, v in labels.items()]


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00")


def _names(kind: str, filters: list[str], field: str = "{{.Name}}") -> list[str]:
    """One `docker KIND ls` matching every filter, one field per object: no inspection of each (a CLI call apiece)."""
    argv = ["docker", kind, "ls", "--format", field, *(f"--filter={f}" for f in filters)]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()


def _raw_tasks(service_ids: list[str]) -> dict[str, list[dict]]:
    """Every task of these services as Docker describes it, newest first per service, in two CLI calls whatever
    their number (reading each task on its own made a no-op `up` cost ~190 calls, ~37 ms each). A service or
    task that Swarm removes while it is being read is left out."""
    ps = ["docker", "service", "ps", "-q", "--no-trunc"]
    listed = subprocess.run([*ps, *service_ids], capture_output=True, text=True)
    if listed.returncode == 0:
        ids = listed.stdout.split()
    else:  # one of them was removed meanwhile: ask for each, keeping what answers
        ids = [t for s in service_ids for t in subprocess.run([*ps, s], capture_output=True, text=True).stdout.split()]
    if not ids:
        return {}
    done = subprocess.run(["docker", "inspect", "--type", "task", *dict.fromkeys(ids)], capture_output=True, text=True)
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    by_service: dict[str, list[dict]] = {}
    tasks = json.loads(done.stdout or "[]")
    for task in sorted(tasks, key=lambda t: _time(t.get("CreatedAt")) or oldest, reverse=True):
        by_service.setdefault(task["ServiceID"], []).append(task)
    return by_service


@dataclass
class DockerSwarm:
    """The swarm the docker CLI reaches (the local engine, or DOCKER_HOST)."""

    _node_id: str | None = field(default=None, repr=False)

    # --- networks ---
    def network_exists(self, name: str) -> bool:
        return docker.network.exists(name)

    def create_network(self, name: str, labels: dict[str, str]) -> None:
        docker.network.create(name, driver="overlay", attachable=True, labels=labels)

    def remove_network(self, name: str) -> None:
        """Networks linger a moment after their last container; try again for up to ten seconds."""
        for attempt in range(20):
            try:
                docker.network.remove(name)
                return
            except DockerException:
                if attempt == 19:
                    raise
                time.sleep(0.5)

    # --- secrets ---
    def secrets(self, labels: dict[str, str]) -> list[str]:
        return sorted(_names("secret", [f"label={k}={v}" for k, v in labels.items()]))

    def secret_exists(self, name: str) -> bool:
        return name in _names("secret", [f"name={name}"])  # the filter matches names that contain it

    def create_secret(self, name: str, value: bytes, labels: dict[str, str]) -> None:
        if self.secret_exists(name):
            raise AlreadyExists(name)
        with fifo(value) as path, _quiet():
            docker.secret.create(name, path, labels=labels)

    def remove_secrets(self, names: list[str]) -> None:
        if names:
            with _quiet():
                docker.secret.remove(names)

    def read_secret(self, name: str, image: str, labels: dict[str, str]) -> bytes:
        """Through a one-shot task that mounts it (the only way Swarm gives one back): without a log driver, and
        the value comes back through `docker exec`, so it is in no container log."""
        if not self.secret_exists(name):
            raise KeyError(name)
        with self._task_here(image, f"read secret {name}", secrets=[{"source": name, "target": "value"}],
                             labels=labels) as container:  # fmt: skip
            command = ["docker", "exec", container, "cat", "/run/secrets/value"]
            return subprocess.run(command, capture_output=True, check=True).stdout

    @contextmanager
    def _task_here(self, image: str, purpose: str, **options: Any) -> Iterator[str]:
        """A one-shot service held to this node (where `docker exec` reaches it) that only sleeps: its running
        container's ID, the service removed afterwards. `options` are python-on-whales' service options."""
        service = docker.service.create(image, [str(ONE_SHOT_TASK_S)], entrypoint="sleep", log_driver="none",
                                        constraints=[f"node.id=={self.this_node()}"], restart_condition="none",
                                        healthcheck=False, detach=True, **options)  # fmt: skip
        try:
            yield _running_container(service.id, purpose)
        finally:
            docker.service.remove(service)

    # --- configs ---
    def configs(self, labels: dict[str, str]) -> list[Config]:
        """Configs carrying every one of `labels`."""
        found = self._read_configs([f"label={k}={v}" for k, v in labels.items()])
        return [c for c in found if all(c.labels.get(k) == v for k, v in labels.items())]

    def config(self, name: str) -> Config | None:
        found = [c for c in self._read_configs([f"name={name}"]) if c.name == name]
        return found[0] if found else None

    @staticmethod
    def _read_configs(filters: list[str]) -> list[Config]:
        """The configs matching every filter, read in one call; the list is taken before they are inspected, so
        one that another `up` removed in between (its stale certificate or record) is simply gone, not an error."""
        listed = _names("config", filters, "{{.ID}}")
        if not listed:
            return []
        done = subprocess.run(["docker", "config", "inspect", *listed], capture_output=True, text=True)
        if done.returncode != 0 and "not found" not in done.stderr:
            raise DockerException(["docker", "config", "inspect"], done.returncode, stderr=done.stderr.encode())
        return [
            Config(
                raw["Spec"]["Name"],
                dict(raw["Spec"].get("Labels") or {}),
                base64.b64decode(raw["Spec"].get("Data", "")),
                _time(raw["CreatedAt"]) or dt.datetime.min.replace(tzinfo=dt.UTC),
            )
            for raw in json.loads(done.stdout or "[]")
        ]

    def create_config(self, name: str, data: bytes, labels: dict[str, str]) -> None:
        try:
            with fifo(data) as path:
                docker.config.create(name, path, labels=labels)
        except DockerException as exc:
            if "AlreadyExists" in (exc.stderr or "") or "already exists" in (exc.stderr or ""):
                raise AlreadyExists(name) from None
            raise

    def remove_configs(self, names: list[str]) -> None:
        if names:
            docker.config.remove(names)

    # --- nodes ---
    def this_node(self) -> str:
        if self._node_id is None:
            self._node_id = docker.info().swarm.node_id
        return self._node_id

    def nodes(self) -> list[NodeState]:
        listed = subprocess.run(["docker", "node", "ls", "--quiet"], capture_output=True, text=True, check=True)
        ids = listed.stdout.split()
        inspected = subprocess.run(["docker", "node", "inspect", *ids], capture_output=True, text=True, check=True)
        return [_node_state(raw) for raw in json.loads(inspected.stdout)]

    def label_node(self, node_id: str, label: str) -> None:
        docker.node.update(node_id, labels_add={label: "true"})

    def remove_node_labels(self, starting: str) -> None:
        for node in docker.node.list():
            stale = [k for k in (node.spec.labels or {}) if k.startswith(starting)]
            if stale:
                docker.node.update(node, rm_labels=stale)

    def node_memory(self) -> list[int]:
        return [int(node.description.resources.memory_bytes) for node in docker.node.list()]

    # --- images ---
    def image_exists(self, ref: str) -> bool:
        return docker.image.exists(ref)

    def build(self, ref: str, context: Path, build_args: dict[str, str]) -> None:
        docker.legacy_build(context, tags=[ref], build_args=build_args)

    def pull(self, ref: str) -> None:
        docker.pull(ref, quiet=True)

    # --- stacks and services ---
    def deploy_stack(self, name: str, stack_file: Path) -> None:
        docker.stack.deploy(name, [stack_file], prune=True, resolve_image="never")

    def remove_stack(self, name: str) -> None:
        docker.stack.remove(name)

    def stack_gone(self, name: str) -> bool:
        """No service and no running container left; the exited containers of completed jobs are removed
        (Swarm leaves them behind, and volumes cannot go before them)."""
        selector = [("label", f"{NAMESPACE_LABEL}={name}")]
        if docker.service.list(filters=selector) or docker.container.list(filters=selector):
            return False
        exited = docker.container.list(all=True, filters=selector)
        if exited:
            docker.container.remove(exited, force=True)
        return True

    def remove_volumes(self, stack: str) -> None:
        stale = docker.volume.list(filters=[("label", f"{NAMESPACE_LABEL}={stack}")])
        if stale:
            docker.volume.remove(stale)

    def services(self, stack: str) -> list[ServiceState]:
        listed = _names("service", [f"label={NAMESPACE_LABEL}={stack}"], "{{.ID}}")
        if not listed:
            return []
        # the raw inspection: python-on-whales' models leave out ports and secrets
        done = subprocess.run(["docker", "service", "inspect", *listed], capture_output=True, text=True)
        raws = json.loads(done.stdout or "[]")  # a service removed meanwhile is left out
        tasks = _raw_tasks([raw["ID"] for raw in raws])
        return sorted((self._state(raw, stack, tasks.get(raw["ID"], [])) for raw in raws), key=lambda s: s.name)

    @staticmethod
    def _state(raw: dict, stack: str, tasks: list[dict]) -> ServiceState:
        spec = raw["Spec"]
        mode = spec.get("Mode", {})
        job = "ReplicatedJob" in mode or "GlobalJob" in mode
        replicated = mode.get("Replicated")
        update = raw.get("UpdateStatus") or {}
        container = spec["TaskTemplate"]["ContainerSpec"]
        ports = raw.get("Endpoint", {}).get("Spec", {}).get("Ports", [])
        replicas = int(replicated.get("Replicas", 1)) if replicated is not None else None
        running = [t for t in tasks if t["DesiredState"] == "running" and t["Status"]["State"] == "running"]
        return ServiceState(
            name=spec["Name"],
            stack=stack,
            job=job,
            replicas=replicas,
            running=len(running),
            job_state=tasks[0]["Status"]["State"] if job and tasks else None,
            update_state=update.get("State"),
            update_started=_time(update.get("StartedAt")),
            update_message=update.get("Message"),
            spec=LiveSpec(
                image=container["Image"],
                replicas=replicas,
                env=dict(item.split("=", 1) for item in container.get("Env", [])),
                secrets=tuple(sorted(s["SecretName"] for s in container.get("Secrets", []))),
                ports=tuple(
                    sorted(
                        f"{p['PublishedPort']}:{p['TargetPort']}/{p.get('Protocol', 'tcp')} {p.get('PublishMode')}"
                        for p in ports
                    )
                ),
            ),
            nodes=tuple(sorted({t["NodeID"] for t in running if t.get("NodeID")})),
        )

    @staticmethod
    def _tasks(service: str) -> list:
        """The service's tasks, newest first; a task Swarm removes while it is being read is left out."""
        found = []
        for task in docker.service.ps(service):
            try:
                created = task.created_at
            except DockerException:
                continue
            found.append((created or dt.datetime.min.replace(tzinfo=dt.UTC), task))
        return [task for _, task in sorted(found, key=lambda pair: pair[0], reverse=True)]

    def remove_services(self, labels: dict[str, str]) -> None:
        for service in docker.service.list(filters=_label_filter(labels)):
            service.remove()

    def rollback(self, service: str) -> None:
        subprocess.run(["docker", "service", "rollback", "--detach", service], check=True, capture_output=True)

    def restart_service(self, service: str) -> None:
        """Replace the service's tasks with the same spec (`--force`): a fresh start, e.g. a new ACME attempt."""
        subprocess.run(["docker", "service", "update", "--force", "--detach", service], check=True, capture_output=True)

    def service_started(self, service: str) -> dt.datetime | None:
        """When the service's newest task was created; None if it has none (or no such service)."""
        try:
            tasks = self._tasks(service)
        except DockerException:
            return None
        return tasks[0].created_at if tasks else None

    def evidence(self, service: str, since: dt.datetime) -> list[str]:
        """What a person needs to see why a service did not converge: tasks this run started that are not
        serving, their last health check and log lines (after a rollback the task's error is lost, but its
        container keeps the health check's output and the logs)."""
        lines = []
        recent = [
            t
            for t in self._tasks(service)
            if t.created_at
            and t.created_at >= since
            and not (t.desired_state == "running" and t.status.state == "running")
        ][:2]
        for task in recent:
            lines.append(f"  task {task.id[:12]}: {task.status.state}: {task.status.err or task.status.message}")
            status = task.status.container_status
            found = status.container_id if status else None
            container = found if found and docker.container.exists(found) else None  # on this node, kept
            if container:
                health = docker.container.inspect(container).state.health
                if health and health.log:
                    output = [line for line in (health.log[-1].output or "").splitlines() if line.strip()]
                    lines.append(f"    last health check: {health.status}: {output[-1] if output else 'no output'}")
            lines.extend(f"    | {line}" for line in self._last_lines(container or task.id))
        if not recent:
            lines.append("  no task of this run failed; the service's last log lines:")
            lines.extend(f"    | {line}" for line in self._last_lines(service))
        return lines

    @staticmethod
    def _last_lines(target: str) -> list[str]:
        try:
            if docker.container.exists(target):
                return docker.container.logs(target, tail=LOG_LINES).splitlines()[-LOG_LINES:]
            return docker.service.logs(target, tail=LOG_LINES, task_ids=False).splitlines()[-LOG_LINES:]
        except DockerException:
            return []

    def logs(self, service: str, tail: int) -> str:
        """Swarm's logs of a service, from every node; bounded, since `docker service logs` was once seen to
        hang on a service with a failed task in its history. Then this node's containers answer instead."""
        argv = ["docker", "service", "logs", "--tail", str(tail), "--timestamps", service]
        try:
            done = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=SERVICE_LOGS_TIMEOUT_S
            )
            return done.stdout.rstrip()
        except subprocess.TimeoutExpired:
            containers = docker.container.list(filters=[("label", f"com.docker.swarm.service.name={service}")])
            lines = [docker.container.logs(c, tail=tail, timestamps=True).rstrip() for c in containers]
            note = f"(docker service logs gave no answer in {SERVICE_LOGS_TIMEOUT_S} s; this node's containers)"
            return "\n".join([note, *lines])

    def exec_in(self, service: str, argv: list[str], labels: dict[str, str]) -> str:
        """In one of its containers on this node, or else in a task like its own (image, environment, secrets,
        network; `labels` on it) held to this node for the command: on several nodes its tasks may all run
        elsewhere, and `docker exec` reaches this node's containers only."""
        found = docker.container.list(filters=[("label", f"com.docker.swarm.service.name={service}")])
        if found:
            return docker.container.execute(found[0], argv)
        argv_inspect = ["docker", "service", "inspect", service]
        inspected = subprocess.run(argv_inspect, capture_output=True, text=True, timeout=SERVICE_LOGS_TIMEOUT_S)
        if inspected.returncode != 0:
            raise LookupError(f"no service {service}")
        task = json.loads(inspected.stdout)[0]["Spec"]["TaskTemplate"]
        container_spec = task["ContainerSpec"]
        secrets = [{"source": s["SecretName"], "target": s["File"]["Name"]} for s in container_spec.get("Secrets", [])]
        networks = [n["Target"] for n in task.get("Networks", [])]
        env = dict(e.split("=", 1) for e in container_spec.get("Env", []))
        with self._task_here(container_spec["Image"], f"run a task of {service}", secrets=secrets, envs=env,
                             network=networks[0] if networks else None, labels=labels) as container:  # fmt: skip
            return docker.container.execute(container, argv)

    def run_check(self, image: str, command: list[str], mounts: list[Mount]) -> None:
        """Run to its end and raise with its output (`docker run` would pass stderr, where tools like `nginx -t`
        say what is wrong, to our terminal instead of into the error). The files are copied in, not bind-mounted:
        the engine may be a remote one (DOCKER_HOST=ssh://...), which cannot see this machine's files."""
        container = docker.container.create(image, command, networks=["none"])
        try:
            copy = ["docker", "cp", "-", f"{container.id}:/"]
            subprocess.run(copy, input=_tar(mounts), capture_output=True, check=True, timeout=SERVICE_LOGS_TIMEOUT_S)
            docker.container.start(container)
            if docker.container.wait(container) != 0:
                raise CheckFailed(docker.container.logs(container).strip())
        finally:
            docker.container.remove(container, force=True)


def _running_container(service: str, purpose: str) -> str:
    """The container of a one-shot service's task once it runs; an error if the task ends or never starts."""
    deadline = time.monotonic() + ONE_SHOT_TASK_S
    while time.monotonic() < deadline:
        tasks = docker.service.ps(service)
        for task in tasks:
            container = task.status.container_status and task.status.container_status.container_id
            if task.status.state == "running" and container:
                return container
        if {t.status.state for t in tasks} & {"failed", "rejected", "complete"}:
            raise DockerException([purpose], 1, stderr=f"could not {purpose}".encode())
        time.sleep(0.3)
    raise TimeoutError(f"{purpose}: no task running after {ONE_SHOT_TASK_S} s")


def _tar(mounts: list[Mount]) -> bytes:
    """The files as a tar archive with their paths in the container (missing folders are made on extraction)."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for mount in mounts:
            data = mount.source.read_bytes()
            info = tarfile.TarInfo(mount.target.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return archive.getvalue()


# --- the engines of single hosts, for forming a swarm (`deploy.py nodes`) ---

ENGINE_TIMEOUT_S = 60
PROBE_TIMEOUT_S = 20  # a host whose engine does not answer `docker info` in this time counts as unreachable
IMAGE_COPY_TIMEOUT_S = 1800  # every image of the platform (a few GB) from one engine to another, over SSH
VOLUME_RELEASE_TIMEOUT_S = 90  # a removed stack's containers on a host stop within this (as teardown waits here)


class EngineError(Exception):
    """A host's engine could not be reached or refused a command; str() says why (never a join token)."""


@dataclass(frozen=True)
class EngineState:
    """What a host's own engine says about its swarm membership."""

    swarm: str  # "inactive", "pending", "active", "error", "locked"
    node_id: str | None
    cluster_id: str | None
    manager: bool  # it can answer for the swarm (a reachable manager)


@dataclass(frozen=True)
class NodeState:
    id: str
    hostname: str
    address: str
    role: str  # "manager" | "worker"
    status: str  # "ready", "down", "unknown", "disconnected"
    availability: str  # "active", "pause", "drain"
    labels: dict[str, str]

    @property
    def takes_tasks(self) -> bool:
        return self.status == "ready" and self.availability == "active"


class Engine(Protocol):
    """One host's Docker engine (reached over SSH): what forming a swarm and filling its nodes with images need."""

    def state(self) -> EngineState: ...
    def init(self, address: str) -> None: ...
    def join_token(self, role: str) -> str: ...
    def join(self, token: str, manager: str, address: str) -> None: ...
    def nodes(self) -> list[NodeState]: ...
    def update_node(self, node_id: str, labels: dict[str, str], role: str | None) -> None: ...
    def images(self) -> set[str]: ...
    def service_images(self, name_prefix: str) -> set[str]: ...
    def load_from(self, refs: list[str], source: str | None) -> None: ...
    def remove_volumes(self, stack: str) -> list[str]: ...


@dataclass(frozen=True)
class RemoteEngine:
    """The engine at `url` (e.g. ssh://root@10.0.0.5) through the docker CLI, each call bounded in time.

    Plain subprocess, not python-on-whales: its errors carry the whole command line, and `swarm join`'s holds the
    token; here a failure reports the engine's answer only.
    """

    url: str

    def _docker(self, *argv: str, secret: str | None = None, timeout: float = ENGINE_TIMEOUT_S) -> str:
        # its own process group: on a timeout the ssh that the docker CLI started goes too (it holds the pipes)
        process = subprocess.Popen(
            ["docker", "--host", self.url, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise EngineError(f"no answer from {self.url} within {timeout:.0f} s") from None
        if process.returncode != 0:
            message = (stderr or stdout).strip().splitlines()
            text = message[-1] if message else f"exit status {process.returncode}"
            raise EngineError(text.replace(secret, "***") if secret else text)
        return stdout.strip()

    def state(self) -> EngineState:
        info = json.loads(self._docker("info", "--format", "{{json .Swarm}}", timeout=PROBE_TIMEOUT_S))
        return EngineState(
            swarm=info.get("LocalNodeState") or "inactive",
            node_id=info.get("NodeID") or None,
            cluster_id=(info.get("Cluster") or {}).get("ID") or None,
            manager=bool(info.get("ControlAvailable")),
        )

    def init(self, address: str) -> None:
        self._docker(*_init_args(address))

    def join_token(self, role: str) -> str:
        return self._docker("swarm", "join-token", "--quiet", role)

    def join(self, token: str, manager: str, address: str) -> None:
        self._docker(*_join_args(token, manager, address), secret=token)

    def nodes(self) -> list[NodeState]:
        ids = self._docker("node", "ls", "--quiet").split()
        return [_node_state(raw) for raw in json.loads(self._docker("node", "inspect", *ids))] if ids else []

    def update_node(self, node_id: str, labels: dict[str, str], role: str | None) -> None:
        argv = [arg for key, value in labels.items() for arg in ("--label-add", f"{key}={value}")]
        if role is not None:
            argv += ["--role", role]
        self._docker("node", "update", *argv, node_id)

    def images(self) -> set[str]:
        """The `repository:tag` of every image this engine holds."""
        return set(self._docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").split())

    def service_images(self, name_prefix: str) -> set[str]:
        """The images the services whose names start with `name_prefix` run (without the digest Swarm pins)."""
        listed = self._docker("service", "ls", "--filter", f"name={name_prefix}", "--format", "{{.Image}}")
        return {image.split("@")[0] for image in listed.split()}

    def load_from(self, refs: list[str], source: str | None) -> None:
        copy_images(refs, source, self.url)

    def remove_volumes(self, stack: str) -> list[str]:
        """The stack's volumes on this host, once its containers are gone (a removed task's stops a moment after
        the stack; the exited ones of finished jobs stay until removed, and hold their volumes); their names."""
        label = f"label={NAMESPACE_LABEL}={stack}"
        deadline = time.monotonic() + VOLUME_RELEASE_TIMEOUT_S
        while self._docker("container", "ls", "--quiet", "--filter", label):
            if time.monotonic() > deadline:
                raise EngineError(f"{stack}'s containers still run after {VOLUME_RELEASE_TIMEOUT_S} s")
            time.sleep(1)
        exited = self._docker("container", "ls", "--all", "--quiet", "--filter", label).split()
        if exited:
            self._docker("container", "rm", "--force", *exited)
        volumes = self._docker("volume", "ls", "--quiet", "--filter", label).split()
        if volumes:
            self._docker("volume", "rm", *volumes)
        return volumes


def copy_images(refs: list[str], source: str | None, target: str, timeout: float = IMAGE_COPY_TIMEOUT_S) -> None:
    """`docker save` on the engine at `source` (None: DOCKER_HOST's, as DockerSwarm's) piped into `docker load` at
    `target`: one stream, so layers the images share travel once. Both ends bounded together; EngineError says
    which end failed and why."""
    saver = ["docker", *(["--host", source] if source else []), "save", *refs]
    save = subprocess.Popen(saver, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    load = subprocess.Popen(
        ["docker", "--host", target, "load", "--quiet"],
        stdin=save.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert save.stdout is not None
    save.stdout.close()  # the loader holds the pipe now: a loader that dies stops the saver
    try:
        _, load_error = load.communicate(timeout=timeout)
        _, save_error = save.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        for process in (save, load):
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        raise EngineError(f"copying {len(refs)} image(s) to {target} took longer than {timeout:.0f} s") from None
    for process, error, end in (
        (save, save_error, f"saving on {source or 'this engine'}"),
        (load, load_error, f"loading on {target}"),
    ):
        if process.returncode != 0:
            lines = error.decode(errors="replace").strip().splitlines()
            raise EngineError(f"{end} failed: {lines[-1] if lines else f'exit status {process.returncode}'}")


def _init_args(address: str) -> list[str]:
    """The control plane (2377) and gossip (7946) on the private address only, overlay traffic sent from it (its
    4789/udp socket is the kernel's, on every interface, whatever the flags: only a firewall closes it)."""
    return ["swarm", "init", "--advertise-addr", address, "--listen-addr", f"{address}:2377",
            "--data-path-addr", address]  # fmt: skip


def _join_args(token: str, manager: str, address: str) -> list[str]:
    return ["swarm", "join", "--token", token, "--advertise-addr", address, "--listen-addr", f"{address}:2377",
            "--data-path-addr", address, f"{manager}:2377"]  # fmt: skip


def _node_state(raw: dict) -> NodeState:
    status, spec = raw.get("Status") or {}, raw.get("Spec") or {}
    address = status.get("Addr") or ""
    if address in {"", "0.0.0.0"}:  # a manager may report its control address only
        address = (raw.get("ManagerStatus") or {}).get("Addr", "").rsplit(":", 1)[0]
    return NodeState(
        id=raw["ID"],
        hostname=(raw.get("Description") or {}).get("Hostname", ""),
        address=address,
        role=spec.get("Role", ""),
        status=status.get("State", "unknown"),
        availability=spec.get("Availability", ""),
        labels=dict(spec.get("Labels") or {}),
    )
