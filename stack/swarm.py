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
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from python_on_whales import DockerException, docker

from stack.fifo import fifo

NAMESPACE_LABEL = "com.docker.stack.namespace"
SECRET_READ_TIMEOUT_S = 60
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

    def node_labels(self) -> list[dict[str, str]]: ...
    def label_this_node(self, label: str) -> None: ...
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
    def evidence(self, service: str, since: dt.datetime) -> list[str]: ...
    def logs(self, service: str, tail: int) -> str: ...
    def exec_in(self, service: str, argv: list[str]) -> str: ...
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
        with _quiet():
            return sorted(s.spec.name for s in docker.secret.list(filters=_label_filter(labels)))

    def secret_exists(self, name: str) -> bool:
        with _quiet():
            return any(s.spec.name == name for s in docker.secret.list(filters=[("name", name)]))

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
        """Through a one-shot service that mounts it (the only way Swarm gives one back).

        The service only sleeps, without a log driver, and the value comes back through `docker exec`: it is in
        no container log. The task is held to this node, where `docker exec` reaches it.
        """
        if not self.secret_exists(name):
            raise KeyError(name)
        service = docker.service.create(
            image,
            ["sleep", str(SECRET_READ_TIMEOUT_S)],
            secrets=[{"source": name, "target": "value"}],
            constraints=[f"node.id=={self._this_node()}"],
            log_driver="none",
            restart_condition="none",
            labels=labels,
            detach=True,
        )
        try:
            deadline = time.monotonic() + SECRET_READ_TIMEOUT_S
            while time.monotonic() < deadline:
                tasks = docker.service.ps(service)
                for task in tasks:
                    container = task.status.container_status and task.status.container_status.container_id
                    if task.status.state == "running" and container:
                        command = ["docker", "exec", container, "cat", "/run/secrets/value"]
                        return subprocess.run(command, capture_output=True, check=True).stdout
                if {t.status.state for t in tasks} & {"failed", "rejected", "complete"}:
                    raise DockerException(["secret reader"], 1, stderr=f"could not read secret {name}".encode())
                time.sleep(0.3)
            raise TimeoutError(f"reading secret {name} took longer than {SECRET_READ_TIMEOUT_S} s")
        finally:
            docker.service.remove(service)

    # --- configs ---
    def configs(self, labels: dict[str, str]) -> list[Config]:
        """Configs carrying every one of `labels`."""
        (key, value), *rest = labels.items()
        found = self._read_configs(docker.config.list(filters={"label": f"{key}={value}"}))
        return [c for c in found if all(c.labels.get(k) == v for k, v in rest)]

    def config(self, name: str) -> Config | None:
        found = [c for c in self._read_configs(docker.config.list(filters={"name": name})) if c.name == name]
        return found[0] if found else None

    @staticmethod
    def _read_configs(listed: list[object]) -> list[Config]:
        """The listed configs still there when read: the list is taken before each is inspected, so one that
        another `up` removed in between (its stale certificate or record) is simply gone, not an error."""
        read = []
        for c in listed:
            try:
                spec = c.spec  # type: ignore[attr-defined]
                created = c.created_at  # type: ignore[attr-defined]
            except DockerException as exc:
                if "not found" not in str(exc.stderr or ""):
                    raise
                continue
            read.append(Config(spec.name, dict(spec.labels or {}), base64.b64decode(spec.data), created))
        return read

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
    def _this_node(self) -> str:
        if self._node_id is None:
            self._node_id = docker.info().swarm.node_id
        return self._node_id

    def node_labels(self) -> list[dict[str, str]]:
        return [dict(node.spec.labels or {}) for node in docker.node.list()]

    def label_this_node(self, label: str) -> None:
        docker.node.update(self._this_node(), labels_add={label: "true"})

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
        listed = docker.service.list(filters=[("label", f"{NAMESPACE_LABEL}={stack}")])
        if not listed:
            return []
        # the raw inspection: python-on-whales' models leave out ports and secrets
        done = subprocess.run(["docker", "service", "inspect", *(s.id for s in listed)], capture_output=True, text=True)
        found = []
        for raw in json.loads(done.stdout or "[]"):  # a service removed meanwhile is left out
            try:
                found.append(self._state(raw, stack))
            except DockerException:
                continue
        return sorted(found, key=lambda s: s.name)

    def _state(self, raw: dict, stack: str) -> ServiceState:
        spec = raw["Spec"]
        mode = spec.get("Mode", {})
        job = "ReplicatedJob" in mode or "GlobalJob" in mode
        replicated = mode.get("Replicated")
        tasks = self._tasks(raw["ID"])
        update = raw.get("UpdateStatus") or {}
        container = spec["TaskTemplate"]["ContainerSpec"]
        ports = raw.get("Endpoint", {}).get("Spec", {}).get("Ports", [])
        replicas = int(replicated.get("Replicas", 1)) if replicated is not None else None
        return ServiceState(
            name=spec["Name"],
            stack=stack,
            job=job,
            replicas=replicas,
            running=sum(1 for t in tasks if t.desired_state == "running" and t.status.state == "running"),
            job_state=tasks[0].status.state if job and tasks else None,
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

    def exec_in(self, service: str, argv: list[str]) -> str:
        found = docker.container.list(filters=[("label", f"com.docker.swarm.service.name={service}")])
        if not found:
            raise LookupError(f"no running {service} container on this node")
        return docker.container.execute(found[0], argv)

    def run_check(self, image: str, command: list[str], mounts: list[Mount]) -> None:
        """Run to its end and raise with its output (`docker run` would pass stderr, where tools like `nginx -t`
        say what is wrong, to our terminal instead of into the error)."""
        container = docker.container.create(
            image, command, volumes=[(m.source.resolve(), m.target, "ro") for m in mounts], networks=["none"]
        )
        try:
            docker.container.start(container)
            if docker.container.wait(container) != 0:
                raise CheckFailed(docker.container.logs(container).strip())
        finally:
            docker.container.remove(container, force=True)
