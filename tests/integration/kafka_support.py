"""Helpers shared by the Kafka integration tests: a warehouse database per test, producing, waiting."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Producer

from parse_sources.schema import Table
from parse_sources.stream.producer import RecordProducer, producer_config
from parse_sources.stream.sink import SinkConfig, SinkStats, run_sink
from tests.integration.conftest import ETL_WRITER, ETL_WRITER_PASSWORD, KafkaBroker, PostgresServer


def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:8]}"


def produce(bootstrap_servers: str, topic: str, records: Iterable[tuple[str, dict[str, Any]]]) -> int:
    producer = RecordProducer(producer_config(bootstrap_servers), topic)
    producer.send_all(records)
    return producer.flush().delivered


def produce_raw(bootstrap_servers: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap_servers})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll until `predicate()` is truthy; return its last value (falsy when `timeout` passed)."""
    deadline = time.monotonic() + timeout
    while (value := predicate()) is None or not value:
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)
    return value


def scalar(postgres: PostgresServer, database: str, query: str) -> object:
    rows = postgres.execute(query, dbname=database)
    return rows[0][0] if rows else None


def table_exists(postgres: PostgresServer, database: str, table: str) -> bool:
    return scalar(postgres, database, f"SELECT to_regclass('{table}') IS NOT NULL") is True


def count(postgres: PostgresServer, database: str, table: str) -> int | None:
    """Rows in `table`, or None while the sink has not created it."""
    return (
        scalar(postgres, database, f"SELECT count(*) FROM {table}") if table_exists(postgres, database, table) else None
    )


class SinkThread:
    """A sink running in this process until stopped; its statistics are readable afterwards."""

    def __init__(self, config: SinkConfig) -> None:
        self.stop = threading.Event()
        self.stats = SinkStats()
        self.finished = False
        self.thread = threading.Thread(target=self._run, args=(config,), daemon=True)
        self.thread.start()

    def _run(self, config: SinkConfig) -> None:
        run_sink(config, self.stop, self.stats)
        self.finished = True

    @property
    def assigned(self) -> set[int]:
        return set(self.stats.assigned)

    def join(self) -> SinkStats:
        self.stop.set()
        self.thread.join(timeout=30)
        assert self.finished, "the sink thread died"
        return self.stats


def writer_dsn(postgres: PostgresServer, database: str) -> str:
    """The platform's writer role on a database made by writer_database: what a deployed sink connects as."""
    return postgres.dsn(database, user=ETL_WRITER, password=ETL_WRITER_PASSWORD)


def sink_config(kafka: KafkaBroker, postgres: PostgresServer, database: str, topic: str, **extra: object) -> SinkConfig:
    return SinkConfig(
        bootstrap_servers=kafka.bootstrap_servers,
        topic=topic,
        table=Table("raw", topic),
        group_id=f"sink-{topic}",
        dsn=writer_dsn(postgres, database),
        max_wait=0.1,
        **extra,  # type: ignore[arg-type]
    )
