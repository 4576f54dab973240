"""Failed requests under a poller: the measure of "nothing planned drops a request" in the tests on a swarm."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Poller:
    """Call `status` (an HTTP status, or raise OSError) every `every_s` in a thread while the block runs, at most
    `bound` times, counting 200s, failures (with what each was) and the slowest call."""

    def __init__(self, status: Callable[[], int], every_s: float = 0.1, bound: int = 5000) -> None:
        self.status, self.every_s, self.bound = status, every_s, bound
        self.ok, self.failed, self.slowest = 0, 0, 0.0
        self.errors: list[object] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(self.bound):
            if self._stop.is_set():
                return
            started = time.monotonic()
            try:
                status: object = self.status()
            except OSError as exc:
                status = repr(exc)
            self.slowest = max(self.slowest, time.monotonic() - started)
            if status == 200:
                self.ok += 1
            else:
                self.failed += 1
                self.errors.append(status)
            time.sleep(self.every_s)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
