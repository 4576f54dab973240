"""Where producers read records from: files, a polled HTTP JSON endpoint, and this host's /proc.

Each source yields `(key, record)` pairs; the key decides the partition and is what the sink upserts on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Keyed = tuple[str, dict[str, Any]]


def read_file(path: Path, key_field: str | None = None, fmt: str | None = None) -> Iterator[Keyed]:
    """Records of a CSV file (header row; numbers become numbers) or a JSON-lines file (one object a line).

    Without `key_field` the key is `<file name>:<line>`, so producing the same file twice upserts, not duplicates.
    """
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    with path.open(newline="", encoding="utf-8") as handle:
        if fmt == "csv":
            rows: Iterator[tuple[int, dict[str, Any]]] = (
                (number, {name: _csv_value(cell) for name, cell in row.items()})
                for number, row in enumerate(csv.DictReader(handle), start=2)
            )
        else:
            rows = ((number, json.loads(line)) for number, line in enumerate(handle, start=1) if line.strip())
        for number, record in rows:
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield _key(record, key_field, f"{path.name}:{number}"), record


def _csv_value(cell: str | None) -> Any:
    if cell is None or cell == "":
        return None
    for convert in (int, float):
        try:
            return convert(cell)
        except ValueError:
            pass
    return cell


def poll_http(
    url: str,
    interval: float,
    key_field: str | None = None,
    max_polls: int | None = None,
    timeout: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Keyed]:
    """Records of a JSON endpoint (an object, or a list of objects), fetched every `interval` seconds.

    Without `key_field` the key is a hash of the record, so an unchanged record polled again is not a new row.
    """
    polls = 0
    while max_polls is None or polls < max_polls:
        if polls:
            sleep(interval)
        polls += 1
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
        for record in body if isinstance(body, list) else [body]:
            if isinstance(record, dict):
                digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]
                yield _key(record, key_field, digest), record


def _key(record: dict[str, Any], key_field: str | None, fallback: str) -> str:
    if key_field is None:
        return fallback
    if record.get(key_field) is None:
        raise ValueError(f"record has no key field {key_field!r}: {record}")
    return str(record[key_field])


# vmstat's columns, from /proc/stat and /proc/vmstat counters (per second) and /proc/meminfo levels (kB).
_CPU_FIELDS = ("cpu_user", "cpu_nice", "cpu_system", "cpu_idle", "cpu_iowait", "cpu_irq", "cpu_softirq", "cpu_steal")
_RATES = {"intr": "interrupts", "ctxt": "context_switches", "pgpgin": "blocks_in", "pgpgout": "blocks_out",
          "pswpin": "swap_in", "pswpout": "swap_out"}  # fmt: skip
_MEMORY = {"MemFree": "mem_free_kb", "Buffers": "mem_buffers_kb", "Cached": "mem_cached_kb",
           "MemAvailable": "mem_available_kb"}  # fmt: skip


def host_metrics(
    interval: float,
    count: int | None = None,
    proc: Path = Path("/proc"),
    host: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Keyed]:
    """vmstat-like samples of this machine every `interval` seconds, keyed `<host>:<time>`."""
    host = host or socket.gethostname()
    previous, previous_time = _counters(proc), time.monotonic()
    samples = 0
    while count is None or samples < count:
        sleep(interval)
        current, now = _counters(proc), time.monotonic()
        record = _sample(host, previous, current, now - previous_time, _meminfo(proc), _stat_levels(proc))
        previous, previous_time = current, now
        samples += 1
        yield f"{host}:{record['ts']}", record


def _sample(
    host: str, before: dict[str, int], after: dict[str, int], seconds: float, memory: dict[str, int],
    levels: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    ticks = sum(after[name] - before[name] for name in _CPU_FIELDS) or 1
    record: dict[str, Any] = {"host": host, "ts": datetime.now(UTC).isoformat(timespec="milliseconds")}
    record |= levels
    record |= memory
    record |= {name: round((after[name] - before[name]) / max(seconds, 1e-3), 1) for name in _RATES.values()}
    record |= {name: round(100 * (after[name] - before[name]) / ticks, 1) for name in _CPU_FIELDS}
    return record


def _counters(proc: Path) -> dict[str, int]:
    counters: dict[str, int] = {}
    for line in (proc / "stat").read_text().splitlines():
        name, *values = line.split()
        if name == "cpu":
            counters |= dict(zip(_CPU_FIELDS, map(int, values), strict=False))
        elif name in _RATES:
            counters[_RATES[name]] = int(values[0])
    for line in (proc / "vmstat").read_text().splitlines():
        name, value = line.split()
        if name in _RATES:
            counters[_RATES[name]] = int(value)
    return counters


def _stat_levels(proc: Path) -> dict[str, int]:
    levels = {}
    for line in (proc / "stat").read_text().splitlines():
        name, *values = line.split()
        if name in {"procs_running", "procs_blocked"}:
            levels[name] = int(values[0])
    return levels


def _meminfo(proc: Path) -> dict[str, int]:
    info = {}
    for line in (proc / "meminfo").read_text().splitlines():
        name, value = line.split(":", 1)
        info[name] = int(value.split()[0])
    memory = {column: info[name] for name, column in _MEMORY.items() if name in info}
    memory["swap_used_kb"] = info.get("SwapTotal", 0) - info.get("SwapFree", 0)
    return memory
