"""The Kafka clients' shared settings: backoff and a rate-limited librdkafka log (no broker needed)."""

from __future__ import annotations

import logging
import time

import pytest
from confluent_kafka import Consumer

from parse_sources.schema import Table
from parse_sources.stream.clients import RateLimitedLog, client_config
from parse_sources.stream.producer import producer_config
from parse_sources.stream.sink import SinkConfig, consumer_config

RESOLVE = "FAIL [rdkafka#consumer-1] [thrd:kafka-0:9092/bootstrap]: kafka-0:9092/bootstrap: Failed to resolve 'kafka-0:9092': Name or service not known (after %dms in state CONNECT)"  # noqa: E501


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "test.librdkafka"]


def rate_limited(clock: Clock, **options: float) -> RateLimitedLog:
    return RateLimitedLog(logging.getLogger("test.librdkafka"), clock=clock, **options)


def emit(log: RateLimitedLog, text: str, level: int = logging.ERROR) -> None:
    """As confluent-kafka calls a `logger`: log(level, "%s [%s] %s", facility, client, text)."""
    facility, client, rest = text.split(" ", 2)
    log.log(level, "%s %s %s", facility, client, rest)


def test_a_repeated_line_is_logged_once_per_interval_with_the_count_of_repeats(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="test.librdkafka")
    log = rate_limited(clock, interval=10.0)
    start = clock.now
    for i in range(200):  # one every 50 ms for 10 s, as a consumer retries an unresolvable broker
        clock.now = start + i * 0.05
        emit(log, RESOLVE % (i % 4))
    clock.now = start + 10  # 10 s after the first
    emit(log, RESOLVE % 1)
    assert messages(caplog) == [
        (logging.ERROR, RESOLVE % 0),
        (logging.ERROR, RESOLVE % 1 + " [repeated 199 times in 10 s]"),
    ]


def test_the_count_starts_again_after_each_logged_line(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.librdkafka")
    log = rate_limited(clock, interval=10.0)
    emit(log, RESOLVE % 0)
    clock.now += 30  # quiet for a while: the next one is news, with no repeats to report
    emit(log, RESOLVE % 0)
    emit(log, RESOLVE % 0)
    clock.now += 10
    emit(log, RESOLVE % 0)
    assert [m for _, m in messages(caplog)] == [
        RESOLVE % 0,
        RESOLVE % 0,
        RESOLVE % 0 + " [repeated 1 times in 10 s]",
    ]


def test_different_lines_and_levels_are_limited_separately(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.librdkafka")
    log = rate_limited(clock)
    refused = "FAIL [rdkafka#producer-1] [thrd:kafka-1:9092/bootstrap]: Connect to ipv4#10.0.0.5:9092 failed"
    for _ in range(3):
        emit(log, RESOLVE % 0)
        emit(log, refused)
        emit(log, "CONFWARN [rdkafka#producer-1] [thrd:app]: property x ignored", logging.WARNING)
    assert messages(caplog) == [
        (logging.ERROR, RESOLVE % 0),
        (logging.ERROR, refused),
        (logging.WARNING, "CONFWARN [rdkafka#producer-1] [thrd:app]: property x ignored"),
    ]


def test_only_so_many_distinct_lines_are_remembered(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.librdkafka")
    log = rate_limited(clock, max_lines=2)
    for name in ("a", "b", "c", "a"):  # "a" was forgotten when "c" came: logged again
        emit(log, f"FAIL [x] {name}")
    assert [m for _, m in messages(caplog)] == ["FAIL [x] a", "FAIL [x] b", "FAIL [x] c", "FAIL [x] a"]
    assert len(log._seen) == 2


def test_every_client_gets_the_backoff_and_its_own_rate_limited_log() -> None:
    sink = SinkConfig(bootstrap_servers="kafka-0:9092", topic="t", table=Table("raw", "t"), group_id="g")
    configs = [client_config("kafka-0:9092"), producer_config("kafka-0:9092"), consumer_config(sink)]
    for config in configs:
        assert config["bootstrap.servers"] == "kafka-0:9092"
        assert config["reconnect.backoff.ms"] == 500
        assert config["reconnect.backoff.max.ms"] == 5000
        assert isinstance(config["logger"], RateLimitedLog)
    assert len({id(c["logger"]) for c in configs}) == 3
    assert producer_config("kafka-0:9092", **{"reconnect.backoff.ms": 50})["reconnect.backoff.ms"] == 50


def test_librdkafka_accepts_the_settings_and_its_failures_come_through_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="parse_sources.stream.librdkafka")
    # nothing listens on port 1: every connection attempt is refused at once
    consumer = Consumer({**client_config("127.0.0.1:1"), "group.id": "g"})
    try:
        consumer.subscribe(["t"])
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            consumer.consume(10, 0.1)
    finally:
        consumer.close()
    refused = [r for r in caplog.records if "Connection refused" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in caplog.records]
    assert refused[0].name == "parse_sources.stream.librdkafka"
    assert refused[0].levelno == logging.ERROR
