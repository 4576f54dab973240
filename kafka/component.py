"""Kafka: KRaft broker(s), the declared topics, Kafka -> Postgres sinks, the host-metrics demo and Redpanda
Console at kafka.<domain> (behind nginx's basic auth)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stack.component import PYTHON, Component, Image, Route

HERE = Path(__file__).resolve().parent
CONNECTIONS_PER_SINK_REPLICA = 2  # the writer's connection, and one while a replica hands over


# The JSON value types a topic's messages may declare (SQL engines such as Presto map them to their own types).
FieldType = Literal["string", "integer", "number", "boolean", "timestamp"]
FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
# What the metrics demo (parse_sources/stream/sources.py host_metrics) puts in each message.
HOST_METRICS_FIELDS: dict[str, FieldType] = {
    "host": "string",
    "ts": "timestamp",
    **dict.fromkeys(("procs_running", "procs_blocked"), "integer"),
    **dict.fromkeys(("mem_free_kb", "mem_buffers_kb", "mem_cached_kb", "mem_available_kb"), "integer"),
    **dict.fromkeys(("interrupts", "context_switches", "blocks_in", "blocks_out", "swap_in", "swap_out"), "number"),
    **dict.fromkeys(
        ("cpu_user", "cpu_nice", "cpu_system", "cpu_idle", "cpu_iowait", "cpu_irq", "cpu_softirq", "cpu_steal"),
        "number",
    ),
}


def broker_label(i: int) -> str:
    """The node label (after `<prefix>.`) that keeps broker i on the node holding its log's volume."""
    return f"kafka-broker-{i}"


class KafkaTopic(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(default=3, ge=1, le=1000)
    replication_factor: int | None = Field(default=None, ge=1, description="default: min(brokers, 3)")
    retention_ms: int | None = Field(default=None, ge=-1, description="-1: keep forever; default: the broker's")
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    fields: dict[FieldName, FieldType] = Field(
        default_factory=dict, description="its messages' JSON fields and their types, for SQL over the topic"
    )


class KafkaSink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str = Field(pattern=r"^[A-Za-z0-9._-]{1,200}$")
    table: str = Field(pattern=r"^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$", description="schema.table, e.g. raw.events")
    replicas: int = Field(default=2, ge=1, le=20)
    view: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$",
        description="schema.table: the table also published as a view there (e.g. consumption.events) for readers",
    )

    @model_validator(mode="after")
    def _view_elsewhere(self) -> KafkaSink:
        table_schema = self.table.split(".")[0] if "." in self.table else "raw"
        if self.view is not None and self.view.split(".")[0] == table_schema:
            raise ValueError(f"view: {self.view} is in the table's own schema; publish it in another, e.g. consumption")
        return self

    @property
    def service_name(self) -> str:
        return self.table.replace(".", "-").replace("_", "-")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    brokers: int = Field(default=1, ge=1, le=9, description="KRaft brokers; from 3 on, 3 of them form the quorum")
    cluster_id: str = Field(default="c2F3bWlsbC1rYWZrYS0wMQ", pattern=r"^[A-Za-z0-9_-]{22}$")
    heap_mb: int = Field(default=768, ge=256, le=16384)
    topics: dict[str, KafkaTopic] = Field(
        default_factory=lambda: {
            "host_metrics": KafkaTopic(partitions=3, retention_ms=7 * 24 * 3600 * 1000, fields=HOST_METRICS_FIELDS)
        }
    )
    sinks: list[KafkaSink] = Field(
        default_factory=lambda: [
            KafkaSink(topic="host_metrics", table="raw.host_metrics", replicas=2, view="consumption.host_metrics")
        ]
    )
    metrics_demo: bool = True
    metrics_interval: float = Field(default=2.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        for name, topic in self.topics.items():
            if topic.replication_factor is not None and topic.replication_factor > self.brokers:
                raise ValueError(
                    f"topics.{name}.replication_factor: {topic.replication_factor} copies need as many brokers;"
                    f" there are {self.brokers} (kafka.brokers)"
                )
        services = [sink.service_name for sink in self.sinks]
        clashing = sorted({name for name in services if services.count(name) > 1})
        if clashing:
            raise ValueError(f"sinks: two sinks would both be service sink-{clashing[0]}; give them other tables")
        return self

    def topics_spec(self) -> dict[str, dict[str, object]]:
        """What the topics job reads (`python -m parse_sources topics`, env KAFKA_TOPICS)."""
        return {name: topic.model_dump(exclude_none=True, exclude={"fields"}) for name, topic in self.topics.items()}


COMPONENT = Component(
    name="kafka",
    folder=HERE,
    images=(
        # keep the version in step with kafka/pom.xml
        Image("kafka", HERE, registry="apache/kafka:3.9.1", prepare=("sh", "fetch-jars.sh"), generated=("lib",)),
        Image("parse_sources", HERE.parent / "parse_sources", parent=PYTHON),
        # no local build is possible (no reachable registry has its artifacts); registry mode only
        Image("console", None, registry="redpandadata/console:v2.8.5"),
    ),
    requires=("postgres",),
    route=Route(
        "kafka", "console", 8080, image="console", health_path="/admin/health", basic_auth="kafka_console_password"
    ),
    database=True,
    warehouse="writer",
    config_files=("console.yml",),
    pins=lambda s: tuple(broker_label(i) for i in range(s.kafka.brokers)),  # each broker where its log is
    settings=Settings,
    db_connections=lambda s: sum(sink.replicas for sink in s.kafka.sinks) * CONNECTIONS_PER_SINK_REPLICA,
)
