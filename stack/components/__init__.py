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
    context: Path | None  # None: no local build is possible (no reachable registry has its artifacts)
    registry: str | None = None  # pinned official image; None = always built from this repo
    includes: tuple[Path, ...] = ()  # folders of this repo copied into the build context under their own name
    extends_registry: bool = False  # registry mode builds FROM `registry` (our files on the official image)
    prepare: tuple[str, ...] = ()  # command run in `context` before a build (e.g. fetching jars)
    generated: tuple[str, ...] = ()  # folders `prepare` fills: derived from other files, so not digested
    parent: Image | None = None  # a local image this one is built FROM (built first); None: the debootstrap base


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
    upstream_image: str | None = None  # image of the upstream service, when it is not the first image
    basic_auth: str | None = None  # generated secret whose value nginx asks for (user "admin") on the subdomain
    pinned: bool = False  # stateful: runs on the node labelled to hold its volumes
    request_roles: tuple[str, ...] = ()  # roles its clients' requests run as (the init job makes them); they read too
    json_api: bool = False  # nginx streams bodies to it, leaves their size to it, and answers its own errors in JSON


POSTGRES = Component(
    name="postgres",
    template_dir=ROOT / "stack" / "postgres",
    images=(Image("postgres", ROOT / "stack" / "postgres", registry="postgres:15.13-bookworm"),),
    secrets=("postgres_password",),
    config_files=("init.sh",),
    pinned=True,
)

# Python, a venv and a pip helper on the base: what Sawmill's own Python images start FROM.
PYTHON = Image("python", ROOT / "stack" / "python")

DB_CONNECT = Component(
    name="db_connect",
    template_dir=ROOT / "db_connect",
    images=(Image("db_connect", ROOT / "db_connect", parent=PYTHON),),
    secrets=("db_connect_db_password", "db_connect_api_key", "db_connect_jwt_secret"),
    requires=("postgres",),
    subdomain="api",
    upstream=("api", 8000),
    health_path="/health",
    database=True,
    warehouse="reader",
    json_api=True,
    request_roles=("api_reader", "api_writer"),
)

WEBSERVER = Component(
    name="webserver",
    template_dir=ROOT / "webserver",
    images=(Image("webserver", ROOT / "webserver", registry="nginx:1.28.0-bookworm"),),
    subdomain="",
    config_files=("nginx.conf", "index.html"),
)

KAFKA = Component(
    name="kafka",
    template_dir=ROOT / "kafka",
    images=(
        # keep the version in step with kafka/pom.xml
        Image(
            "kafka",
            ROOT / "kafka",
            registry="apache/kafka:3.9.1",
            prepare=("sh", "fetch-jars.sh"),
            generated=("lib",),
        ),
        Image("parse_sources", ROOT / "parse_sources", parent=PYTHON),
        # no local build is possible (no reachable registry has its artifacts); registry mode only
        Image("console", None, registry="redpandadata/console:v2.8.5"),
    ),
    secrets=("kafka_db_password",),
    requires=("postgres",),
    subdomain="kafka",
    upstream=("console", 8080),
    upstream_image="console",
    basic_auth="kafka_console_password",
    health_path="/admin/health",
    database=True,
    warehouse="writer",
    config_files=("console.yml",),
    pinned=True,
)

AIRFLOW = Component(
    name="airflow",
    template_dir=ROOT / "airflow",
    images=(
        # our DAGs and parse_sources on Airflow: built FROM the pinned official image in registry mode
        Image(
            "airflow",
            ROOT / "airflow",
            registry="apache/airflow:3.3.2-python3.11",
            includes=(ROOT / "parse_sources",),
            extends_registry=True,
        ),
    ),
    secrets=("airflow_db_password", "airflow_secret_key", "airflow_jwt_secret", "airflow_admin_password"),
    requires=("postgres",),
    subdomain="schedule",
    upstream=("api-server", 8080),
    health_path="/api/v2/monitor/health",
    database=True,
    warehouse="writer",
)

COMPONENTS: dict[str, Component] = {c.name: c for c in (POSTGRES, DB_CONNECT, KAFKA, AIRFLOW, WEBSERVER)}
