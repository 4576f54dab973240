"""Postgres: the warehouse (schemas raw, curated, consumption) and each component's own role and database.

Its init job reads who needs what from the other components' declarations (databases, warehouse readers and
writers, request roles), so the grants live here and no other stack lists them.
"""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from stack.component import Component, Image

HERE = Path(__file__).resolve().parent
RESERVED_CONNECTIONS = 10  # superuser slots, the init job, a person with psql


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_connections: int = Field(
        default=150, ge=20, le=5000, description="the server's max_connections; components' budgets must fit"
    )


COMPONENT = Component(
    name="postgres",
    folder=HERE,
    images=(Image("postgres", HERE, registry="postgres:15.13-bookworm"),),
    secrets=("postgres_password",),
    config_files=("init.sh",),
    pins=lambda _: ("postgres",),
    settings=Settings,
    db_capacity=lambda s: s.postgres.max_connections - RESERVED_CONNECTIONS,
)
