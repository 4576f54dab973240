"""The check before any ACME order (CapRover's): every name must reach the nginx that serves our webroot, so a
wrong DNS record or a closed port 80 is reported here, for free, instead of spending the CA's rate limits.

A random token is placed in the webroot and fetched back over plain HTTP from the address the name resolves to,
as the CA's validator will. Names are resolved by the system, or by a given DNS server (the one the CA uses).
"""

from __future__ import annotations

import contextlib
import http.client
import secrets
import socket
from collections.abc import Sequence
from pathlib import Path

# The ACME directories `[acme] server` names by a word; any other CA is given by its directory URL.
ACME_DIRECTORIES = {
    "production": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
CHALLENGE_PATH = "/.well-known/acme-challenge/"
TIMEOUT_S = 5.0

FAILED_VALIDATIONS = (
    "Let's Encrypt allows 5 failed validations per account, per hostname, per hour: fix this before trying again"
)
LIMITS = (
    "Let's Encrypt's limits: 5 failed validations per account, per hostname, per hour; 50 certificates per"
    " registered domain per week; 5 certificates for the same set of names per week; 300 new orders per"
    " account per 3 hours"
)


class PreflightError(Exception):
    """A name the CA could not validate; the message lists each one with what to fix. No order was sent."""


def check_http(names: Sequence[str], webroot: Path, port: int = 80, resolver: tuple[str, int] | None = None) -> None:
    """Fetch a probe token through every name; raise PreflightError naming each failing one."""
    token = "sawmill-preflight-" + secrets.token_urlsafe(24)
    content = secrets.token_urlsafe(32)
    directory = webroot / CHALLENGE_PATH.strip("/")
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / token
    probe.write_text(content)
    probe.chmod(0o644)
    try:
        problems = [p for name in names if (p := _problem(name, token, content, port, resolver))]
    finally:
        probe.unlink(missing_ok=True)
    if problems:
        raise PreflightError(
            "these names do not reach this nginx over HTTP, so the CA could not validate them:\n"
            + "\n".join(f"  {p}" for p in problems)
            + f"\nno order was sent to the CA. {FAILED_VALIDATIONS}."
        )


def _problem(name: str, token: str, content: str, port: int, resolver: tuple[str, int] | None) -> str | None:
    url = f"http://{name}{'' if port == 80 else f':{port}'}{CHALLENGE_PATH}{token}"
    try:
        addresses = _resolve(name, resolver)
    except LookupError as exc:
        return f"{name}: does not resolve ({exc}); add an A (or AAAA) record for {name} pointing at this nginx"
    for address in addresses:
        try:
            status, body = _get(address, port, name, CHALLENGE_PATH + token)
        except OSError as exc:
            return (
                f"{name}: resolves to {address}, but port {port} there does not answer ({exc.strerror or exc});"
                f" open port {port} to the nginx nodes, or point the record at them"
            )
        if status != 200 or body.strip() != content:
            answer = f"answered HTTP {status}" if status else "closed the connection"
            return (
                f"{name}: {url} {answer} from {address}, not with the probe token; the record points at"
                f" another server, or this nginx does not serve {name}"
            )
    return None


def _resolve(name: str, resolver: tuple[str, int] | None) -> list[str]:
    if resolver is None:
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise LookupError(exc.strerror) from None
        return sorted({str(info[4][0]) for info in infos})
    import dns.exception
    import dns.resolver

    ask = dns.resolver.Resolver(configure=False)
    ask.nameservers, ask.port, ask.lifetime = [resolver[0]], resolver[1], TIMEOUT_S
    try:
        return sorted(str(r) for r in ask.resolve(name, "A"))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers) as exc:
        raise LookupError(type(exc).__name__) from None
    except dns.exception.Timeout:
        raise LookupError(f"no answer from {resolver[0]}:{resolver[1]}") from None


def _get(address: str, port: int, host: str, path: str) -> tuple[int, str]:
    """One GET with the name as Host, no redirects: what reaches the webroot is what counts."""
    connection = http.client.HTTPConnection(address, port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read(4096).decode(errors="replace")
    except http.client.RemoteDisconnected:
        return 0, ""  # nginx's `return 444`: it serves no such name
    finally:
        with contextlib.suppress(OSError):
            connection.close()
