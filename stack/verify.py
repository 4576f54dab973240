"""Verify: wait until a stack's services converged, and until every subdomain answers through nginx.

On failure the error carries what a person needs next: the failing task's error and its last log lines.
Swarm itself rolls a failed update back (update_config.failure_action), so the old version keeps serving.
"""

from __future__ import annotations

import datetime as dt
import time

from python_on_whales import DockerException, docker
from python_on_whales.components.service.cli_wrapper import Service
from python_on_whales.components.task.cli_wrapper import Task

from stack import swarm
from stack.config import Settings
from stack.http import get
from stack.progress import say

IN_PROGRESS = {"updating", "rollback_started"}
FAILED = {"rollback_completed", "rollback_paused", "paused"}
LOG_LINES = 20


class DeployError(Exception):
    """A component did not converge; the message says why and shows the evidence."""


def wait_converged(stack_name: str, since: dt.datetime, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_report = 0.0
    while True:
        pending = []
        for service in swarm.services(stack_name):
            try:
                problem = _pending(service, since)
            except DockerException:  # a task or service vanished while it was being looked at
                problem = "changing"
            if problem == "failed":
                raise DeployError(_explain(service, since))
            if problem:
                pending.append(f"{service.spec.name}: {problem}")
        if not pending:
            return
        if time.monotonic() > deadline:
            failing = [s for s in swarm.services(stack_name) if _pending(s, since)]
            raise DeployError(
                f"{stack_name} did not converge within {timeout_s:.0f} s\n"
                + "\n".join(_explain(s, since) for s in failing)
            )
        if time.monotonic() - last_report > 5:
            say(f"  waiting: {'; '.join(pending)}")
            last_report = time.monotonic()
        time.sleep(0.5)


def _pending(service: Service, since: dt.datetime) -> str | None:
    """None when the service is where it should be, "failed" when Swarm gave up, else what it waits for."""
    update = swarm.update_started_after(service, since)
    if update in FAILED:
        return "failed"
    if update in IN_PROGRESS:
        return update.replace("_", " ")
    tasks = swarm.tasks(service)
    if swarm.is_job(service):
        if not tasks:
            return "job not started"
        state = tasks[0].status.state
        return None if state == "complete" else f"job {state}"
    want = swarm.desired_replicas(service)
    have = swarm.running(tasks)
    if want is None:  # global: one per eligible node
        want = max(1, sum(1 for t in tasks if t.desired_state == "running"))
    return None if have >= want else f"{have}/{want} running"


def _explain(service: Service, since: dt.datetime) -> str:
    lines = [f"service {service.spec.name} failed to converge"]
    if service.update_status and service.update_status.message:
        lines.append(f"  swarm: {service.update_status.state}: {service.update_status.message}")
    # tasks this run started that are not serving: after a rollback they are shut down, their error lost,
    # but their containers keep the health check's output and the logs
    recent = [
        t
        for t in swarm.tasks(service)
        if t.created_at and t.created_at >= since and not (t.desired_state == "running" and t.status.state == "running")
    ][:2]
    for task in recent:
        lines.append(f"  task {task.id[:12]}: {task.status.state}: {task.status.err or task.status.message}")
        container = _container(task)
        if container:
            lines.extend(_health(container))
        lines.extend(f"    | {line}" for line in _logs(container or task.id))
    if not recent:
        lines.append("  no task of this run failed; the service's last log lines:")
        lines.extend(f"    | {line}" for line in _logs(service.id))
    return "\n".join(lines)


def _container(task: Task) -> str | None:
    """The task's container if it is on this node (Swarm keeps a few stopped ones as history)."""
    status = task.status.container_status
    if status and status.container_id and docker.container.exists(status.container_id):
        return status.container_id
    return None


def _health(container: str) -> list[str]:
    health = docker.container.inspect(container).state.health
    if not health or not health.log:
        return []
    output = [line for line in (health.log[-1].output or "").splitlines() if line.strip()]
    return [f"    last health check: {health.status}: {output[-1] if output else 'no output'}"]


def _logs(target: str) -> list[str]:
    """Last log lines of a container on this node, else of a task or service through the swarm."""
    try:
        if docker.container.exists(target):
            return docker.container.logs(target, tail=LOG_LINES).splitlines()[-LOG_LINES:]
        return docker.service.logs(target, tail=LOG_LINES, task_ids=False).splitlines()[-LOG_LINES:]
    except DockerException:
        return []


def wait_routes(settings: Settings, checks: list[tuple[str, str]], cafile: str | None, timeout_s: float) -> None:
    """Wait until each (host, path) answers through nginx on 127.0.0.1 with a status below 500."""
    deadline = time.monotonic() + timeout_s
    pending = list(checks)
    last: dict[tuple[str, str], str] = {}
    while pending:
        for check in list(pending):
            try:
                status = get(check[0], settings.https_port, check[1], cafile=cafile, timeout=3).status
            except OSError as exc:
                last[check] = str(exc)
                continue
            last[check] = f"HTTP {status}"
            if status < 500:
                pending.remove(check)
        if pending and time.monotonic() > deadline:
            raise DeployError(
                "no answer through nginx:\n"
                + "\n".join(f"  {settings.url(h).rstrip('/')}{p}: {last.get((h, p))}" for h, p in pending)
            )
        if pending:
            time.sleep(0.5)
