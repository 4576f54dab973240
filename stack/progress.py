"""Progress output: one line when a step starts, one when it ends with its duration (on stderr).

Results (tables, URLs, JSON) go to stdout, so they stay clean for pipes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def step(message: str, estimate: str | None = None) -> Iterator[None]:
    """`estimate` (e.g. "~30 s") is shown when the step starts, not again beside the time it took."""
    say(f"→ {message}" + (f" ({estimate})" if estimate else ""))
    started = time.monotonic()
    try:
        yield
    except BaseException:
        say(f"✗ {message} (failed after {time.monotonic() - started:.1f} s)")
        raise
    say(f"✓ {message} ({time.monotonic() - started:.1f} s)")
