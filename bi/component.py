"""BI at bi.<domain>: Apache Superset (built here from PyPI) or Metabase (its official image), set up unattended.

Either engine keeps its application data in its own Postgres database (role and database `bi`), reads the
warehouse as that role (read-only), gets Presto as a second data source when the presto component is enabled,
and loads the starter dashboards shipped in this folder. Both answer `/api/health` on port 8088 behind nginx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stack.component import PYTHON, Component, Image, Route

HERE = Path(__file__).resolve().parent
Engine = Literal["metabase", "superset"]
ENGINES = ("metabase", "superset")
# The Metabase release the setup client (bi/metabase/setup.py) was written against; keep them in step.
METABASE_IMAGE = "metabase/metabase:v0.56.9"
# Superset: gunicorn workers x (a pool of 3, superset_config.py), plus the setup job. Metabase: its
# application-DB pool and its warehouse pool (both set in the stack). The default platform fits in 90.
SUPERSET_CONNECTIONS_PER_WORKER = 3
METABASE_CONNECTIONS = 7


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: Engine | None = Field(
        default=None,
        description="'superset' (built here from PyPI) or 'metabase' (its official image, registry mode only);"
        " default: metabase with images = 'registry', superset with images = 'local'",
    )
    workers: int = Field(default=1, ge=1, le=16, description="Superset's gunicorn workers (4 threads, ~300 MB each)")
    refresh_seconds: int = Field(
        default=10, ge=0, le=3600, description="how often the live host-metrics dashboard refreshes; 0: never"
    )

    @field_validator("engine", mode="before")
    @classmethod
    def _known_engine(cls, value: object) -> object:
        if value is not None and value not in ENGINES:
            raise ValueError(
                f"{value!r} is not a BI engine Sawmill runs: set bi.engine = 'superset' (built here) or 'metabase'"
                " (its official image, with images = 'registry'), or leave it out to pick by images"
            )
        return value


def engine(settings: Any) -> Engine:
    """The engine these settings run: the one named, or the one their image mode can run."""
    chosen: Engine | None = settings.bi.engine
    if chosen is not None:
        return chosen
    return "metabase" if settings.images == "registry" else "superset"


def _connections(settings: Any) -> int:
    if engine(settings) == "metabase":
        return METABASE_CONNECTIONS
    return settings.bi.workers * SUPERSET_CONNECTIONS_PER_WORKER + SUPERSET_CONNECTIONS_PER_WORKER


COMPONENT = Component(
    name="bi",
    folder=HERE,
    images=(
        # Superset from PyPI on Sawmill's Python image, in either image mode (no official image is pinned)
        Image("bi", HERE / "superset", parent=PYTHON, used=lambda s: engine(s) == "superset"),
        # Metabase: no reachable registry has its artifacts, so no local build (left out in local mode)
        Image("bi", None, registry=METABASE_IMAGE, used=lambda s: engine(s) == "metabase"),
        # Metabase's setup job: a client of its REST API (bi/metabase/setup.py), with Superset's starter
        # dashboards copied into its build context (one copy of them: bi/superset/dashboards/*.yaml)
        Image(
            "bi_setup",
            HERE / "metabase",
            includes=(HERE / "superset" / "dashboards",),
            parent=PYTHON,
            used=lambda s: engine(s) == "metabase",
        ),
    ),
    secrets=("bi_secret_key", "bi_admin_password"),
    requires=("postgres",),
    route=Route("bi", "web", 8088, health_path="/api/health", nginx="nginx.conf.j2"),
    database=True,
    # Reads consumption (the live dashboard reads the sink's view consumption.host_metrics) and quality; writes nothing.
    warehouse="reader",
    config_files=("metabase-entrypoint.sh",),
    settings=Settings,
    db_connections=_connections,
    hints=(
        "BI: log in as admin (Metabase: admin@sawmill.invalid) with the password from"
        " {deploy} secrets show bi_admin_password",
    ),
)
