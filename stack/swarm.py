"""Read-only questions about what runs in the swarm, shared by apply, verify, status and down."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from python_on_whales import DockerException, docker
from python_on_whales.components.service.cli_wrapper import Service
from python_on_whales.components.task.cli_wrapper import Task

from stack import names

NAMESPACE_LABEL = "com.docker.stack.namespace"
DIGEST_LABEL = "sawmill.digest"


def services(stack_name: str) -> list[Service]:
    return sorted(docker.service.list(filters=[("label", f"{NAMESPACE_LABEL}={stack_name}")]), key=_name)


def _name(service: Service) -> str:
    return service.spec.name


def is_job(service: Service) -> bool:
    mode = service.spec.mode or {}
    return "ReplicatedJob" in mode or "GlobalJob" in mode


def desired_replicas(service: Service) -> int | None:
    """Replicas asked for; None for global services and jobs, which have no fixed count."""
    replicated = (service.spec.mode or {}).get("Replicated")
    return int(replicated.get("Replicas", 1)) if replicated is not None else None


def tasks(service: Service) -> list[Task]:
    """The service's tasks, newest first; a task Swarm removes while it is being read is left out."""
    found = []
    for task in docker.service.ps(service):
        try:
            created = task.created_at
        except DockerException:
            continue
        found.append((created or dt.datetime.min.replace(tzinfo=dt.UTC), task))
    return [task for _, task in sorted(found, key=lambda pair: pair[0], reverse=True)]


def running(service_tasks: list[Task]) -> int:
    return sum(1 for t in service_tasks if t.desired_state == "running" and t.status.state == "running")


@dataclass(frozen=True)
class Deployed:
    """What `up` last deployed for a component: the digest of its plan and its stack file."""

    config_name: str
    digest: str
    stack_file: str


def deployed(prefix: str, component: str) -> Deployed | None:
    found = [
        c
        for c in docker.config.list(filters={"label": f"{names.COMPONENT_LABEL}={component}"})
        if (c.spec.labels or {}).get(names.PREFIX_LABEL) == prefix and DIGEST_LABEL in (c.spec.labels or {})
    ]
    if not found:
        return None
    latest = max(found, key=lambda c: c.created_at)
    return Deployed(latest.spec.name, latest.spec.labels[DIGEST_LABEL], base64.b64decode(latest.spec.data).decode())


def config_exists(name: str) -> bool:
    return any(c.spec.name == name for c in docker.config.list(filters={"name": name}))


def node_labelled(label: str) -> bool:
    return any(label in (node.spec.labels or {}) for node in docker.node.list())


def update_started_after(service: Service, since: dt.datetime) -> str | None:
    """The state of the service's update if it began after `since` (i.e. was caused by this run)."""
    status = service.update_status
    if status is None or not status.started_at:
        return None
    started = dt.datetime.fromisoformat(status.started_at[:26].rstrip("Z") + "+00:00")
    return status.state if started >= since else None
