"""The browser's network namespace: it sees none of the host's interfaces come and go, and its relays carry a
connection both ways (the browser reaching the platform, the test reaching the browser's driver)."""

from __future__ import annotations

import socket
import subprocess
import threading
import uuid

from tests.integration.browser_namespace import NAMESPACES, browser_namespace, socket_in
from tests.integration.conftest import free_port


def echo_server(listener: socket.socket) -> None:
    """Answers one connection with what it sent, upper-cased."""
    connection, _ = listener.accept()
    with connection:
        connection.sendall(connection.recv(1024).upper())


def listening(sock: socket.socket, port: int) -> socket.socket:
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    threading.Thread(target=echo_server, args=(sock,), daemon=True).start()
    return sock


def ask(sock: socket.socket, port: int) -> bytes:
    with sock:
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"hello")
        return sock.recv(1024)


def test_the_namespace_sees_no_interface_the_host_adds() -> None:
    with browser_namespace(inward=(), outward=()) as name:
        veth = f"sw{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p"], check=True)
        try:
            links = subprocess.run(["ip", "-n", name, "-br", "link"], capture_output=True, text=True, check=True)
        finally:
            subprocess.run(["ip", "link", "del", veth], check=True)
    assert [line.split()[0] for line in links.stdout.splitlines()] == ["lo"]


def test_a_connection_crosses_both_ways_and_the_namespace_goes_with_the_context() -> None:
    out_port, in_port = free_port(), free_port()
    with browser_namespace(inward=(in_port,), outward=(out_port,)) as name:
        path = NAMESPACES / name
        with listening(socket.socket(), out_port):
            assert ask(socket_in(path), out_port) == b"HELLO"  # the browser reaching the host
        with listening(socket_in(path), in_port):
            assert ask(socket.socket(), in_port) == b"HELLO"  # the host reaching the browser's driver
    assert not path.exists()
