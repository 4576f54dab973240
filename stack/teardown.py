"""Down: remove component stacks, and on request their volumes or everything the prefix owns."""

from __future__ import annotations

import time
from collections.abc import Callable

from python_on_whales import DockerException, docker

from stack import names, secrets, swarm
from stack.apply import forget
from stack.config import Settings
from stack.progress import step

REMOVAL_TIMEOUT_S = 90


def down(settings: Settings, selected: list[str], volumes: bool) -> None:
    for component in reversed(selected):
        stack_name = names.stack(settings.prefix, component)
        with step(f"removing {component} (stack {stack_name})"):
            docker.stack.remove(stack_name)
            _wait_gone(stack_name)
            forget(settings.prefix, component)
            if volumes:
                stale = docker.volume.list(filters=[("label", f"{swarm.NAMESPACE_LABEL}={stack_name}")])
                if stale:
                    docker.volume.remove(stale)


def purge(settings: Settings) -> None:
    """Remove every secret, config and network labelled with the prefix (the CA and passwords too)."""
    label = {"label": f"{names.PREFIX_LABEL}={settings.prefix}"}
    with step(f"removing secrets, configs and network of prefix {settings.prefix}"):
        for service in docker.service.list(filters=list(label.items())):  # stray one-shot readers
            service.remove()
        secrets.remove(secrets.listed(label))
        configs = docker.config.list(filters=label)
        if configs:
            docker.config.remove(configs)
        network = names.network(settings.prefix)
        if docker.network.exists(network):
            _retry(lambda: docker.network.remove(network))
        for node in docker.node.list():
            stale = [k for k in (node.spec.labels or {}) if k.startswith(f"{settings.prefix}.")]
            if stale:
                docker.node.update(node, rm_labels=stale)
        (settings.build_dir / "ca.crt").unlink(missing_ok=True)


def _wait_gone(stack_name: str) -> None:
    """`docker stack rm` returns before the containers are gone; volumes cannot go before them.

    Swarm leaves the exited containers of completed jobs behind, so those are removed here.
    """
    deadline = time.monotonic() + REMOVAL_TIMEOUT_S
    selector = [("label", f"{swarm.NAMESPACE_LABEL}={stack_name}")]
    while docker.service.list(filters=selector) or docker.container.list(filters=selector):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stack_name} still has running containers after {REMOVAL_TIMEOUT_S} s")
        time.sleep(0.5)
    exited = docker.container.list(all=True, filters=selector)
    if exited:
        docker.container.remove(exited, force=True)


def _retry(action: Callable[[], None], attempts: int = 20) -> None:
    """Networks linger a moment after their last container; try again for up to ten seconds."""
    for attempt in range(attempts):
        try:
            action()
            return
        except DockerException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
