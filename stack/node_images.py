"""Every node holds every image the platform runs: copied over SSH from the engine that built them.

Swarm places a task on whichever node fits, and only that node's images count; an image built by `up` is in no
registry a node could pull from. So each node gets, as `docker save | docker load` over SSH, the images it lacks
(one stream per node: layers the images share travel once). A task rescheduled after a node loss then starts at
once, without the manager. `up --hosts` copies after building; `nodes` copies what the deployed services run to
a node that joins later or comes back. Why not a registry: README, "Several nodes".
"""

from __future__ import annotations

from collections.abc import Callable

from stack.nodes import Host, on_other_hosts
from stack.progress import say
from stack.swarm import Engine, EngineError


def ship(refs: list[str], hosts: list[Host], connect: Callable[[Host], Engine], source: str | None,
         source_node: str | None) -> list[str]:  # fmt: skip
    """Copies to each host what it lacks of `refs`, from the engine at `source` (None: DOCKER_HOST's) whose swarm
    node is `source_node` (skipped); returns one problem per host that could not be filled, already said."""
    if not refs:
        return []

    def fill(host: Host, engine: Engine) -> None:
        missing = sorted(set(refs) - engine.images())
        if missing:
            say(f"→ {host.name}: copying {len(missing)} image(s) it lacks: {', '.join(missing)}")
            engine.load_from(missing, source)
            say(f"✓ {host.name}: has every image")

    return on_other_hosts(
        hosts,
        connect,
        source_node,
        fill,
        lambda host, exc: f"{host.name}: images not copied ({exc}); a task placed there cannot start until they are",
    )


def ship_running(manager: Engine, source: str, source_node: str | None, name_prefix: str, hosts: list[Host],
                 connect: Callable[[Host], Engine]) -> list[str]:  # fmt: skip
    """The images the deployed services (names starting with `name_prefix`) run, as far as the manager at
    `source` holds them, to every host that lacks them: for a node that joined after `up`, or missed one."""
    try:
        running = manager.service_images(name_prefix) & manager.images()
    except EngineError as exc:
        problem = f"images not copied: the manager did not list them ({exc})"
        say(f"! {problem}")
        return [problem]
    return ship(sorted(running), hosts, connect, source, source_node)
