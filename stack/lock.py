"""The deploy lock (as Kamal's): one `up` or `down` at a time per platform, taken atomically in the swarm.

The lock is a Docker config that can be created only once: whoever creates it holds it, and it says who and
since when. A holder that died leaves it behind; `deploy.py lock release` frees it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stack import names
from stack.progress import say
from stack.swarm import AlreadyExists, Swarm

LOCK_LABEL = "sawmill.lock"


class LockHeld(Exception):
    """Another deploy holds the lock; str() says who, since when, and what to do."""


@dataclass(frozen=True)
class Holder:
    who: str
    command: str
    since: dt.datetime

    def describe(self) -> str:
        age = int((dt.datetime.now(dt.UTC) - self.since).total_seconds())
        return f"{self.who} ({self.command}) since {self.since:%Y-%m-%d %H:%M:%S} UTC, {age} s ago"


def lock_name(prefix: str) -> str:
    return f"{prefix}_deploy_lock"


def holder(swarm: Swarm, prefix: str) -> Holder | None:
    found = swarm.config(lock_name(prefix))
    if found is None:
        return None
    data = json.loads(found.data)
    return Holder(data["who"], data["command"], dt.datetime.fromisoformat(data["since"]))


@contextmanager
def held(swarm: Swarm, prefix: str, command: str, wait_s: float, poll_s: float = 1.0) -> Iterator[None]:
    """Hold the lock for the block; wait up to `wait_s` for another holder, then raise LockHeld."""
    me = {
        "who": f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}",
        "command": command,
        "since": dt.datetime.now(dt.UTC).isoformat(),
    }
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            swarm.create_config(lock_name(prefix), json.dumps(me).encode(), names.labels(prefix) | {LOCK_LABEL: "1"})
            break
        except AlreadyExists:
            other = holder(swarm, prefix)
            if other is None:  # released between the two calls
                continue
            if time.monotonic() >= deadline:
                raise LockHeld(
                    f"another deploy holds the lock of platform {prefix}: {other.describe()}.\n"
                    "Wait for it to finish, or, if it died, free the lock with `deploy.py lock release`."
                ) from None
            if not told:
                say(f"… waiting up to {wait_s:.0f} s for the deploy lock, held by {other.describe()}")
                told = True
            time.sleep(poll_s)
    try:
        yield
    finally:
        release(swarm, prefix)


def release(swarm: Swarm, prefix: str) -> bool:
    """Free the lock (whoever holds it); False if nobody did."""
    if swarm.config(lock_name(prefix)) is None:
        return False
    swarm.remove_configs([lock_name(prefix)])
    return True
