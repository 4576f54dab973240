"""`python -m parse_sources produce|sink|topics`: the streaming commands.

Connection settings come from flags or the environment, so a Swarm service needs no command-line secrets:
KAFKA_BOOTSTRAP_SERVERS, and libpq's PGHOST/PGDATABASE/PGUSER with PGPASSWORD_FILE.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from parse_sources.schema import Table
from parse_sources.stream import sources
from parse_sources.stream.clients import client_config
from parse_sources.stream.producer import RecordProducer, producer_config
from parse_sources.stream.sink import SinkConfig, run_sink
from parse_sources.stream.topics import TopicSpec, ensure_topics

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    produce = subparsers.add_parser("produce", help="send records to a Kafka topic")
    kinds = produce.add_subparsers(required=True, metavar="SOURCE")

    file = kinds.add_parser("file", help="a CSV (header row) or JSON-lines file")
    file.add_argument("path", type=Path)
    file.add_argument("--format", choices=("csv", "jsonl"), help="default: from the file name")
    file.add_argument("--key", help="field whose value is the message key (default: file name and line)")
    file.set_defaults(handler=_produce, records=lambda a: sources.read_file(a.path, a.key, a.format))

    http = kinds.add_parser("http", help="a JSON endpoint (object or list of objects), polled")
    http.add_argument("url")
    http.add_argument("--interval", type=float, default=10.0, help="seconds between polls (default 10)")
    http.add_argument("--max-polls", type=int, help="stop after this many polls (default: never)")
    http.add_argument("--key", help="field whose value is the message key (default: a hash of the record)")
    http.set_defaults(handler=_produce, records=lambda a: sources.poll_http(a.url, a.interval, a.key, a.max_polls))

    metrics = kinds.add_parser("metrics", help="vmstat-like samples of this host, from /proc")
    metrics.add_argument("--interval", type=float, default=2.0, help="seconds between samples (default 2)")
    metrics.add_argument("--count", type=int, help="stop after this many samples (default: never)")
    metrics.add_argument("--host", help="host name in the records (default: this machine's)")
    metrics.set_defaults(
        handler=_produce, records=lambda a: sources.host_metrics(a.interval, a.count, host=a.host or None)
    )
    for kind in (file, http, metrics):
        _kafka_arguments(kind)
        kind.add_argument("--topic", required=True)
        kind.add_argument("--alive-file", type=Path, help="touched at every record, for health checks")

    sink = subparsers.add_parser("sink", help="land a topic in a Postgres table, exactly once")
    _kafka_arguments(sink)
    sink.add_argument("--topic", required=True)
    sink.add_argument("--table", required=True, help="schema.table, e.g. raw.events (default schema raw)")
    sink.add_argument("--group", help="consumer group (default: sink-<schema>.<table>)")
    sink.add_argument(
        "--instance-id",
        default=os.environ.get("SINK_INSTANCE_ID") or None,
        help="static group membership id, unique per replica (env SINK_INSTANCE_ID)",
    )
    sink.add_argument("--dsn", default="", help="libpq connection string (default: PG* environment variables)")
    sink.add_argument("--dead-letter-table", help="default: <table>_dead_letters")
    sink.add_argument("--schema", type=Path, help='JSON file {"column": "postgres type", ...} to create the table')
    sink.add_argument(
        "--view", help="also publish the table as this view (schema.table, e.g. consumption.events), kept in step"
    )
    sink.add_argument("--batch-size", type=int, default=10_000)
    sink.add_argument("--max-wait", type=float, default=0.25, help="seconds a batch may wait to fill (0.25)")
    sink.add_argument("--alive-file", type=Path, help="touched every loop, for health checks")
    sink.set_defaults(handler=_sink)

    topics = subparsers.add_parser("topics", help="create or alter the declared topics (idempotent)")
    _kafka_arguments(topics)
    topics.add_argument(
        "--spec",
        default=os.environ.get("KAFKA_TOPICS", "{}"),
        help='JSON {"name": {"partitions": 3, "retention_ms": ..., "cleanup_policy": ...}} (env KAFKA_TOPICS)',
    )
    topics.add_argument("--brokers", type=int, default=1, help="cluster size: the default replication factor")
    topics.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the cluster (120)")
    topics.set_defaults(handler=_topics)


def _kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="host:port[,...] (env KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)",
    )


def _produce(args: argparse.Namespace) -> int:
    producer = RecordProducer(producer_config(args.bootstrap_servers), args.topic)
    records: Iterator[tuple[str, dict[str, Any]]] = args.records(args)
    for sent, (key, record) in enumerate(records, start=1):
        producer.send(key, record)
        if args.alive_file:
            args.alive_file.touch()
        if sent % 10_000 == 0:
            log.info("%d records queued, %d delivered", sent, producer.report.delivered)
    report = producer.flush()
    log.info("%d records delivered to %s", report.delivered, args.topic)
    return 0


def _sink(args: argparse.Namespace) -> int:
    table = Table.parse(args.table)
    config = SinkConfig(
        bootstrap_servers=args.bootstrap_servers,
        topic=args.topic,
        table=table,
        group_id=args.group or f"sink-{table}",
        dsn=args.dsn,
        instance_id=args.instance_id,
        dead_letter_table=Table.parse(args.dead_letter_table) if args.dead_letter_table else None,
        declared=json.loads(args.schema.read_text()) if args.schema else {},
        batch_size=args.batch_size,
        max_wait=args.max_wait,
        alive_file=args.alive_file,
        view=Table.parse(args.view) if args.view else None,
    )
    run_sink(config)
    return 0


def _topics(args: argparse.Namespace) -> int:
    specs = [TopicSpec.from_mapping(name, spec, args.brokers) for name, spec in json.loads(args.spec).items()]
    admin = AdminClient(client_config(args.bootstrap_servers))
    deadline = time.monotonic() + args.wait
    while True:
        try:
            changes = ensure_topics(admin, specs)
            break
        except Exception as exc:  # the broker may still be starting: retry until the deadline
            admin.poll(0)  # librdkafka's log lines (e.g. why the broker cannot be reached), rate-limited
            if time.monotonic() > deadline:
                raise
            log.info("cluster not ready (%s); retrying", exc)
            time.sleep(2)
    admin.poll(0)
    for change in changes:
        log.info("%s", change)
    log.info("%d topics declared, %d changes", len(specs), len(changes))
    return 0
