"""Presto at presto.<domain>: a coordinator and `presto.workers` workers, SQL over the warehouse (read-only, every
layer) and the Kafka topics, behind nginx's basic auth (Presto's own password check does nothing over HTTP)."""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stack.component import CommandInService, Component, Image, Route

HERE = Path(__file__).resolve().parent
HEAP_HEADROOM = 0.3  # Presto keeps 30 % of the heap out of queries' reach (memory.heap-headroom-per-node)
CONNECTIONS_PER_NODE = 4  # the PostgreSQL connector opens a connection per split and per metadata call


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(default=0, ge=0, le=50, description="worker nodes; 0: the coordinator runs queries itself")
    heap_mb: int = Field(default=1024, ge=512, le=65536, description="JVM heap of each node (coordinator, workers)")
    query_memory_mb: int = Field(default=512, ge=64, description="memory one query may use on one node")

    @model_validator(mode="after")
    def _memory_fits(self) -> Settings:
        usable = self.heap_mb - math.ceil(self.heap_mb * HEAP_HEADROOM)
        if self.query_memory_mb > usable:
            raise ValueError(
                f"query_memory_mb: {self.query_memory_mb} MB per query does not fit in a {self.heap_mb} MB heap once"
                f" Presto keeps {HEAP_HEADROOM:.0%} of it as headroom; set presto.query_memory_mb to at most {usable}"
                f" or presto.heap_mb to at least {math.ceil(self.query_memory_mb / (1 - HEAP_HEADROOM))}"
            )
        return self

    @property
    def nodes(self) -> int:
        """Nodes that run queries: the workers, or the coordinator alone."""
        return self.workers or 1


COMPONENT = Component(
    name="presto",
    folder=HERE,
    images=(
        # keep the version in step with presto/pom.xml; the registry image runs the same start.sh and config
        Image(
            "presto", HERE, registry="prestodb/presto:0.287", prepare=("sh", "fetch-server.sh"), generated=("server",)
        ),
    ),
    requires=("postgres",),
    route=Route(
        "presto",
        "coordinator",
        8080,
        health_path="/v1/info/state",
        basic_auth="presto_password",
        nginx="nginx.conf.j2",
    ),
    database=True,
    warehouse="analyst",
    config_files=(
        "start.sh",
        "jvm.config",
        "log.properties",
        "coordinator.properties",
        "worker.properties",
        "catalog/warehouse.properties",
        "catalog/kafka.properties",
        "catalog/tpch.properties",
        "kafka-tables",
    ),
    settings=Settings,
    db_connections=lambda s: (s.presto.workers + 1) * CONNECTIONS_PER_NODE,
    hints=(
        "Presto: user admin, password from {deploy} secrets show presto_password; or, on the swarm:"
        " {deploy} presto -- --execute 'SHOW CATALOGS'",
    ),
    commands={
        "presto": CommandInService(
            service="coordinator",
            argv=("presto-cli", "--server", "127.0.0.1:8080", "--user", "admin", "--catalog", "warehouse"),
            help="run SQL in the coordinator with Presto's own CLI, e.g. presto -- --execute 'SELECT count(*) FROM"
            " raw.host_metrics' (add --output-format CSV_HEADER for CSV)",
        )
    },
)
