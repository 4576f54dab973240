"""The message format on every topic: a JSON object `{"schema_version": N, "data": {...}}`, keyed by record.

The version lets consumers tell record layouts apart when a producer changes what it sends; the sink rejects
anything else to the dead-letter table instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 1


class MalformedMessage(ValueError):
    """A message the sink cannot land; `str()` is the reason stored in the dead-letter table."""


def encode(record: Mapping[str, Any], schema_version: int = SCHEMA_VERSION) -> bytes:
    return json.dumps({"schema_version": schema_version, "data": record}, separators=(",", ":"), default=str).encode()


def decode(value: bytes | None) -> dict[str, Any]:
    """The record a message carries; MalformedMessage says why there is none."""
    if value is None:
        raise MalformedMessage("empty value (tombstone)")
    try:
        message = json.loads(value.decode())  # bytes would let json guess UTF-16/32; the format is UTF-8
    except UnicodeDecodeError:
        raise MalformedMessage("value is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise MalformedMessage(f"value is not JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(message, dict):
        raise MalformedMessage(f"value is a JSON {type(message).__name__}, not an object")
    version = message.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MalformedMessage("schema_version is missing or not a positive integer")
    data = message.get("data")
    if not isinstance(data, dict):
        raise MalformedMessage("data is missing or not a JSON object")
    return data
