"""The dead-letter table: messages the sink could not land, with the reason and the original bytes.

One row per message (unique on topic/partition/offset), written in the batch's transaction, so a replayed batch
adds no second copy and a dead letter is never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from confluent_kafka import Message
from psycopg import sql

from parse_sources.schema import Table

DeadLetter = tuple[Message, str]  # the message, and why it was rejected


class DeadLetterTable:
    def __init__(self, conn: psycopg.Connection[Any], table: Table) -> None:
        self._conn = conn
        self.table = table

    def create(self) -> None:
        self._conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, topic text NOT NULL,"
                " partition integer NOT NULL, kafka_offset bigint NOT NULL, key bytea, value bytea,"
                " reason text NOT NULL, failed_at timestamptz NOT NULL DEFAULT now(),"
                " UNIQUE (topic, partition, kafka_offset))"
            ).format(self.table.identifier)
        )

    def add(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        with self._conn.cursor() as cursor:
            cursor.executemany(
                sql.SQL(
                    "INSERT INTO {} (topic, partition, kafka_offset, key, value, reason)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                ).format(self.table.identifier),
                [(m.topic(), m.partition(), m.offset(), m.key(), m.value(), reason) for m, reason in letters],
            )
