"""What a component declares about itself, in the `component.py` beside its templates.

The engine reads only these declarations: it never asks for a component by name. A component's folder holds
`component.py` (a `COMPONENT = Component(...)`), `stack.yml.j2`, its config templates, Dockerfile and assets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Image:
    """An image a component runs: built from `context` in local mode, or pulled as `registry`."""

    name: str
    context: Path | None  # None: no local build is possible (no reachable registry has its artifacts)
    registry: str | None = None  # pinned official image; None = always built from this repo
    includes: tuple[Path, ...] = ()  # folders (or files) of this repo copied into the build context by their name
    extends_registry: bool = False  # registry mode builds FROM `registry` (our files on the official image)
    prepare: tuple[str, ...] = ()  # command run in `context` before a build (e.g. fetching jars)
    generated: tuple[str, ...] = ()  # folders `prepare` fills: derived from other files, so not digested
    parent: Image | None = None  # a local image this one is built FROM (built first); None: the debootstrap base
    # whether the settings use this image (e.g. one of two engines a component may run); None: always. Images of
    # one component that share a name must be used by disjoint settings: the templates see the used one by name.
    used: Callable[[Any], bool] | None = None

    def is_used(self, settings: Any) -> bool:
        return self.used is None or self.used(settings)


# Python, a venv and a pip helper on the base: what Sawmill's own Python images start FROM.
PYTHON = Image("python", ROOT / "stack" / "python")


@dataclass(frozen=True)
class Route:
    """A subdomain the entrance serves, proxied to one of the component's services."""

    subdomain: str  # "" is the bare domain
    service: str | None = None  # None: the entrance itself answers (its own landing page)
    port: int = 80
    image: str | None = None  # the image `service` runs; the route exists only where that image can be had
    health_path: str | None = None  # path on the service that says whether the component works
    basic_auth: str | None = None  # generated secret whose value the entrance asks for (user "admin")
    nginx: str | None = None  # template in the component's folder, rendered into its server block


@dataclass(frozen=True)
class Check:
    """A command run on a component's rendered files in a throwaway container before its stack deploys
    (e.g. `nginx -t`): `files` maps rendered file -> path in the container; `tls` mounts a throwaway
    certificate and key at these two paths."""

    command: tuple[str, ...]
    files: dict[str, str]
    tls: tuple[str, str] | None = None


@dataclass(frozen=True)
class Component:
    name: str
    folder: Path
    images: tuple[Image, ...] = ()
    secrets: tuple[str, ...] = ()  # generated secrets, by short name
    requires: tuple[str, ...] = ()  # deployed after these; enabling it without them is a config error
    route: Route | None = None
    entrance: bool = False  # publishes the platform's ports, terminates TLS, renders every route
    acme_service: str | None = None  # the entrance's service that obtains certificates when certificates = "acme"
    database: bool = False  # gets its own Postgres role and database (and secret <name>_db_password)
    warehouse: Literal["reader", "analyst", "writer"] | None = None  # reads consumption; reads every layer; writes
    request_roles: tuple[str, ...] = ()  # roles its clients' requests run as (the database makes them)
    config_files: tuple[str, ...] = ()  # templates rendered beside the stack file (sub-folders allowed)
    checks: tuple[Check, ...] = ()  # run on its rendered files before its stack deploys
    # the node labels (after `<prefix>.`) its services are pinned to, from the settings: stateful ones where their
    # volumes are, an entrance where DNS points (`up` places a missing one, stack/placement.py; `nodes` sets them
    # from the hosts list); its templates constrain each service with `node_label(<label>)`
    pins: Callable[[Any], tuple[str, ...]] | None = None
    settings: type[BaseModel] | None = None  # its section of the settings, `[<name>]` in sawmill.toml
    db_connections: Callable[[Any], int] | None = None  # Postgres connections it may hold, from the settings
    db_capacity: Callable[[Any], int] | None = None  # the database server: connections it offers to the others
    hints: tuple[str, ...] = ()  # lines printed after `up`; "{deploy}" is how to run deploy.py
    commands: dict[str, CommandInService] = field(default_factory=dict)  # deploy.py subcommands it adds
    default: bool = True  # in the default `components` list

    @property
    def stack_secrets(self) -> tuple[str, ...]:
        """The generated secrets its own stack mounts: its declared ones and its database password."""
        return (*self.secrets, *([f"{self.name}_db_password"] if self.database else []))

    @property
    def generated_secrets(self) -> tuple[str, ...]:
        """Every secret `up` generates for it: those its stack mounts and its route's basic-auth password
        (which only the entrance reads, as a derived htpasswd)."""
        basic_auth = (self.route.basic_auth,) if self.route and self.route.basic_auth else ()
        return (*self.stack_secrets, *basic_auth)

    @property
    def upstream_image(self) -> str | None:
        if self.route is None or self.route.service is None:
            return None
        return self.route.image or self.images[0].name


@dataclass(frozen=True)
class CommandInService:
    """A deploy.py subcommand that runs a program inside one of the component's running containers,
    passing its arguments through (so `deploy.py NAME --help` shows the program's own help)."""

    service: str
    argv: tuple[str, ...]
    help: str
