"""`down --volumes` on a swarm of several nodes: a volume lives on the node whose task made it, and the swarm's
manager can remove only its own. So, given the hosts list, each other node's volumes of a stack are removed over
SSH, as `up --hosts` copies images there (stack/node_images.py).
"""

from __future__ import annotations

from collections.abc import Callable

from stack.nodes import Host, on_other_hosts
from stack.progress import say
from stack.swarm import Engine


def remove(stack: str, hosts: list[Host], connect: Callable[[Host], Engine], source_node: str | None) -> list[str]:
    """`down --volumes` on the hosts other than `source_node` (whose volumes the swarm's own engine removes): each
    host's volumes of `stack`; returns one problem per host left with them, already said."""

    def remove_on(host: Host, engine: Engine) -> None:
        removed = engine.remove_volumes(stack)
        if removed:
            say(f"  {host.name}: removed volume(s) {', '.join(removed)}")

    return on_other_hosts(
        hosts,
        connect,
        source_node,
        remove_on,
        lambda host, exc: f"{host.name}: volumes of {stack} not removed ({exc}); remove them there: docker volume ls",
    )
