"""A network namespace of the browser's own, reached through loopback relays.

Chromium aborts every request in flight when an address on the host changes (ERR_NETWORK_CHANGED, or a bare
ERR_FAILED on a page's scripts), and on a Docker host one changes whenever a container starts: its veth gets an
IPv6 link-local address. In CI that left Superset's login page blank, with every script failed, twice in a row.
A namespace holding nothing but its own loopback sees none of those changes. The browser's loopback ports are
relayed to the host's (the platform's entrance, a test's container); the driver's port the other way.

`setns` moves only the calling thread, so each socket of the namespace is made by a short-lived thread that
enters it: the socket keeps its namespace for life, whatever thread uses it afterwards."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000
NAMESPACES = Path("/var/run/netns")


def _libc_setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


def socket_in(namespace: Path | None) -> socket.socket:
    """A TCP socket of `namespace` (None: this process's own)."""
    if namespace is None:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    made: list[socket.socket | BaseException] = []

    def enter_and_make() -> None:
        try:
            fd = os.open(namespace, os.O_RDONLY)
            try:
                _libc_setns(fd)
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as error:  # handed to the caller's thread
            made.append(error)

    thread = threading.Thread(target=enter_and_make, name="enter-namespace")
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


class Relay:
    """Accepts on 127.0.0.1:`port` of one namespace and pipes each connection to 127.0.0.1:`port` of the other.
    A target not listening yet (the driver starting) is tried again for up to 15 s before the client is dropped."""

    def __init__(self, port: int, listen_in: Path | None, connect_in: Path | None) -> None:
        self.port, self.connect_in = port, connect_in
        self.listener = socket_in(listen_in)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.closed = False
        threading.Thread(target=self._accept, name=f"relay-{port}", daemon=True).start()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = self._connect()
        if upstream is None:
            client.close()
            return
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def _connect(self) -> socket.socket | None:
        deadline = time.monotonic() + 15
        while not self.closed and time.monotonic() < deadline:
            try:
                upstream = socket_in(self.connect_in)
            except OSError:  # the namespace is gone: the browser was closed
                return None
            try:
                upstream.connect(("127.0.0.1", self.port))
                return upstream
            except OSError:
                upstream.close()
                time.sleep(0.1)
        return None


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copies until `source` ends, then ends `sink`'s writing half, as the other side ended its own."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        source.shutdown(socket.SHUT_RD)


@contextlib.contextmanager
def browser_namespace(inward: tuple[int, ...], outward: tuple[int, ...]) -> Iterator[str]:
    """A fresh network namespace (its name is yielded, for `ip netns exec`): its loopback's `outward` ports lead to
    the host's, the host's `inward` ports to its own. Deleted, relays and all, on leaving."""
    name = f"sawmill-browser-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
    relays: list[Relay] = []
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, timeout=30)
        path = NAMESPACES / name
        relays += [Relay(port, listen_in=path, connect_in=None) for port in outward]
        relays += [Relay(port, listen_in=None, connect_in=path) for port in inward]
        yield name
    finally:
        for relay in relays:
            relay.close()
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
