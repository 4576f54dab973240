"""The message format on every topic: a JSON object `{"schema_version": N, "data": {...}}`, keyed by record.

The version lets consumers tell record layouts apart when a producer changes what it sends; the sink rejects
anything else to the dead-letter table instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

SCHEMA_VERSION = 1
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_INTEGER = b"0" * 20  # 20 digits in a row: maybe an integer beyond 64 bits, which orjson turns into a float


class MalformedMessage(ValueError):
    """A message the sink cannot land; `str()` is the reason stored in the dead-letter table."""


def encode(record: Mapping[str, Any], schema_version: int = SCHEMA_VERSION) -> bytes:
    return json.dumps({"schema_version": schema_version, "data": record}, separators=(",", ":"), default=str).encode()


def decode(value: bytes | None, *, exact: bool = True) -> dict[str, Any]:
    """The record a message carries; MalformedMessage says why there is none.

    Parsed by orjson, and by the standard library wherever the two could differ: a document orjson rejects (for the
    standard library's reason, or its NaN and lone surrogates), and, when `exact`, one with a 20-digit run, so an
    integer beyond 64 bits stays an integer. Callers that decode many values pass exact=False and use
    `has_long_integer` on all of them at once, which is much cheaper.
    """
    if value is None:
        raise MalformedMessage("empty value (tombstone)")
    try:
        message = _loads_exactly(value) if exact and has_long_integer(value) else orjson.loads(value)
    except orjson.JSONDecodeError:
        message = _loads_exactly(value)
    if type(message) is not dict:
        raise MalformedMessage(f"value is a JSON {type(message).__name__}, not an object")
    version = message.get("schema_version")
    if type(version) is not int or version < 1:
        raise MalformedMessage("schema_version is missing or not a positive integer")
    data = message.get("data")
    if type(data) is not dict:
        raise MalformedMessage("data is missing or not a JSON object")
    return data


def has_long_integer(text: bytes) -> bool:
    """Whether `text` may hold an integer that orjson cannot decode exactly (false positives only cost time)."""
    return _LONG_INTEGER in text.translate(_DIGITS)


def _loads_exactly(value: bytes) -> Any:
    try:
        return json.loads(value.decode())  # bytes would let json guess UTF-16/32; the format is UTF-8
    except UnicodeDecodeError:
        raise MalformedMessage("value is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise MalformedMessage(f"value is not JSON: {exc.msg} at position {exc.pos}") from None
