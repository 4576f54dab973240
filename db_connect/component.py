"""db_connect: the REST API over the warehouse (PostgREST-compatible), at api.<domain>."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from db_connect.settings import EXPOSED_SCHEMAS
from stack.component import PYTHON, CommandInService, Component, Image, Route

HERE = Path(__file__).resolve().parent
IDENTIFIER = r"^[a-z_][a-z0-9_]{0,62}$"
POOL_SIZE = 10  # db_connect's own default (db_connect/settings.py pool_max_size)
CONNECTIONS_PER_REPLICA = POOL_SIZE + 1  # the pool and the schema-change listener


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(default=2, ge=1, le=20)
    exposed_schemas: list[Annotated[str, Field(pattern=IDENTIFIER)]] = list(EXPOSED_SCHEMAS)
    api_key_role: str = Field(default="api_reader", pattern=IDENTIFIER)
    anonymous_role: str | None = Field(default=None, pattern=IDENTIFIER)
    max_page_size: int = Field(default=1000, ge=1, le=1_000_000)
    prepared_statements: bool = True  # false when a transaction-mode pooler sits before Postgres


COMPONENT = Component(
    name="db_connect",
    folder=HERE,
    images=(Image("db_connect", HERE, parent=PYTHON),),
    secrets=("db_connect_api_key", "db_connect_jwt_secret"),
    requires=("postgres",),
    # nginx streams bodies to it, leaves their size to it, and answers its own errors in JSON (nginx.conf.j2)
    route=Route("api", "api", 8000, health_path="/health", nginx="nginx.conf.j2"),
    database=True,
    warehouse="reader",
    request_roles=("api_anon", "api_reader", "api_writer"),
    settings=Settings,
    db_connections=lambda s: s.db_connect.replicas * CONNECTIONS_PER_REPLICA,
    hints=("API key: {deploy} secrets show db_connect_api_key",),
    commands={
        "api-keys": CommandInService(
            service="api",
            argv=("python", "-m", "db_connect", "keys"),
            help="create, list and revoke API keys (each runs as a Postgres role); e.g. api-keys create"
            " --role api_writer --name loader",
        )
    },
)
