"""The kafka component as the platform renders it: brokers and quorum, topics job, sinks, Console config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stack import plan
from stack.config import ConfigError, load_settings


def render(**kafka: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    rendered = plan.make_plan(load_settings(kafka=kafka))
    files = rendered.component("kafka").files
    return yaml.safe_load(files["stack.yml"]), yaml.safe_load(files["console.yml"])


def test_one_broker_by_default_is_its_own_controller_on_the_overlay_network_only(isolated_env: Path) -> None:
    stack, console = render()
    broker = stack["services"]["broker-0"]
    env = broker["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "0@sawmill_kafka_broker-0:9093"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://sawmill_kafka_broker-0:9092"
    assert "ports" not in broker
    assert broker["volumes"] == ["data-0:/var/lib/kafka/data"]
    assert broker["deploy"]["placement"]["constraints"] == ["node.labels.sawmill.kafka-broker-0 == true"]
    assert console == {"kafka": {"brokers": ["sawmill_kafka_broker-0:9092"]}, "server": {"listenPort": 8080}}


@pytest.mark.parametrize(("brokers", "voters"), [(2, 1), (3, 3), (5, 3)])
def test_n_brokers_form_an_odd_controller_quorum_and_replicate_internal_topics(
    isolated_env: Path, brokers: int, voters: int
) -> None:
    stack, console = render(brokers=brokers)
    envs = [stack["services"][f"broker-{i}"]["environment"] for i in range(brokers)]
    quorum = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs}
    assert quorum == {",".join(f"{i}@sawmill_kafka_broker-{i}:9093" for i in range(voters))}
    assert [env["KAFKA_PROCESS_ROLES"] for env in envs] == ["broker,controller"] * voters + ["broker"] * (
        brokers - voters
    )
    assert {env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] for env in envs} == {str(min(brokers, 3))}
    assert len({env["KAFKA_NODE_ID"] for env in envs}) == brokers
    assert len(console["kafka"]["brokers"]) == brokers
    assert sorted(stack["volumes"]) == [f"data-{i}" for i in range(brokers)]


def test_topics_sinks_and_the_metrics_demo_come_from_the_configuration(isolated_env: Path) -> None:
    stack, _ = render(
        topics={"orders": {"partitions": 6, "retention_ms": 1000, "cleanup_policy": "compact"}},
        sinks=[{"topic": "orders", "table": "raw.orders", "replicas": 3}],
        metrics_demo=False,
    )
    services = stack["services"]
    assert services["topics"]["deploy"]["mode"] == "replicated-job"
    assert yaml.safe_load(services["topics"]["environment"]["KAFKA_TOPICS"]) == {
        "orders": {"partitions": 6, "retention_ms": 1000, "cleanup_policy": "compact"}
    }
    sink = services["sink-raw-orders"]
    assert sink["command"][:5] == ["sink", "--topic", "orders", "--table", "raw.orders"]
    assert sink["deploy"]["replicas"] == 3
    assert sink["environment"]["PGPASSWORD_FILE"] == "/run/secrets/kafka_db_password"
    assert sink["environment"]["SINK_INSTANCE_ID"] == "{{.Service.Name}}-{{.Task.Slot}}"
    assert "metrics-demo" not in services
    assert "--view" not in sink["command"]  # the table is published only where a sink says so


def test_the_demo_sink_publishes_its_table_in_consumption_for_readers(isolated_env: Path) -> None:
    stack, _ = render()
    command = stack["services"]["sink-raw-host-metrics"]["command"]
    assert command[command.index("--view") + 1] == "consumption.host_metrics"


def test_a_view_in_the_tables_own_schema_is_refused_naming_the_key(isolated_env: Path) -> None:
    (isolated_env / "sawmill.toml").write_text('[[kafka.sinks]]\ntopic = "t"\ntable = "raw.t"\nview = "raw.t_view"\n')
    refused = r"kafka.sinks.0.view \(env SAWMILL_KAFKA__SINKS, a JSON list\): raw.t_view is in the table's own schema"
    with pytest.raises(ConfigError, match=refused):
        load_settings()


def test_registry_mode_runs_the_pinned_official_images(isolated_env: Path) -> None:
    rendered = plan.make_plan(load_settings(images="registry"))
    services = yaml.safe_load(rendered.component("kafka").files["stack.yml"])["services"]
    assert services["broker-0"]["image"] == "apache/kafka:3.9.1"
    assert services["console"]["image"] == "redpandadata/console:v2.8.5"
    assert services["sink-raw-host-metrics"]["image"].startswith("sawmill/parse_sources:")
