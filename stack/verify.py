"""Verify: wait until a stack's services converged, and until every route answers through the entrance.

On failure the error carries what a person needs next: the failing task's error and its last log lines.
Swarm itself rolls a failed update back (update_config.failure_action), so the old version keeps serving.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from urllib.parse import urlsplit

from stack.config import Settings
from stack.http import get
from stack.progress import say
from stack.swarm import ServiceState, Swarm

IN_PROGRESS = {"updating", "rollback_started"}
FAILED = {"rollback_completed", "rollback_paused", "paused"}


class DeployError(Exception):
    """A component did not converge; the message says why and shows the evidence."""


def wait_converged(swarm: Swarm, stack_name: str, since: dt.datetime, timeout_s: float, poll_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    last_report = time.monotonic()
    while True:
        services = swarm.services(stack_name)
        failed = [s for s in services if s.update_since(since) in FAILED]
        if failed:
            raise DeployError("\n".join(explain(swarm, s, since) for s in failed))
        pending = [f"{s.name}: {problem}" for s in services if (problem := pending_reason(s, since))]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise DeployError(
                f"{stack_name} did not converge within {timeout_s:.0f} s\n"
                + "\n".join(explain(swarm, s, since) for s in services if pending_reason(s, since))
            )
        if time.monotonic() - last_report > 5:
            say(f"  waiting: {'; '.join(pending)}")
            last_report = time.monotonic()
        time.sleep(poll_s)


def pending_reason(service: ServiceState, since: dt.datetime) -> str | None:
    """None when the service is where it should be, else what it waits for."""
    update = service.update_since(since)
    if update in IN_PROGRESS:
        return update.replace("_", " ")
    if service.job:
        return None if service.job_state == "complete" else f"job {service.job_state or 'not started'}"
    want = service.replicas if service.replicas is not None else 1  # global: at least one
    return None if service.running >= want else f"{service.running}/{want} running"


def explain(swarm: Swarm, service: ServiceState, since: dt.datetime) -> str:
    lines = [f"service {service.name} failed to converge"]
    if service.update_message:
        lines.append(f"  swarm: {service.update_state}: {service.update_message}")
    lines.extend(swarm.evidence(service.name, since))
    return "\n".join(lines)


def entrance_address(settings: Settings) -> str:
    """Where the entrance answers: as configured, else the manager that DOCKER_HOST=ssh://... names, else here."""
    if settings.entrance_address:
        return settings.entrance_address
    engine = urlsplit(os.environ.get("DOCKER_HOST", ""))
    return engine.hostname if engine.scheme == "ssh" and engine.hostname else "127.0.0.1"


def wait_routes(settings: Settings, checks: list[tuple[str, str]], cafile: str | None, timeout_s: float) -> None:
    """Wait until each (host, path) answers through the entrance with a status below 500."""
    address = entrance_address(settings)
    deadline = time.monotonic() + timeout_s
    pending = list(checks)
    last: dict[tuple[str, str], str] = {}
    while pending:
        for check in list(pending):
            try:
                status = get(check[0], settings.https_port, check[1], cafile=cafile, timeout=3, address=address).status
            except OSError as exc:
                last[check] = str(exc)
                continue
            last[check] = f"HTTP {status}"
            if status < 500:
                pending.remove(check)
        if pending and time.monotonic() > deadline:
            raise DeployError(
                f"no answer through the entrance at {address}:\n"
                + "\n".join(f"  {settings.url(h).rstrip('/')}{p}: {last.get((h, p))}" for h, p in pending)
            )
        if pending:
            time.sleep(0.5)
