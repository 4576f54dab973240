"""Producers against a real broker: every source's records arrive keyed, versioned, and exactly as read."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, ConfigResource

from parse_sources.__main__ import main
from parse_sources.stream.topics import TopicSpec, ensure_topics
from tests.integration.conftest import KafkaBroker
from tests.integration.kafka_support import unique


def consume_all(kafka: KafkaBroker, topic: str, expected: int) -> list[tuple[str, dict[str, object]]]:
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": unique("check"), "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    messages = []
    try:
        for _ in range(100):  # bounded: at most ~50 s
            messages += [m for m in consumer.consume(expected, 0.5) if m.error() is None]
            if len(messages) >= expected:
                break
    finally:
        consumer.close()
    return [(m.key().decode(), json.loads(m.value())) for m in messages]


def test_a_csv_file_is_produced_with_typed_values_keyed_by_a_field(kafka: KafkaBroker, tmp_path: Path) -> None:
    topic = kafka.create_topic(unique("csv"))
    path = tmp_path / "cities.csv"
    path.write_text("city,population,area\nLyon,522250,47.87\nNantes,,65.19\n")
    assert main(["produce", "file", str(path), "--topic", topic, "--key", "city",
                 "--bootstrap-servers", kafka.bootstrap_servers]) == 0  # fmt: skip
    assert sorted(consume_all(kafka, topic, 2)) == [
        ("Lyon", {"schema_version": 1, "data": {"city": "Lyon", "population": 522250, "area": 47.87}}),
        ("Nantes", {"schema_version": 1, "data": {"city": "Nantes", "population": None, "area": 65.19}}),
    ]


def test_a_json_lines_file_without_a_key_field_is_keyed_by_line(kafka: KafkaBroker, tmp_path: Path) -> None:
    topic = kafka.create_topic(unique("jsonl"))
    path = tmp_path / "events.jsonl"
    path.write_text('{"a": 1}\n\n{"a": {"nested": true}}\n')
    assert main(["produce", "file", str(path), "--topic", topic, "--bootstrap-servers", kafka.bootstrap_servers]) == 0
    assert sorted(consume_all(kafka, topic, 2)) == [
        ("events.jsonl:1", {"schema_version": 1, "data": {"a": 1}}),
        ("events.jsonl:3", {"schema_version": 1, "data": {"a": {"nested": True}}}),
    ]


@pytest.fixture
def json_endpoint() -> Iterator[str]:
    """A local HTTP server answering a JSON list, on 127.0.0.1 only."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps([{"id": 1, "price": 9.5}, {"id": 2, "price": 3.0}]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/prices"
    server.shutdown()


def test_a_polled_http_endpoint_sends_each_record_of_each_poll(kafka: KafkaBroker, json_endpoint: str) -> None:
    topic = kafka.create_topic(unique("http"))
    argv = ["produce", "http", json_endpoint, "--topic", topic, "--key", "id", "--interval", "0.1", "--max-polls", "2"]
    assert main([*argv, "--bootstrap-servers", kafka.bootstrap_servers]) == 0
    received = consume_all(kafka, topic, 4)
    assert sorted(key for key, _ in received) == ["1", "1", "2", "2"]
    assert {"schema_version": 1, "data": {"id": 2, "price": 3.0}} in [value for _, value in received]


def test_host_metrics_are_sampled_from_proc(kafka: KafkaBroker) -> None:
    topic = kafka.create_topic(unique("metrics"))
    argv = ["produce", "metrics", "--topic", topic, "--interval", "0.2", "--count", "3", "--host", "testhost"]
    assert main([*argv, "--bootstrap-servers", kafka.bootstrap_servers]) == 0
    received = consume_all(kafka, topic, 3)
    assert len(received) == 3
    for key, value in received:
        sample = value["data"]
        assert key == f"testhost:{sample['ts']}"
        assert 99 <= sum(sample[f"cpu_{name}"] for name in ("user", "nice", "system", "idle", "iowait", "irq",
                                                           "softirq", "steal")) <= 101  # fmt: skip
        assert sample["mem_free_kb"] > 0 and sample["context_switches"] > 0


def test_declared_topics_are_created_then_altered_and_a_second_run_changes_nothing(kafka: KafkaBroker) -> None:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    name = unique("declared_topic")
    spec = TopicSpec.from_mapping(name, {"partitions": 2, "retention_ms": 3_600_000}, brokers=1)
    assert ensure_topics(admin, [spec]) == [f"created topic {name}"]
    assert ensure_topics(admin, [spec]) == []

    grown = TopicSpec.from_mapping(name, {"partitions": 4, "retention_ms": 7_200_000, "cleanup_policy": "compact"}, 1)
    assert ensure_topics(admin, [grown]) == [
        f"topic {name}: partitions 2 -> 4",
        f"topic {name}: cleanup.policy = compact",
        f"topic {name}: retention.ms = 7200000",
    ]
    assert ensure_topics(admin, [grown]) == []
    assert len(admin.list_topics(name, timeout=10).topics[name].partitions) == 4
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    config = admin.describe_configs([resource])[resource].result()
    assert (config["retention.ms"].value, config["cleanup.policy"].value) == ("7200000", "compact")
