"""Values handed to Docker through a named pipe: a file path with nothing on disk and nothing in argv."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def fifo(value: bytes) -> Iterator[Path]:
    """A named pipe that yields `value` once to whoever opens it."""
    with tempfile.TemporaryDirectory(prefix="sawmill-") as tmp:
        path = Path(tmp) / "value"
        os.mkfifo(path, 0o600)

        def feed() -> None:
            with open(path, "wb") as pipe:
                pipe.write(value)

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        try:
            yield path
        finally:
            if writer.is_alive():  # maybe nobody opened the pipe: open its read end so the writer can finish
                # O_NONBLOCK: never waits, even if the writer finished meanwhile (a blocking open would hang)
                read_end = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                writer.join()
                os.close(read_end)
            writer.join()
