"""Down: remove component stacks in reverse deploy order, and on request their volumes or everything the
prefix owns."""

from __future__ import annotations

import time
from collections.abc import Callable

from stack import components, names
from stack.apply import forget
from stack.config import Settings
from stack.progress import step
from stack.swarm import Swarm

REMOVAL_TIMEOUT_S = 90


def down(
    swarm: Swarm,
    settings: Settings,
    selected: list[str],
    volumes: bool,
    poll_s: float = 0.5,
    elsewhere: Callable[[str], list[str]] | None = None,
) -> list[str]:
    """Remove the stacks (and with `volumes` their volumes here, and on the other nodes through `elsewhere`);
    returns the problems of nodes whose volumes stayed, already said."""
    problems: list[str] = []
    for component in reversed(components.deploy_order(selected)):
        stack_name = names.stack(settings.prefix, component)
        with step(f"removing {component} (stack {stack_name})"):
            swarm.remove_stack(stack_name)
            deadline = time.monotonic() + REMOVAL_TIMEOUT_S
            while not swarm.stack_gone(stack_name):  # `docker stack rm` returns before the containers are gone
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{stack_name} still has running containers after {REMOVAL_TIMEOUT_S} s")
                time.sleep(poll_s)
            forget(swarm, settings.prefix, component)
            if volumes:
                swarm.remove_volumes(stack_name)
                if elsewhere is not None:
                    problems += elsewhere(stack_name)
    return problems


def purge(swarm: Swarm, settings: Settings, keep: set[str] = frozenset()) -> None:
    """Remove every secret, config and network labelled with the prefix (the CA and passwords too), except
    the configs named in `keep` (the deploy lock this command holds)."""
    labels = names.labels(settings.prefix)
    with step(f"removing secrets, configs and network of prefix {settings.prefix}"):
        swarm.remove_services(labels)  # stray one-shot readers
        swarm.remove_secrets(swarm.secrets(labels))
        swarm.remove_configs([c.name for c in swarm.configs(labels) if c.name not in keep])
        network = names.network(settings.prefix)
        if swarm.network_exists(network):
            swarm.remove_network(network)
        swarm.remove_node_labels(f"{settings.prefix}.")
        (settings.build_dir / "ca.crt").unlink(missing_ok=True)
