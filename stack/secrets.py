"""Generated secrets, kept only as Docker secrets.

Values reach Docker through a FIFO, so they never touch a disk or a process's arguments; reading one back
(`deploy.py secrets show`, re-signing with the local CA) runs a one-shot service that mounts it, and reads
the value with `docker exec`, so it passes through no log.
"""

from __future__ import annotations

import io
import os
import secrets as random
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

from python_on_whales import DockerException, docker
from python_on_whales.components.secret.cli_wrapper import Secret

from stack import names

READ_TIMEOUT_S = 60


def generate() -> bytes:
    """A 32-character alphanumeric value: strong, and safe in URLs, DSNs and shell variables."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(random.choice(alphabet) for _ in range(32)).encode()


@contextmanager
def _quiet() -> Iterator[None]:
    """python-on-whales 0.81 prints "reference: <id>" for every Secret object it makes; keep stdout clean."""
    with redirect_stdout(io.StringIO()):
        yield


def listed(filters: dict[str, str]) -> list[Secret]:
    """Secrets matching filters given as for configs (a dict); secret listing takes them as pairs."""
    with _quiet():
        found = docker.secret.list(filters=list(filters.items()))
        for secret in found:
            secret.spec  # noqa: B018 -- inspect now, while stdout is redirected
        return found


def exists(name: str) -> bool:
    return any(s.spec.name == name for s in listed({"name": name}))


def remove(found: list[Secret]) -> None:
    if not found:
        return
    with _quiet():
        docker.secret.remove(found)


def create(name: str, value: bytes, prefix: str) -> None:
    with fifo(value) as path, _quiet():
        docker.secret.create(name, path, labels={names.PREFIX_LABEL: prefix})


def ensure_generated(full_names: list[str], prefix: str) -> dict[str, bytes]:
    """Create each missing secret with a fresh random value; existing ones are never rotated silently.

    Returns the values created, for secrets derived from them in the same run.
    """
    created = {}
    for name in full_names:
        if not exists(name):
            created[name] = generate()
            create(name, created[name], prefix)
    return created


def ensure_htpasswd(name: str, source: str, prefix: str, known: dict[str, bytes], reader_image: str) -> bool:
    """Derive an nginx basic-auth file (user "admin") from a generated password; True if it was created."""
    if exists(name):
        return False
    password = known.get(source) or read(source, reader_image, prefix)
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password.strip(), capture_output=True, check=True
    ).stdout.strip()
    create(name, b"admin:" + hashed + b"\n", prefix)
    return True


def read(name: str, image: str, prefix: str) -> bytes:
    """Read a secret's value through a one-shot service that mounts it (the only way Swarm gives one back).

    The service only sleeps, without a log driver, and the value comes back through `docker exec`: it is in
    no container log, whatever logging driver the engine ships logs with. The task is held to this node,
    where `docker exec` reaches it.
    """
    if not exists(name):
        raise KeyError(name)
    service = docker.service.create(
        image,
        ["sleep", str(READ_TIMEOUT_S)],
        secrets=[{"source": name, "target": "value"}],
        constraints=[f"node.id=={docker.info().swarm.node_id}"],
        log_driver="none",
        restart_condition="none",
        labels={names.PREFIX_LABEL: prefix},
        detach=True,
    )
    try:
        deadline = time.monotonic() + READ_TIMEOUT_S
        while time.monotonic() < deadline:
            tasks = docker.service.ps(service)
            for task in tasks:
                container = task.status.container_status and task.status.container_status.container_id
                if task.status.state == "running" and container:
                    command = ["docker", "exec", container, "cat", "/run/secrets/value"]
                    return subprocess.run(command, capture_output=True, check=True).stdout
            if {t.status.state for t in tasks} & {"failed", "rejected", "complete"}:
                raise DockerException(["secret reader"], 1, stderr=f"could not read secret {name}".encode())
            time.sleep(0.3)
        raise TimeoutError(f"reading secret {name} took longer than {READ_TIMEOUT_S} s")
    finally:
        docker.service.remove(service)


@contextmanager
def fifo(value: bytes) -> Iterator[Path]:
    """A named pipe that yields `value` once to whoever opens it: a file path with nothing on disk."""
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
