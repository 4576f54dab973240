"""What every Kafka client of parse_sources (producer, sink consumer, topics admin) is configured with.

While the broker starts, its DNS name may not exist yet: librdkafka then logs "Failed to resolve ..." on every
reconnect attempt, which for a consumer group member is every reconnect.backoff.ms / 2 (every 50 ms by default).
Two things keep that quiet without hiding it:

- reconnect.backoff.ms / reconnect.backoff.max.ms (librdkafka CONFIGURATION.md): a slower first retry, and an
  exponential backoff up to a few seconds once an established connection is lost;
- librdkafka's log lines go through a `logger` (confluent-kafka's config key for a log callback) that passes each
  distinct line at most once per LOG_INTERVAL_S and says how often it was repeated in between.

With a `logger`, confluent-kafka serves log lines from the client's poll()/consume()/flush(): an AdminClient has to
be polled for them to appear.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOG_INTERVAL_S = 10.0
RECONNECT_BACKOFF_MS = 500  # the first retry; a consumer retries an unreachable bootstrap broker every ~250 ms
RECONNECT_BACKOFF_MAX_MS = 5_000  # default 10 s: a broker back from a restart is found again sooner

librdkafka_log = logging.getLogger("parse_sources.stream.librdkafka")

# parts of a line that differ between repeats of the same event, e.g. "(after 3ms in state CONNECT)"
_VARYING = re.compile(r"\d+ms\b")


@dataclass
class _Seen:
    logged_at: float
    suppressed: int = 0


class RateLimitedLog:
    """A `logger` for confluent-kafka: each distinct line at most once per `interval` seconds.

    The first occurrence is logged at once; repeats within `interval` of the last logged one are counted, and the
    next line logged after the interval carries the count ("... [repeated 41 times in 10 s]"). Lines differing only
    in durations such as "after 3ms" count as the same. At most `max_lines` distinct lines are remembered.
    """

    def __init__(
        self,
        logger: logging.Logger = librdkafka_log,
        interval: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        max_lines: int = 1_000,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.max_lines = max_lines
        self._seen: OrderedDict[tuple[int, str], _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def log(self, level: int, msg: str, *args: Any) -> None:
        """What confluent-kafka calls: log(level, "%s [%s] %s", facility, client name, text)."""
        text = msg % args if args else msg
        key = (level, _VARYING.sub("Nms", text))
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.logged_at < self.interval:
                seen.suppressed += 1
                return
            self._seen[key] = _Seen(now)
            self._seen.move_to_end(key)
            while len(self._seen) > self.max_lines:
                self._seen.popitem(last=False)
        if seen is not None and seen.suppressed:
            self.logger.log(level, "%s [repeated %d times in %.0f s]", text, seen.suppressed, now - seen.logged_at)
        else:
            self.logger.log(level, "%s", text)


def client_config(bootstrap_servers: str) -> dict[str, Any]:
    """The settings every client starts from; callers add their own (and may override these)."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "reconnect.backoff.ms": RECONNECT_BACKOFF_MS,
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        "logger": RateLimitedLog(),
    }
