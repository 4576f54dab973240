"""Consumer offsets kept in Postgres, next to the rows they account for.

The sink advances a partition's offset in the same transaction that writes its rows, so the table and the offset
can never disagree: after a crash, consumption resumes exactly after the last committed row. Offsets belong to the
target table (not the consumer group), so renaming a group neither replays nor skips anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from parse_sources.schema import Table

OFFSETS_TABLE = "kafka_sink_offsets"


class OffsetStore:
    def __init__(self, conn: psycopg.Connection[Any], target: Table, topic: str) -> None:
        self._conn = conn
        self._table = Table(target.schema, OFFSETS_TABLE).identifier
        self._target = str(target)
        self._topic = topic

    def create(self) -> None:
        self._conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (target text, topic text, partition integer,"
                " next_offset bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),"
                " PRIMARY KEY (target, topic, partition))"
            ).format(self._table)
        )

    def read(self, partitions: Iterable[int]) -> dict[int, int]:
        """The next offset to consume per partition, for those that have one."""
        rows = self._conn.execute(
            sql.SQL(
                "SELECT partition, next_offset FROM {} WHERE target = %s AND topic = %s AND partition = ANY(%s)"
            ).format(self._table),
            (self._target, self._topic, list(partitions)),
        ).fetchall()
        return dict(rows)

    def lock(self, partitions: Iterable[int]) -> dict[int, int]:
        """Within a transaction: lock the partitions' rows (creating them at 0) and return their next offsets.

        The lock serialises writers of one partition, so a consumer that lost its partition in a rebalance but has
        not noticed yet cannot write rows the new owner already wrote: it finds the offset moved and skips them.
        """
        partitions = sorted(set(partitions))
        self._conn.execute(
            sql.SQL(
                "INSERT INTO {} (target, topic, partition, next_offset) SELECT %s, %s, unnest(%s::integer[]), 0"
                " ON CONFLICT DO NOTHING"
            ).format(self._table),
            (self._target, self._topic, partitions),
        )
        rows = self._conn.execute(
            sql.SQL(
                "SELECT partition, next_offset FROM {} WHERE target = %s AND topic = %s AND partition = ANY(%s)"
                " ORDER BY partition FOR UPDATE"
            ).format(self._table),
            (self._target, self._topic, partitions),
        ).fetchall()
        return dict(rows)

    def advance(self, next_offsets: Mapping[int, int]) -> None:
        """Within the transaction that holds the lock: record where each partition continues."""
        if not next_offsets:
            return
        self._conn.execute(
            sql.SQL(
                "UPDATE {} o SET next_offset = u.next_offset, updated_at = now()"
                " FROM unnest(%s::integer[], %s::bigint[]) AS u(partition, next_offset)"
                " WHERE o.target = %s AND o.topic = %s AND o.partition = u.partition"
            ).format(self._table),
            (list(next_offsets), list(next_offsets.values()), self._target, self._topic),
        )
