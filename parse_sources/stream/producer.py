"""A keyed, idempotent Kafka producer with delivery reports and bounded memory.

librdkafka queues messages locally; when that queue is full, `send` waits for deliveries instead of growing it,
so a fast source slows down to the broker's pace rather than exhausting memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from parse_sources.stream import envelope
from parse_sources.stream.clients import client_config

log = logging.getLogger(__name__)

Record = Mapping[str, Any]


class DeliveryFailed(RuntimeError):
    """Some messages were not acknowledged by the broker."""


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    first_error: str | None = None


def producer_config(bootstrap_servers: str, max_queued: int = 100_000, **overrides: Any) -> dict[str, Any]:
    """Idempotent (no duplicates or reordering on retries, acks from all in-sync replicas), small batches."""
    return {
        **client_config(bootstrap_servers),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": max_queued,
        "queue.buffering.max.kbytes": 64 * 1024,
        **overrides,
    }


class RecordProducer:
    """Sends records as versioned JSON envelopes; counts what the broker acknowledged."""

    def __init__(self, config: dict[str, Any], topic: str) -> None:
        self.topic = topic
        self.report = DeliveryReport()
        self._producer = Producer(config)

    def send(self, key: str, record: Record) -> None:
        self.send_raw(key.encode(), envelope.encode(record))

    def send_raw(self, key: bytes | None, value: bytes | None) -> None:
        """Queue one message; while the local queue is full, serve delivery reports (back-pressure)."""
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def send_all(self, records: Iterable[tuple[str, Record]]) -> int:
        count = 0
        for key, record in records:
            self.send(key, record)
            count += 1
        return count

    def flush(self, timeout: float = 60.0) -> DeliveryReport:
        """Wait for every queued message's delivery report; DeliveryFailed if any was not acknowledged."""
        deadline = time.monotonic() + timeout
        while (remaining := self._producer.flush(1.0)) and time.monotonic() < deadline:
            log.info("waiting for %d deliveries", remaining)
        if remaining:
            raise DeliveryFailed(f"{remaining} messages still queued after {timeout:.0f} s")
        if self.report.failed:
            raise DeliveryFailed(f"{self.report.failed} messages failed; first error: {self.report.first_error}")
        return self.report

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.report.delivered += 1
            return
        self.report.failed += 1
        if self.report.first_error is None:
            self.report.first_error = str(error)
            log.error("delivery failed: %s", error)
