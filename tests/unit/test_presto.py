"""Presto's declaration and rendered config: sized from settings, its catalogs from the platform's config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kafka.component import HOST_METRICS_FIELDS
from parse_sources.stream import sources
from presto.component import CATALOGS, MANAGED_KEYS
from stack import plan
from stack.config import ConfigError, load_settings


def presto_files(**overrides: object) -> dict[str, str]:
    return plan.make_plan(load_settings(**overrides)).component("presto").files


def properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_query_memory_beyond_the_heap_less_prestos_headroom_is_a_config_error_naming_the_keys(
    isolated_env: Path,
) -> None:
    with pytest.raises(
        ConfigError,
        match=r"presto.query_memory_mb \(env SAWMILL_PRESTO__QUERY_MEMORY_MB\): 800 MB.*at most 716.*at least 1143",
    ):
        load_settings(presto={"heap_mb": 1024, "query_memory_mb": 800})
    assert load_settings(presto={"heap_mb": 1024, "query_memory_mb": 716}).presto.query_memory_mb == 716


def test_without_workers_the_coordinator_runs_queries_and_no_worker_service_exists(isolated_env: Path) -> None:
    files = presto_files()
    coordinator = properties(files["coordinator.properties"])
    assert coordinator["node-scheduler.include-coordinator"] == "true"
    assert coordinator["query.max-memory"] == "512MB"
    assert set(yaml.safe_load(files["stack.yml"])["services"]) == {"coordinator"}
    assert "-Xmx1024m" in files["jvm.config"].split()


def test_workers_run_the_queries_and_cluster_memory_grows_with_them(isolated_env: Path) -> None:
    files = presto_files(presto={"workers": 3, "heap_mb": 2048, "query_memory_mb": 1024})
    coordinator, worker = properties(files["coordinator.properties"]), properties(files["worker.properties"])
    assert coordinator["node-scheduler.include-coordinator"] == "false"
    assert worker["coordinator"] == "false"
    assert worker["discovery.uri"] == coordinator["discovery.uri"] == "http://sawmill-presto-coordinator:8080"
    assert coordinator["query.max-memory"] == "3072MB"
    services = yaml.safe_load(files["stack.yml"])["services"]
    assert services["worker"]["deploy"]["replicas"] == 3
    assert services["worker"]["deploy"]["resources"]["limits"]["memory"] == "2560M"


def test_workers_run_only_on_the_nodes_carrying_the_worker_label_when_one_is_given(isolated_env: Path) -> None:
    spread = yaml.safe_load(presto_files(presto={"workers": 2})["stack.yml"])["services"]["worker"]["deploy"]
    assert "placement" not in spread  # by default wherever Swarm spreads them
    held = yaml.safe_load(presto_files(presto={"workers": 2, "worker_label": "compute"})["stack.yml"])
    assert held["services"]["worker"]["deploy"]["placement"] == {"constraints": ["node.labels.compute == true"]}
    assert "placement" not in held["services"]["coordinator"]["deploy"]


def test_a_worker_label_without_workers_is_a_config_error_naming_both_keys(isolated_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"presto.worker_label .*'compute'.*presto.workers is 0"):
        load_settings(presto={"worker_label": "compute"})
    with pytest.raises(ConfigError, match=r"presto.worker_label"):
        load_settings(presto={"workers": 1, "worker_label": "compute == true"})


def test_the_warehouse_password_comes_from_the_secret_at_start_and_is_in_no_rendered_file(isolated_env: Path) -> None:
    files = presto_files()
    assert properties(files["catalog/warehouse.properties"])["connection-password"] == "${ENV:PRESTO_DB_PASSWORD}"
    coordinator = yaml.safe_load(files["stack.yml"])["services"]["coordinator"]
    assert coordinator["environment"]["PRESTO_DB_PASSWORD_FILE"] == "/run/secrets/presto_db_password"
    assert not any("PASSWORD=" in value for value in coordinator["environment"].values())


def test_every_declared_topic_is_a_kafka_table_reading_the_envelopes_data(isolated_env: Path) -> None:
    files = presto_files(kafka={"topics": {"orders": {"fields": {"id": "integer", "at": "timestamp"}}, "raw_logs": {}}})
    assert properties(files["catalog/kafka.properties"])["kafka.table-names"] == "orders,raw_logs"
    tables = dict(line.split(" ", 1) for line in files["kafka-tables"].splitlines())
    assert yaml.safe_load(tables["orders"])["message"]["fields"] == [
        {"name": "id", "mapping": "data/id", "type": "BIGINT"},
        {"name": "at", "mapping": "data/at", "type": "TIMESTAMP", "dataFormat": "iso8601"},
    ]
    assert yaml.safe_load(tables["raw_logs"])["message"]["fields"] == []


def test_without_kafka_no_kafka_catalog_is_mounted(isolated_env: Path) -> None:
    files = presto_files(components=["postgres", "presto", "webserver"])
    targets = [c["target"] for c in yaml.safe_load(files["stack.yml"])["services"]["coordinator"]["configs"]]
    assert "/opt/sawmill/etc/catalog/warehouse.properties" in targets
    assert not any("kafka" in target for target in targets)


def test_the_metrics_demo_topic_declares_every_field_the_demo_sends() -> None:
    sample = sources._sample(
        "h",
        {n: 0 for n in (*sources._CPU_FIELDS, *sources._RATES.values())},
        {n: 1 for n in (*sources._CPU_FIELDS, *sources._RATES.values())},
        1.0,
        dict.fromkeys(sources._MEMORY.values(), 1),
        {"procs_running": 1, "procs_blocked": 0},
    )
    assert set(sample) == set(HOST_METRICS_FIELDS)


def test_properties_from_sawmill_toml_come_last_in_every_node_and_catalog_file_so_they_override(
    isolated_env: Path,
) -> None:
    files = presto_files(
        presto={
            "workers": 1,
            "properties": {"query.remote-task.max-error-duration": "2m", "query.max-execution-time": "30m"},
            "catalog_properties": {"warehouse": {"case-insensitive-name-matching": "true"}},
        }
    )
    for name in ("coordinator.properties", "worker.properties"):
        lines = files[name].splitlines()
        assert lines[-3:] == [
            "# from presto.properties in sawmill.toml (check.sh tries them on Presto before `up` deploys them)",
            "query.remote-task.max-error-duration=2m",
            "query.max-execution-time=30m",
        ]
    assert files["catalog/warehouse.properties"].splitlines()[-1] == "case-insensitive-name-matching=true"
    assert "# from presto." not in files["catalog/kafka.properties"] + files["catalog/tpch.properties"]


def test_a_backslash_in_a_value_reaches_presto_as_written(isolated_env: Path) -> None:
    # java.util.Properties reads "\\" as one backslash
    files = presto_files(presto={"properties": {"query.example": "C:\\tmp"}})
    assert files["coordinator.properties"].splitlines()[-1] == "query.example=C:\\\\tmp"


@pytest.mark.parametrize(
    ("presto", "key", "message"),
    [
        ({"properties": {"discovery.uri": "http://x:8080"}}, "presto.properties", "Sawmill sets 'discovery.uri'"),
        ({"properties": {"query.max-memory": "9GB"}}, "presto.properties", "set presto.query_memory_mb"),
        ({"properties": {"node.id": "x"}}, "presto.properties", "node.* is set per container"),
        ({"properties": {"a=b": "x"}}, "presto.properties", "'a=b' is not a Presto property key"),
        ({"properties": {"a.b": "x\ny=z"}}, "presto.properties", "line break"),
        (
            {"catalog_properties": {"warehouse": {"connection-user": "postgres"}}},
            "presto.catalog_properties.warehouse",
            "Sawmill sets 'connection-user' itself (Presto reads the warehouse as its own read-only role)",
        ),
        ({"catalog_properties": {"hive": {}}}, "presto.catalog_properties.hive", "'warehouse', 'kafka' or 'tpch'"),
    ],
)
def test_a_property_the_platform_sets_or_no_properties_file_can_hold_is_a_config_error(
    isolated_env: Path, presto: dict[str, object], key: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}[ .].*{re.escape(message)}"):
        load_settings(presto=presto)


def test_every_rendered_key_is_either_set_by_the_platform_or_a_default_one_may_override(isolated_env: Path) -> None:
    overridable = {"query.remote-task.max-error-duration", "kafka.default-schema", "kafka.hide-internal-columns"}
    files = presto_files(presto={"workers": 1})
    for name, managed in [
        ("coordinator.properties", MANAGED_KEYS["properties"]),
        ("worker.properties", MANAGED_KEYS["properties"]),
        *((f"catalog/{c}.properties", MANAGED_KEYS["catalog"]) for c in CATALOGS),
    ]:
        assert set(properties(files[name])) - overridable <= set(managed), name
