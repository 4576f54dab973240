"""Secret values reach Docker through a named pipe: readable once, and never written to a file."""

from __future__ import annotations

import stat
import threading

from stack import secrets
from stack.fifo import fifo


def test_generated_values_are_32_random_alphanumerics() -> None:
    values = {secrets.generate() for _ in range(50)}
    assert len(values) == 50
    assert all(len(v) == 32 and v.isalnum() for v in values)


def test_the_fifo_hands_over_the_value_without_a_regular_file() -> None:
    with fifo(b"s3cret") as path:
        assert stat.S_ISFIFO(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes() == b"s3cret"
    assert not path.exists()


def test_an_unread_fifo_does_not_hang_the_caller() -> None:
    def unread() -> None:
        with fifo(b"never read") as path:
            assert path.exists()

    caller = threading.Thread(target=unread, daemon=True)
    caller.start()
    caller.join(timeout=5)
    assert not caller.is_alive(), "leaving the context hung with nobody reading the pipe"
