"""The Kafka → Postgres sink against a real broker and a real Postgres: exactly once, dead letters, evolving schemas."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from parse_sources.schema import Table
from tests.integration.conftest import KafkaBroker, PostgresServer, writer_database
from tests.integration.kafka_support import (
    SinkThread,
    count,
    produce,
    produce_raw,
    scalar,
    sink_config,
    table_exists,
    unique,
    wait_until,
    writer_dsn,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    """A fresh database per test, so each test's tables, offsets and statistics are its own."""
    name = unique("sink")
    writer_database(postgres, name)  # the sink runs as a writer role with the platform's grants
    return name


def sink_process(kafka: KafkaBroker, postgres: PostgresServer, database: str, topic: str) -> subprocess.Popen[bytes]:
    """`python -m parse_sources sink` as the platform runs it, as a separate process that can be SIGKILLed."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parse_sources",
            "--log-level=WARNING",
            "sink",
            f"--bootstrap-servers={kafka.bootstrap_servers}",
            f"--topic={topic}",
            f"--table=raw.{topic}",
            f"--dsn={writer_dsn(postgres, database)}",
            "--instance-id=replica-1",
            "--batch-size=2000",
            "--max-wait=0.1",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.DEVNULL,
    )


def sequence(start: int, stop: int) -> Iterator[tuple[str, dict[str, object]]]:
    for n in range(start, stop):
        yield f"k{n}", {"seq": n, "payload": f"message {n}"}


def test_a_sink_killed_at_random_moments_lands_every_message_exactly_once(
    kafka: KafkaBroker, postgres: PostgresServer, database: str
) -> None:
    total, kills = 100_000, 6
    topic = kafka.create_topic(unique("exactly_once"), partitions=4)
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    produced = threading.Event()

    def produce_steadily() -> None:  # ~20 s of traffic, so the kills land while messages flow
        for start in range(0, total, 5_000):
            produce(kafka.bootstrap_servers, topic, sequence(start, start + 5_000))
            time.sleep(1)
        produced.set()

    producer = threading.Thread(target=produce_steadily, daemon=True)
    producer.start()
    deadline = time.monotonic() + 170
    for _ in range(kills):
        sink = sink_process(kafka, postgres, database, topic)
        time.sleep(rng.uniform(1.0, 4.0))
        sink.send_signal(signal.SIGKILL)
        sink.wait()
    landed_before_last_run = scalar(postgres, database, f"SELECT count(*) FROM raw.{topic}")
    sink = sink_process(kafka, postgres, database, topic)
    try:
        assert produced.wait(timeout=max(1, deadline - time.monotonic())), "producing 100,000 messages took too long"
        done = wait_until(
            lambda: count(postgres, database, f"raw.{topic}") == total,
            timeout=max(1, deadline - time.monotonic()),
        )
    finally:
        sink.terminate()
        sink.wait(timeout=30)

    assert done, f"seed {seed}: only {scalar(postgres, database, f'SELECT count(*) FROM raw.{topic}')} rows"
    assert 0 < landed_before_last_run < total, f"seed {seed}: the kills did not interrupt a working sink"
    rows = postgres.execute(
        f"SELECT count(*), count(DISTINCT seq), min(seq), max(seq), count(DISTINCT (_kafka_partition, _kafka_offset))"
        f" FROM raw.{topic}",
        dbname=database,
    )
    assert rows == [(total, total, 0, total - 1, total)]
    # No row was ever written twice: an upsert that hit an existing row would count as an update.
    updates = scalar(
        postgres, database, f"SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'raw.{topic}'::regclass"
    )
    assert updates == 0, f"seed {seed}: {updates} rows were landed more than once"
    stored = scalar(postgres, database, f"SELECT sum(next_offset) FROM raw.kafka_sink_offsets WHERE topic = '{topic}'")
    assert stored == total


def test_malformed_messages_land_in_the_dead_letter_table_and_the_sink_keeps_going(
    kafka: KafkaBroker, postgres: PostgresServer, database: str
) -> None:
    topic = kafka.create_topic(unique("dead_letters"))
    good = json.dumps({"schema_version": 1, "data": {"n": 1}}).encode()
    malformed = {
        b"not json": b"{oops",
        b"an array": b"[1, 2]",
        b"no version": json.dumps({"data": {"n": 2}}).encode(),
        b"no data": json.dumps({"schema_version": 1}).encode(),
        b"not utf-8": b"\xff\xfe{}",
        b"tombstone": None,
    }
    produce_raw(kafka.bootstrap_servers, topic, [(b"first", good), *malformed.items(), (b"last", good)])

    sink = SinkThread(sink_config(kafka, postgres, database, topic))
    dead_table = f"raw.{topic}_dead_letters"
    assert wait_until(lambda: count(postgres, database, dead_table) == 6, timeout=30)
    assert wait_until(lambda: count(postgres, database, f"raw.{topic}") == 2, timeout=30)
    stats = sink.join()

    letters = {
        bytes(key): (None if value is None else bytes(value), reason)
        for key, value, reason in postgres.execute(f"SELECT key, value, reason FROM {dead_table}", dbname=database)
    }
    assert {key: value for key, (value, _) in letters.items()} == malformed
    assert letters[b"not json"][1].startswith("value is not JSON")
    assert letters[b"an array"][1] == "value is a JSON list, not an object"
    assert letters[b"no version"][1] == "schema_version is missing or not a positive integer"
    assert letters[b"not utf-8"][1] == "value is not UTF-8"
    assert letters[b"tombstone"][1] == "empty value (tombstone)"
    assert (stats.written, stats.dead) == (2, 6)


def test_the_table_is_created_from_the_records_and_widened_as_new_fields_and_values_appear(
    kafka: KafkaBroker, postgres: PostgresServer, database: str
) -> None:
    topic = kafka.create_topic(unique("evolving"))
    produce(kafka.bootstrap_servers, topic, [("a", {"id": 1, "amount": 10, "at": "2024-05-01T10:00:00+00:00"})])
    sink = SinkThread(sink_config(kafka, postgres, database, topic))
    assert wait_until(lambda: table_exists(postgres, database, f"raw.{topic}"), timeout=30)
    produce(kafka.bootstrap_servers, topic, [("b", {"id": 2, "amount": 2.5, "Note Text": "new field"})])
    produce(kafka.bootstrap_servers, topic, [("c", {"id": 3, "amount": 7, "tags": ["x", "y"]})])
    produce(kafka.bootstrap_servers, topic, [("a", {"id": 1, "amount": 11})])  # same key: the row is replaced
    assert wait_until(
        lambda: scalar(postgres, database, f"SELECT sum(_kafka_offset) FROM raw.{topic}") == 1 + 2 + 3, timeout=30
    )
    sink.join()

    columns = dict(
        postgres.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'raw'"
            " AND table_name = %s AND column_name NOT LIKE '\\_kafka%%'",
            (topic,),
            dbname=database,
        )
    )
    assert columns == {
        "id": "integer",
        "amount": "double precision",
        "at": "timestamp with time zone",
        "note_text": "text",
        "tags": "jsonb",
    }
    rows = postgres.execute(f"SELECT _kafka_key, amount, note_text, tags FROM raw.{topic} ORDER BY 1", dbname=database)
    assert rows == [("a", 11.0, None, None), ("b", 2.5, "new field", None), ("c", 7.0, None, ["x", "y"])]


def test_a_published_view_follows_the_table_through_new_columns_and_widened_types(
    kafka: KafkaBroker, postgres: PostgresServer, database: str
) -> None:
    """Postgres will not widen a column a view reads: the sink drops and re-makes the view in the same transaction."""
    topic = kafka.create_topic(unique("published"))
    view = Table("consumption", topic)
    produce(kafka.bootstrap_servers, topic, [("a", {"id": 1, "amount": 10})])
    sink = SinkThread(sink_config(kafka, postgres, database, topic, view=view))
    assert wait_until(lambda: table_exists(postgres, database, str(view)), timeout=30)
    produce(kafka.bootstrap_servers, topic, [("b", {"id": 2, "amount": 2.5, "note": "new field"})])  # int → double
    assert wait_until(lambda: count(postgres, database, str(view)) == 2, timeout=30)
    sink.join()

    def columns(schema: str) -> dict[str, str]:
        query = "SELECT column_name, data_type FROM information_schema.columns"
        query += " WHERE table_schema = %s AND table_name = %s"
        return dict(postgres.execute(query, (schema, topic), dbname=database))

    assert columns("consumption") == columns("raw")
    assert columns("consumption")["amount"] == "double precision" and "note" in columns("consumption")
    rows = postgres.execute(f"SELECT _kafka_key, amount, note FROM {view} ORDER BY 1", dbname=database)
    assert rows == [("a", 10.0, None), ("b", 2.5, "new field")]


def test_values_that_a_declared_column_rejects_become_dead_letters_one_by_one(
    kafka: KafkaBroker, postgres: PostgresServer, database: str
) -> None:
    topic = kafka.create_topic(unique("declared"))
    valid = "6f1c8a52-8a0e-4a43-9a4e-0d5a3c1f2b7e"
    produce(kafka.bootstrap_servers, topic, [("1", {"id": valid}), ("2", {"id": "not-a-uuid"}), ("3", {"id": valid})])
    sink = SinkThread(sink_config(kafka, postgres, database, topic, declared={"id": "uuid"}))
    dead_table = f"raw.{topic}_dead_letters"
    assert wait_until(lambda: count(postgres, database, dead_table) == 1, timeout=30)
    assert wait_until(lambda: count(postgres, database, f"raw.{topic}") == 2, timeout=30)
    sink.join()

    key, reason = postgres.execute(f"SELECT key, reason FROM {dead_table}", dbname=database)[0]
    assert bytes(key) == b"2"
    assert reason.startswith("rejected by Postgres: invalid input syntax for type uuid")
    assert scalar(postgres, database, f"SELECT pg_typeof(id)::text FROM raw.{topic} LIMIT 1") == "uuid"
