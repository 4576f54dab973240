"""What the engine knows about each component: its stack template, images, secrets and front door.

One entry per component; the order of COMPONENTS is the order `up` deploys them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Image:
    """An image a component runs: built from `context` in local mode, or pulled as `registry`."""

    name: str
    context: Path
    registry: str | None = None  # pinned official image; None = always built from this repo


@dataclass(frozen=True)
class Component:
    name: str
    template_dir: Path
    images: tuple[Image, ...]
    secrets: tuple[str, ...] = ()  # generated secrets, by short name
    requires: tuple[str, ...] = ()
    subdomain: str | None = None  # None: internal only; "": the bare domain
    upstream: tuple[str, int] | None = None  # (service, port) nginx proxies the subdomain to
    health_path: str | None = None  # path on the upstream that says whether the component works
    database: bool = False  # gets its own Postgres role and database
    warehouse: str | None = None  # "reader" or "writer" of the warehouse schemas
    config_files: tuple[str, ...] = field(default=())  # templates rendered beside the stack file


POSTGRES = Component(
    name="postgres",
    template_dir=ROOT / "stack" / "postgres",
    images=(Image("postgres", ROOT / "stack" / "postgres", registry="postgres:15.13-bookworm"),),
    secrets=("postgres_password",),
    config_files=("init.sh",),
)

DB_CONNECT = Component(
    name="db_connect",
    template_dir=ROOT / "db_connect",
    images=(Image("db_connect", ROOT / "db_connect"),),
    secrets=("db_connect_db_password", "db_connect_api_key"),
    requires=("postgres",),
    subdomain="api",
    upstream=("api", 8000),
    health_path="/health",
    database=True,
    warehouse="reader",
)

WEBSERVER = Component(
    name="webserver",
    template_dir=ROOT / "webserver",
    images=(Image("webserver", ROOT / "webserver", registry="nginx:1.28.0-bookworm"),),
    subdomain="",
    config_files=("nginx.conf", "index.html"),
)

COMPONENTS: dict[str, Component] = {c.name: c for c in (POSTGRES, DB_CONNECT, WEBSERVER)}
