"""Benchmark the Kafka → Postgres sink against its two limits, measured in the same run on the same machine.

    .venv/bin/python bench/sink.py [--messages 1000000] [--rate 1000] [--seconds 20]

Starts a throwaway Postgres 15 (host binaries) and a KRaft broker (kafka/lib, host Java) on 127.0.0.1, then:
  (a) a bare confluent-kafka consume loop over the topic, no database: the broker's limit;
  (b) COPY FROM STDIN of the same rows into a plain table: the database's limit;
  sink: `run_sink` landing the topic (staging COPY + upsert + offsets in one transaction per batch);
  latency: producer → row visible in Postgres at a steady rate, p50/p99.
Prints messages/s for each and the sink's share of min(a, b). Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402

from parse_sources.schema import Table  # noqa: E402
from parse_sources.stream.producer import RecordProducer, producer_config  # noqa: E402
from parse_sources.stream.sink import SinkConfig, SinkStats, run_sink  # noqa: E402
from tests.integration import conftest  # noqa: E402  (the same throwaway servers the integration tests use)

PARTITIONS = 4


def produce(bootstrap: str, topic: str, count: int) -> float:
    started = time.perf_counter()
    producer = RecordProducer(producer_config(bootstrap), topic)
    producer.send_all((f"k{n}", {"seq": n, "value": n * 1.5, "name": f"m{n}"}) for n in range(count))
    producer.flush(timeout=300)
    return count / (time.perf_counter() - started)


def bare_consume(bootstrap: str, topic: str, count: int) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-bare", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen, started, deadline = 0, None, time.monotonic() + 300
    while seen < count and time.monotonic() < deadline:
        batch = consumer.consume(10_000, 1.0)
        if batch and started is None:
            started = time.perf_counter()
        seen += sum(1 for m in batch if m.error() is None)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return seen / elapsed


def copy_rows(dsn: str, count: int) -> float:
    """COPY of rows shaped like the sink's (key, partition, offset, timestamp, three fields)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    rows = [(f"k{n}", n % PARTITIONS, n // PARTITIONS, now, n, n * 1.5, f"m{n}") for n in range(count)]
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TABLE copy_reference (k text PRIMARY KEY, p integer, o bigint, t timestamptz,"
            " seq integer, value double precision, name text)"
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy("COPY copy_reference FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return count / (time.perf_counter() - started)


def sink_throughput(bootstrap: str, dsn: str, topic: str, count: int) -> float:
    stop, stats = threading.Event(), SinkStats()
    config = SinkConfig(bootstrap, topic, Table("raw", topic), "bench-sink", dsn=dsn)
    started = time.perf_counter()
    thread = threading.Thread(target=run_sink, args=(config, stop, stats), daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    while stats.written < count and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join(timeout=60)
    return stats.written / elapsed


def latency(bootstrap: str, dsn: str, topic: str, rate: int, seconds: int) -> list[float]:
    """Seconds from `produce()` to the row being visible to another connection, per message."""
    total = rate * seconds
    stop, stats = threading.Event(), SinkStats()
    config = SinkConfig(bootstrap, topic, Table("raw", topic), "bench-latency", dsn=dsn)
    threading.Thread(target=run_sink, args=(config, stop, stats), daemon=True).start()
    sent: dict[int, float] = {}

    def produce_steadily() -> None:
        producer = RecordProducer(producer_config(bootstrap, **{"linger.ms": 1}), topic)
        started = time.perf_counter()
        for n in range(total):
            time.sleep(max(0.0, started + n / rate - time.perf_counter()))
            sent[n] = time.perf_counter()
            producer.send(f"k{n}", {"seq": n, "value": n * 1.5, "name": f"m{n}"})
        producer.flush()

    producer = threading.Thread(target=produce_steadily, daemon=True)
    producer.start()
    visible: dict[int, float] = {}
    low = -1  # every seq <= low has been seen
    deadline = time.monotonic() + seconds + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while len(visible) < total and time.monotonic() < deadline:
            if conn.execute("SELECT to_regclass(%s)", (f"raw.{topic}",)).fetchone()[0]:
                for (seq,) in conn.execute(f"SELECT seq FROM raw.{topic} WHERE seq > %s", (low,)):
                    visible.setdefault(seq, time.perf_counter())
                while low + 1 in visible:
                    low += 1
            time.sleep(0.005)
    stop.set()
    return [visible[n] - sent[n] for n in visible if n in sent]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=1_000, help="messages/s for the latency run")
    parser.add_argument("--seconds", type=int, default=20, help="length of the latency run")
    args = parser.parse_args()

    postgres = contextlib.contextmanager(conftest.postgres.__wrapped__)  # the fixtures' own setup and teardown
    broker = contextlib.contextmanager(conftest.kafka.__wrapped__)
    with postgres() as pg, broker() as kafka:
        pg.execute("CREATE DATABASE bench")
        dsn, bootstrap = pg.dsn("bench"), kafka.bootstrap_servers
        topic = kafka.create_topic("bench_throughput", PARTITIONS)
        print(f"producing {args.messages:,} messages ({PARTITIONS} partitions) ...", flush=True)
        print(f"  producer: {produce(bootstrap, topic, args.messages):,.0f} messages/s", flush=True)
        bare = bare_consume(bootstrap, topic, args.messages)
        print(f"(a) bare consume loop, no database: {bare:,.0f} messages/s", flush=True)
        copy = copy_rows(dsn, args.messages)
        print(f"(b) COPY FROM STDIN of the same rows: {copy:,.0f} rows/s", flush=True)
        sink = sink_throughput(bootstrap, dsn, topic, args.messages)
        print(f"sink: {sink:,.0f} messages/s = {100 * sink / min(bare, copy):.0f} % of min(a, b) (target >= 50 %)")
        delays = latency(bootstrap, dsn, kafka.create_topic("bench_latency", PARTITIONS), args.rate, args.seconds)
        cuts = statistics.quantiles(delays, n=100)
        print(
            f"latency at {args.rate:,} messages/s for {args.seconds} s ({len(delays):,} messages):"
            f" p50 {1000 * cuts[49]:.0f} ms, p99 {1000 * cuts[98]:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
