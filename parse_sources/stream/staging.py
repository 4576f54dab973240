"""A batch's messages as staging rows that carry each value's raw JSON, for Postgres to extract the fields from.

Python decodes (with orjson) only what the sink must know before Postgres sees the batch: whether a message is a
record in the envelope, else it is a dead letter, and the records themselves, from which the writer infers the schema
they need. The values are not converted and re-encoded here: the bytes the producer sent go to the staging table as
jsonb, and the upsert casts each field to its column in Postgres, which costs far less there than in Python.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from parse_sources.schema import column_name
from parse_sources.stream import envelope
from parse_sources.stream.dead_letters import DeadLetter

COLUMNS = "key text, partition integer, kafka_offset bigint, timestamp_ms bigint, value jsonb"
_NULL = b"\\N"


@dataclass(slots=True)
class Row:
    key: bytes  # UTF-8
    partition: int
    offset: int
    timestamp_ms: int | None
    value: bytes  # the envelope as JSON; Postgres reads the record from its "data"
    record: dict[str, Any]  # the decoded record, fields named like columns
    line: bytes = b""  # the row in COPY's text format, in the order of COLUMNS


@dataclass(frozen=True)
class Batch:
    """A batch's messages decoded, before anyone knows which of them are already landed."""

    messages: Sequence[Message]
    rows: list[Row]  # the records, in message order
    dead: list[DeadLetter]  # the messages that are not records, with the reason

    def fresh(self, next_offsets: Mapping[int, int]) -> tuple[dict[bytes, Row], list[DeadLetter]]:
        """Of the messages at or after next_offsets: rows by key (the latest message of a key wins), dead letters.

        Already landed messages are dropped before keys are compared, so an old message can never hide a new one.
        """
        rows = {row.key: row for row in self.rows if row.offset >= next_offsets[row.partition]}
        dead = [letter for letter in self.dead if letter[0].offset() >= next_offsets[letter[0].partition()]]
        return rows, dead


def decode(messages: Sequence[Message]) -> Batch:
    """Each message as a staging row, or a dead letter with the reason.

    Of fields whose names become the same column name, the last wins. No column name starts with "_", so a field
    can never land in one of the sink's own `_kafka_*` columns.
    """
    rows: list[Row] = []
    dead: list[DeadLetter] = []
    for message in messages:
        value = message.value()
        try:
            record = envelope.decode(value, exact=False)
        except envelope.MalformedMessage as exc:
            dead.append((message, str(exc)))
            continue
        key = message.key()
        if key is None:
            key = f"{message.partition()}-{message.offset()}".encode()
        else:
            try:
                key.decode()
            except UnicodeDecodeError:
                dead.append((message, "key is not UTF-8"))
                continue
        kind, millis = message.timestamp()
        timestamp = None if kind == TIMESTAMP_NOT_AVAILABLE else millis
        rows.append(Row(key, message.partition(), message.offset(), timestamp, value, record))
    if rows and envelope.has_long_integer(b"\n".join(row.value for row in rows)):
        for row in rows:
            if envelope.has_long_integer(row.value):
                row.record = envelope.decode(row.value)
    _name_like_columns(rows)
    for row in rows:
        row.line = _copy_line(row)  # here, while the previous batch is being written, not in the writer
    return Batch(messages, rows, dead)


def _name_like_columns(rows: Collection[Row]) -> None:
    """Rename fields to their column names where they differ (rare), re-encoding those values for Postgres."""
    names: set[str] = set()
    for row in rows:
        names.update(row.record)
    if all(column_name(name) == name for name in names):
        return
    for row in rows:
        record = {column_name(name): value for name, value in row.record.items()}
        row.record = record
        row.value = json.dumps({"data": record}, separators=(",", ":")).encode()  # exact for any integer


def copy_text(rows: Collection[Row]) -> bytes:
    """The rows in COPY's text format, in the order of COLUMNS."""
    return b"".join(row.line for row in rows)


def _copy_line(row: Row) -> bytes:
    timestamp = _NULL if row.timestamp_ms is None else b"%d" % row.timestamp_ms
    return b"%b\t%d\t%d\t%b\t%b\n" % (_escape(row.key), row.partition, row.offset, timestamp, _escape(row.value))


def _escape(text: bytes) -> bytes:
    """COPY text escaping: backslash, and the characters that would end a field or a row."""
    return text.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
