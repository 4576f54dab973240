"""Declared topics, created or altered idempotently: what `deploy.py up` runs as a one-shot job in the kafka stack.

Partitions only grow (Kafka cannot shrink a topic); configs are set incrementally, so settings made by hand on
keys we do not declare are left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 3
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)  # e.g. retention.ms, cleanup.policy

    @classmethod
    def from_mapping(cls, name: str, spec: Mapping[str, Any], brokers: int) -> TopicSpec:
        """From the deploy configuration's shape: partitions, replication_factor, retention_ms, cleanup_policy."""
        config = {key.replace("_", "."): str(value) for key, value in spec.get("config", {}).items()}
        if spec.get("retention_ms") is not None:
            config["retention.ms"] = str(spec["retention_ms"])
        if spec.get("cleanup_policy"):
            config["cleanup.policy"] = str(spec["cleanup_policy"])
        replication = spec.get("replication_factor") or min(brokers, 3)
        return cls(name, int(spec.get("partitions", 3)), int(replication), config)


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Make the cluster match `specs`; return one line per change made (empty when nothing changed)."""
    changes: list[str] = []
    existing = admin.list_topics(timeout=timeout).topics
    missing = [s for s in specs if s.name not in existing]
    raced = []  # created a moment ago (by an earlier run or another client), not yet in the metadata we read
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in missing],
            operation_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
                changes.append(f"created topic {name}")
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"create topic {name}: {exc.args[0]}") from None
                raced.append(name)
    if raced:
        existing = _listed(admin, raced, timeout)
    for spec in (s for s in specs if s.name in existing):
        current = len(existing[spec.name].partitions)
        if spec.partitions > current:
            _result(admin.create_partitions([NewPartitions(spec.name, spec.partitions)])[spec.name], spec.name)
            changes.append(f"topic {spec.name}: partitions {current} -> {spec.partitions}")
        elif spec.partitions < current:
            log.warning("topic %s has %d partitions; Kafka cannot shrink it to %d", spec.name, current, spec.partitions)
        changes += _ensure_config(admin, spec, timeout)
    return changes


def _listed(admin: AdminClient, names: list[str], timeout: float) -> Mapping[str, Any]:
    """The cluster's topics, once its metadata lists every one of `names`."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        absent = [name for name in names if name not in topics]
        if not absent:
            return topics
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics {absent} exist, says the controller, but the metadata still lacks them")
        time.sleep(0.2)


def _ensure_config(admin: AdminClient, spec: TopicSpec, timeout: float) -> list[str]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
    current = _result(admin.describe_configs([resource], request_timeout=timeout)[resource], spec.name)
    different = {key: value for key, value in spec.config.items() if key not in current or current[key].value != value}
    if not different:
        return []
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        spec.name,
        incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET) for key, value in different.items()
        ],
    )
    _result(admin.incremental_alter_configs([resource])[resource], spec.name)
    return [f"topic {spec.name}: {key} = {value}" for key, value in sorted(different.items())]


def _result(future: Any, what: str) -> Any:
    try:
        return future.result()
    except KafkaException as exc:
        raise RuntimeError(f"{what}: {exc.args[0]}") from None
