"""A tiny HTTPS client that reaches a named host at 127.0.0.1: nginx picks the site by SNI and Host.

Tests and `verify` use it so no /etc/hosts entry or DNS record is needed for *.localhost.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, **kwargs: object) -> None:
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def get(
    host: str,
    port: int,
    path: str = "/",
    *,
    cafile: str | None = None,
    timeout: float = 5,
    headers: dict[str, str] | None = None,
    address: str = "127.0.0.1",
    method: str = "GET",
    body: bytes | None = None,
) -> Response:
    """One request to https://host:port/path, connecting to `address`; certificate checked against `cafile`."""
    context = ssl.create_default_context(cafile=cafile)
    if cafile is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    conn = _PinnedHTTPSConnection(host, port, address, timeout=timeout, context=context)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()
