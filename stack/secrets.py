"""Generated secrets, kept only as Docker secrets: made once, never rotated silently, read back on request.

Values reach Docker through a FIFO (stack/fifo.py), so they never touch a disk or a process's arguments.
"""

from __future__ import annotations

import secrets as random
import subprocess

from stack.swarm import Swarm


def generate() -> bytes:
    """A 32-character alphanumeric value: strong, and safe in URLs, DSNs and shell variables."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(random.choice(alphabet) for _ in range(32)).encode()


def ensure_generated(swarm: Swarm, full_names: list[str], labels: dict[str, str]) -> dict[str, bytes]:
    """Create each missing secret with a fresh random value; return the values created, for secrets derived
    from them in the same run."""
    created = {}
    present = set(swarm.secrets({}))  # every secret, ours or made by hand: one listing, not a call per name
    for name in full_names:
        if name not in present:
            created[name] = generate()
            swarm.create_secret(name, created[name], labels)
    return created


def htpasswd(password: bytes) -> bytes:
    """An nginx basic-auth file for user "admin" (SHA-512 crypt)."""
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password.strip(), capture_output=True, check=True
    ).stdout.strip()
    return b"admin:" + hashed + b"\n"
