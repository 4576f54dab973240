"""Streaming on a real platform: the metrics demo flows producer → Kafka → sink → Postgres, out of the box."""

from __future__ import annotations

import time

from tests.e2e.conftest import Platform


def row_count(platform: Platform) -> int:
    found = platform.psql("SELECT to_regclass('raw.host_metrics') IS NOT NULL").strip()
    return int(platform.psql("SELECT count(*) FROM raw.host_metrics").strip()) if found == "t" else 0


def test_the_metrics_demo_lands_new_rows_every_few_seconds(platform: Platform) -> None:
    deadline = time.monotonic() + 90
    first = row_count(platform)
    while first == 0 and time.monotonic() < deadline:
        time.sleep(2)
        first = row_count(platform)
    assert first > 0, "no metrics reached raw.host_metrics within 90 s of the deploy"
    time.sleep(8)
    assert row_count(platform) > first, "no new metrics rows within 8 s"


def test_kafka_is_healthy_and_the_console_is_left_out_in_local_mode(platform: Platform) -> None:
    rows = {(r["component"], r["service"]): r for r in platform.status()["services"]}
    assert rows[("kafka", "broker-0")]["health"] == "healthy"
    assert rows[("kafka", "topics")]["health"] == "completed"
    assert ("kafka", "console") not in rows, "Redpanda Console has no local image; it is left out in local mode"
    assert "no image can be built here in local mode" in platform.up_output
