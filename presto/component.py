"""Presto at presto.<domain>: a coordinator and `presto.workers` workers, SQL over the warehouse (read-only, every
layer) and the Kafka topics, behind nginx's basic auth (Presto's own password check does nothing over HTTP)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stack.component import Check, CommandInService, Component, Image, Route

HERE = Path(__file__).resolve().parent
HEAP_HEADROOM = 0.3  # Presto keeps 30 % of the heap out of queries' reach (memory.heap-headroom-per-node)
CONNECTIONS_PER_NODE = 4  # the PostgreSQL connector opens a connection per split and per metadata call
Catalog = Literal["warehouse", "kafka", "tpch"]
CATALOGS = get_args(Catalog)
PROPERTY_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Keys the platform sets from its own settings: a second value would break the cluster or bypass a checked setting.
# Other rendered keys (e.g. query.remote-task.max-error-duration) are defaults: a key in sawmill.toml overrides them.
MANAGED_KEYS = {
    "properties": {
        "coordinator": "Sawmill runs one coordinator and presto.workers workers",
        "node-scheduler.include-coordinator": "set presto.workers instead",
        "discovery-server.enabled": "the coordinator is the discovery server",
        "discovery.uri": "the coordinator's network alias is set by Sawmill",
        "http-server.http.port": "nginx and the health check reach Presto on 8080",
        "query.max-memory-per-node": "set presto.query_memory_mb instead",
        "query.max-total-memory-per-node": "set presto.query_memory_mb instead",
        "query.max-memory": "set presto.query_memory_mb (per node) instead",
        "query.max-total-memory": "set presto.query_memory_mb (per node) instead",
    },
    "catalog": {
        "connector.name": "each catalog's connector is fixed",
        "connection-url": "the warehouse is the platform's Postgres",
        "connection-user": "Presto reads the warehouse as its own read-only role",
        "connection-password": "the password comes from a Docker secret",
        "kafka.nodes": "the brokers come from the kafka section",
        "kafka.table-names": "the tables are the topics declared in kafka.topics",
        "kafka.table-description-dir": "the table descriptions are generated from the topics' fields",
    },
}


def _check_properties(pairs: dict[str, str], managed: dict[str, str], catalog: str = "") -> dict[str, str]:
    """A key Presto may know, with a value one properties line can hold, and none the platform sets itself."""
    where = f"{catalog}: " if catalog else ""  # a catalog's table is named in the message (the settings name the rest)
    for key, value in pairs.items():
        if not PROPERTY_KEY.fullmatch(key) or key.startswith("node."):
            raise ValueError(
                f"{where}{key!r} is not a Presto property key one may set (letters, digits, '.', '-', '_';"
                " node.* is set per container)"
            )
        if key in managed:
            raise ValueError(f"{where}Sawmill sets {key!r} itself ({managed[key]}); remove it")
        if any(ord(c) < 32 for c in value):
            raise ValueError(f"{where}the value of {key!r} holds a line break or control character; put it on one line")
    return pairs


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(default=0, ge=0, le=50, description="worker nodes; 0: the coordinator runs queries itself")
    heap_mb: int = Field(default=1024, ge=512, le=65536, description="JVM heap of each node (coordinator, workers)")
    query_memory_mb: int = Field(default=512, ge=64, description="memory one query may use on one node")
    worker_label: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="the workers run only on nodes carrying this label = true (e.g. `compute`, set on the hosts"
        " list's nodes by `deploy.py nodes`); default: wherever Swarm spreads them",
    )
    properties: dict[str, str] = Field(
        default_factory=dict,
        description="more config.properties of every node, e.g. 'query.max-execution-time' = '30m'; `up` starts"
        " Presto on them before deploying, so a key it does not know is an error that names it",
    )
    catalog_properties: dict[Catalog, dict[str, str]] = Field(
        default_factory=dict,
        description="more properties of a catalog, e.g. [presto.catalog_properties.warehouse]"
        " 'case-insensitive-name-matching' = 'true'; checked like presto.properties",
    )

    @field_validator("properties")
    @classmethod
    def _node_properties(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_properties(value, MANAGED_KEYS["properties"])

    @field_validator("catalog_properties")
    @classmethod
    def _catalog_properties(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for catalog, pairs in value.items():
            _check_properties(pairs, MANAGED_KEYS["catalog"], catalog)
        return value

    @model_validator(mode="after")
    def _label_needs_workers(self) -> Settings:
        if self.worker_label is not None and self.workers == 0:
            raise ValueError(
                f"worker_label: {self.worker_label!r} places workers, and presto.workers is 0 (the coordinator runs"
                " queries itself); set presto.workers, or remove presto.worker_label"
            )
        return self

    @model_validator(mode="after")
    def _memory_fits(self) -> Settings:
        usable = self.heap_mb - self.headroom_mb
        if self.query_memory_mb > usable:
            raise ValueError(
                f"query_memory_mb: {self.query_memory_mb} MB per query does not fit in a {self.heap_mb} MB heap once"
                f" Presto keeps {HEAP_HEADROOM:.0%} of it as headroom; set presto.query_memory_mb to at most {usable}"
                f" or presto.heap_mb to at least {math.ceil(self.query_memory_mb / (1 - HEAP_HEADROOM))}"
            )
        return self

    @property
    def headroom_mb(self) -> int:
        """What Presto keeps of each node's heap out of queries' reach."""
        return math.ceil(self.heap_mb * HEAP_HEADROOM)

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
        "check.sh",
        "jvm.config",
        "log.properties",
        "coordinator.properties",
        "worker.properties",
        "catalog/warehouse.properties",
        "catalog/kafka.properties",
        "catalog/tpch.properties",
        "kafka-tables",
    ),
    checks=(
        Check(
            ("sh", "/opt/sawmill/check.sh"),
            {
                "check.sh": "/opt/sawmill/check.sh",
                "start.sh": "/opt/sawmill/start.sh",
                "coordinator.properties": "/opt/sawmill/etc/config.properties",
                "worker.properties": "/opt/sawmill/worker.properties",
                "jvm.config": "/opt/sawmill/etc/jvm.config",
                "log.properties": "/opt/sawmill/etc/log.properties",
                **{f"catalog/{c}.properties": f"/opt/sawmill/etc/catalog/{c}.properties" for c in CATALOGS},
                "kafka-tables": "/opt/sawmill/etc/kafka-tables",
            },
        ),
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
