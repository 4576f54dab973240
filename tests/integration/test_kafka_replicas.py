"""Several sink replicas in one consumer group: they split the partitions and hand them over without loss."""

from __future__ import annotations

import threading
import time

import pytest

from tests.integration.conftest import KafkaBroker, PostgresServer, writer_database
from tests.integration.kafka_support import SinkThread, count, produce, scalar, sink_config, unique, wait_until


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    name = unique("replicas")
    writer_database(postgres, name)  # the sink runs as a writer role with the platform's grants
    return name


def test_two_replicas_split_the_partitions_and_survive_rebalances(
    kafka: KafkaBroker, postgres: PostgresServer, database: str
) -> None:
    total = 30_000
    topic = kafka.create_topic(unique("replicated"), partitions=4)
    produced = threading.Event()

    def produce_steadily() -> None:  # ~10 s of traffic across the joins and the leave
        for start in range(0, total, 3_000):
            produce(kafka.bootstrap_servers, topic, ((f"k{n}", {"n": n}) for n in range(start, start + 3_000)))
            time.sleep(1)
        produced.set()

    threading.Thread(target=produce_steadily, daemon=True).start()
    first = SinkThread(sink_config(kafka, postgres, database, topic))
    assert wait_until(lambda: (count(postgres, database, f"raw.{topic}") or 0) > 0, timeout=30)
    second = SinkThread(sink_config(kafka, postgres, database, topic))  # joins: the group rebalances
    assert wait_until(lambda: second.assigned and first.assigned and len(first.assigned | second.assigned) == 4, 30)
    split = (set(first.assigned), set(second.assigned))
    time.sleep(2)
    first_stats = first.join()  # leaves: the second replica takes every partition over
    assert produced.wait(timeout=60)
    assert wait_until(lambda: count(postgres, database, f"raw.{topic}") == total, timeout=60)
    second_stats = second.join()

    assert split[0] and split[1] and not split[0] & split[1], f"partitions were not split: {split}"
    assert first_stats.written > 0 and second_stats.written > 0
    assert first_stats.written + second_stats.written == total
    assert scalar(postgres, database, f"SELECT count(DISTINCT n) FROM raw.{topic}") == total
    updates = scalar(
        postgres, database, f"SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'raw.{topic}'::regclass"
    )
    assert updates == 0, "a partition handed over was replayed into rows already landed"
