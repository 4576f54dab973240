"""The Kafka → Postgres sink: a consumer-group member that lands its partitions' messages exactly once.

Kafka's own committed offsets are only a courtesy (they show consumer lag in the Console): on every partition
assignment the sink seeks to the offsets stored in Postgres with the rows, so a crash at any instant neither loses
nor duplicates a row, and several replicas in one group split the partitions between them.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from parse_sources.schema import Schema, Table
from parse_sources.stream import staging
from parse_sources.stream.clients import client_config
from parse_sources.stream.database import connect
from parse_sources.stream.writer import BatchResult, TableWriter

log = logging.getLogger(__name__)

WRITER_GIL_WAIT_S = 0.0005


@dataclass(frozen=True)
class SinkConfig:
    bootstrap_servers: str
    topic: str
    table: Table
    group_id: str
    dsn: str = ""
    instance_id: str | None = None  # static group membership: a restarted replica gets its partitions back at once
    dead_letter_table: Table | None = None  # default: <table>_dead_letters beside the table
    declared: Schema = field(default_factory=dict)
    batch_size: int = 10_000
    max_wait: float = 0.25  # seconds a batch waits to fill up: the floor of the sink's latency
    alive_file: Path | None = None  # touched every loop, for a container health check
    consumer_overrides: dict[str, Any] = field(default_factory=dict)
    view: Table | None = None  # the table published as a view elsewhere, e.g. consumption.<table>

    @property
    def dead_letters(self) -> Table:
        return self.dead_letter_table or self.table.sibling("_dead_letters")


@dataclass
class SinkStats:
    written: int = 0
    dead: int = 0
    skipped: int = 0
    batches: int = 0
    assigned: set[int] = field(default_factory=set)  # the partitions this replica owns right now

    def add(self, result: BatchResult) -> None:
        self.written += result.written
        self.dead += result.dead
        self.skipped += result.skipped
        self.batches += 1


def consumer_config(config: SinkConfig) -> dict[str, Any]:
    return {
        **client_config(config.bootstrap_servers),
        "group.id": config.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.min.bytes": 1,
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        **({"group.instance.id": config.instance_id} if config.instance_id else {}),
        **config.consumer_overrides,
    }


def run_sink(config: SinkConfig, stop: threading.Event | None = None, stats: SinkStats | None = None) -> SinkStats:
    """Consume until `stop` is set (default: SIGTERM or SIGINT), finishing the batch in hand; `stats` is kept live.

    Two stages overlap: while one batch is written to Postgres (in a second thread, which mostly waits on the
    database), the next is consumed and decoded. At most one batch is in flight, and it is finished before the
    connection is used for anything else (an assignment reads the stored offsets) and before the sink stops.
    """
    stop = stop or _stop_on_signals()
    stats = stats if stats is not None else SinkStats()
    # The writer thread waits on Postgres ~10 times a batch, and each time waits again for the GIL while the
    # consuming thread decodes: at the default 5 ms switch interval that was a third of the writer's time.
    sys.setswitchinterval(min(sys.getswitchinterval(), WRITER_GIL_WAIT_S))
    conn = connect(config.dsn)
    writer = TableWriter(conn, config.table, config.topic, config.dead_letters, config.declared, config.view)
    writer.setup()
    consumer = Consumer(consumer_config(config))
    in_flight: list[Future[BatchResult]] = []

    def finish_in_flight() -> None:
        while in_flight:
            result = in_flight.pop().result()  # a failed write raises here, in the consuming thread
            stats.add(result)
            _commit_courtesy(consumer, config.topic, result.next_offsets)
            log.debug("batch: %d written, %d dead, %d skipped", result.written, result.dead, result.skipped)

    def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        finish_in_flight()
        stored = writer.offsets.read(p.partition for p in partitions)
        for partition in partitions:
            partition.offset = stored.get(partition.partition, OFFSET_BEGINNING)
        consumer.assign(partitions)
        stats.assigned = {p.partition for p in partitions}
        log.info("assigned %s", {p.partition: p.offset for p in partitions})

    def on_revoke(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stats.assigned = set()
        log.info("revoked partitions %s", [p.partition for p in partitions])

    consumer.subscribe([config.topic], on_assign=on_assign, on_revoke=on_revoke)
    log.info("sink %s -> %s (group %s) started", config.topic, config.table, config.group_id)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="sink-writer") as database:
            while not stop.is_set():
                if config.alive_file:
                    config.alive_file.touch()
                messages = consumer.consume(config.batch_size, config.max_wait)
                records = [m for m in messages if _is_record(m)]
                batch = staging.decode(records) if records else None
                finish_in_flight()
                if batch is not None:
                    in_flight.append(database.submit(writer.write, batch))
            finish_in_flight()
    finally:
        consumer.close()
        conn.close()
    log.info("sink stopped: %d rows written, %d dead letters in %d batches", stats.written, stats.dead, stats.batches)
    return stats


def _is_record(message: Any) -> bool:
    error = message.error()
    if error is None:
        return True
    if error.fatal():
        raise KafkaException(error)
    log.warning("consumer: %s", error)  # e.g. the topic does not exist yet: the consumer retries by itself
    return False


def _commit_courtesy(consumer: Consumer, topic: str, next_offsets: dict[int, int]) -> None:
    """Tell Kafka too (asynchronously, best effort), so lag shows in tools; the truth stays in Postgres."""
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in next_offsets.items()], asynchronous=True)
    except KafkaException as exc:
        log.debug("courtesy commit failed: %s", exc)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
