"""How Sawmill names what it creates in the swarm: everything starts with the configured prefix.

The prefix lets two platforms (say, a user's and the e2e tests') share one swarm without touching each other.
"""

from __future__ import annotations


def stack(prefix: str, component: str) -> str:
    return f"{prefix}_{component}"


def service(prefix: str, component: str, name: str) -> str:
    return f"{prefix}_{component}_{name}"


def secret(prefix: str, short: str) -> str:
    return f"{prefix}_{short}"


def network(prefix: str) -> str:
    return f"{prefix}_net"


def node_label(prefix: str, pin: str) -> str:
    """The node label that keeps a stateful service on the node holding its volume (a component's `pins`)."""
    return f"{prefix}.{pin}"


PREFIX_LABEL = "sawmill.prefix"
COMPONENT_LABEL = "sawmill.component"


def labels(prefix: str) -> dict[str, str]:
    """The label on everything a platform creates outside its stacks (secrets, configs, the network)."""
    return {PREFIX_LABEL: prefix}
