"""`down --volumes` on a swarm of several nodes: a volume lives on the node whose task made it, and the swarm's
manager can remove only its own. So, given the hosts list, each other node's volumes of a stack are removed over
SSH, as `up --hosts` copies images there (stack/node_images.py).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from stack.node_images import PARALLEL_HOSTS
from stack.nodes import Host
from stack.progress import say
from stack.swarm import Engine, EngineError


def remove(stack: str, hosts: list[Host], connect: Callable[[Host], Engine], source_node: str | None) -> list[str]:
    """`down --volumes` on the hosts other than `source_node` (whose volumes the swarm's own engine removes): each
    host's volumes of `stack`; returns one problem per host left with them, already said."""

    def remove_on(host: Host) -> str | None:
        try:
            engine = connect(host)
            if source_node is not None and engine.state().node_id == source_node:
                return None
            removed = engine.remove_volumes(stack)
            if removed:
                say(f"  {host.name}: removed volume(s) {', '.join(removed)}")
        except EngineError as exc:
            problem = f"{host.name}: volumes of {stack} not removed ({exc}); remove them there: docker volume ls"
            say(f"! {problem}")
            return problem
        return None

    with ThreadPoolExecutor(max_workers=PARALLEL_HOSTS) as pool:
        return [problem for problem in pool.map(remove_on, hosts) if problem]
