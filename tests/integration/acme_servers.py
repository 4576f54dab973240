"""Real ACME and DNS servers on 127.0.0.1 for the ACME tests and bench/acme.py, each a host process from Debian:
pebble (the CA, PEBBLE_VA_NOSLEEP=1), pebble-challtestsrv (DNS answering 127.0.0.1 for every name), nginx
(serving the webroot at /.well-known/acme-challenge/ as the platform's port-80 server does) and BIND 9 (an
authoritative zone that takes TSIG-signed dynamic updates, for certbot's rfc2136 plugin).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

START_TIMEOUT_S = 15.0
BINARIES = {"pebble": "pebble", "pebble-challtestsrv": "pebble", "nginx": "nginx", "named": "bind9"}


def missing_binaries() -> list[str]:
    """Debian packages to install (scripts/test.sh does) for the servers these tests start."""
    return sorted({package for binary, package in BINARIES.items() if shutil.which(binary) is None})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{process.args[0]} did not listen on {port} within {START_TIMEOUT_S} s:\n{log.read_text()}")


@contextlib.contextmanager
def running(argv: list[str], log: Path, port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    """A server process, stopped (TERM, then KILL) on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        wait_for_port(port, process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def listener_certificate(directory: Path, host: str = "localhost") -> tuple[Path, Path]:
    """Debian's pebble ships no certificate for its own HTTPS listener: a self-signed one for `host` and 127.0.0.1
    (the key is a throwaway test key, readable by a pebble running in a container)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble listener")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "listener.crt", directory / "listener.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o644)
    return cert_path, key_path


@dataclass(frozen=True)
class Pebble:
    directory: str  # the ACME directory URL
    ca_bundle: Path  # trusts pebble's listener
    management: str
    log: Path

    def root(self) -> x509.Certificate:
        """The root pebble made at start (a new one each run), from its management interface."""
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        with urllib.request.urlopen(f"{self.management}/roots/0", context=context, timeout=5) as response:
            return x509.load_pem_x509_certificate(response.read())

    def orders(self) -> int:
        """Orders pebble has received since it started, counted from its log."""
        return len(re.findall(r"POST /order-plz", self.log.read_text()))


@contextlib.contextmanager
def pebble(workdir: Path, http_port: int, dns: tuple[str, int]) -> Iterator[Pebble]:
    """Pebble validating HTTP-01 on `http_port` and resolving every name through the DNS server `dns`."""
    cert, key = listener_certificate(workdir)
    port, management = free_port(), free_port()
    config = workdir / "pebble.json"
    config.write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"127.0.0.1:{port}",
                    "managementListenAddress": f"127.0.0.1:{management}",
                    "certificate": str(cert),
                    "privateKey": str(key),
                    "httpPort": http_port,
                    "tlsPort": free_port(),
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    log = workdir / "pebble.log"
    env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    argv = ["pebble", "-config", str(config), "-dnsserver", f"{dns[0]}:{dns[1]}"]
    with running(argv, log, port, env):
        yield Pebble(f"https://127.0.0.1:{port}/dir", cert, f"https://127.0.0.1:{management}", log)


@contextlib.contextmanager
def challtestsrv(workdir: Path) -> Iterator[tuple[str, int]]:
    """A DNS server answering A 127.0.0.1 for every name (and nothing else of its own)."""
    dns, management = free_port(), free_port()
    argv = [
        "pebble-challtestsrv",
        *("-dns01", f"127.0.0.1:{dns}", "-management", f"127.0.0.1:{management}"),
        *("-http01", "", "-https01", "", "-tlsalpn01", ""),
        *("-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""),
    ]
    with running(argv, workdir / "challtestsrv.log", dns):  # it serves DNS over TCP on the same port
        yield ("127.0.0.1", dns)


@dataclass(frozen=True)
class Nginx:
    port: int
    webroot: Path
    access_log: Path


@contextlib.contextmanager
def nginx(workdir: Path, names: tuple[str, ...]) -> Iterator[Nginx]:
    """Debian's nginx with the platform's port-80 behaviour: the challenge path from the webroot for the served
    names, a redirect for the rest of their paths, and no answer at all (444) for any other name."""
    root = workdir / "nginx"
    webroot = root / "acme"
    for path in (root / "tmp", webroot):
        path.mkdir(parents=True, exist_ok=True)
    for path in (workdir, root, webroot):
        path.chmod(0o755)  # nginx's workers run as nobody
    port = free_port()
    config = root / "nginx.conf"
    config.write_text(
        f"""daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} default_server;
        return 444;
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name {" ".join(names)};
        location /.well-known/acme-challenge/ {{
            root {webroot};
        }}
        location / {{
            return 301 https://$host$request_uri;
        }}
    }}
}}
"""
    )
    with running(["nginx", "-c", str(config), "-e", str(root / "error.log")], root / "nginx.out", port):
        yield Nginx(port, webroot, root / "access.log")


@dataclass(frozen=True)
class Bind:
    address: tuple[str, int]
    zone: str
    credentials: dict[str, str]  # certbot's rfc2136 credentials for the zone's TSIG key


def bind_config(root: Path, zone: str, listen: str, port: int, seen_at: Path | None = None) -> dict[str, str]:
    """named.conf and a zone file in `root` for BIND 9, authoritative for `zone` (only the zone's own name has an
    address, 127.0.0.1), taking TXT updates signed with a TSIG key; `seen_at` is where named finds `root` (a
    container's mount). Returns certbot's rfc2136 credentials without the server's address and port."""
    root.mkdir(parents=True, exist_ok=True)
    here = seen_at or root
    secret = base64.b64encode(secrets.token_bytes(64)).decode()
    (root / "zone.db").write_text(
        f"""$TTL 60
@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 60
@ IN NS ns.{zone}.
ns IN A 127.0.0.1
@ IN A 127.0.0.1
"""
    )
    (root / "named.conf").write_text(
        f"""options {{
    directory "{here}";
    pid-file "{here}/named.pid";
    session-keyfile "{here}/session.key";
    listen-on port {port} {{ {listen}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
}};
controls {{ }};
key "sawmill-acme." {{ algorithm hmac-sha512; secret "{secret}"; }};
zone "{zone}" {{
    type primary;
    file "{here}/zone.db";
    update-policy {{ grant sawmill-acme. zonesub TXT; }};
}};
"""
    )
    return {
        "dns_rfc2136_name": "sawmill-acme.",
        "dns_rfc2136_secret": secret,
        "dns_rfc2136_algorithm": "HMAC-SHA512",
    }


@contextlib.contextmanager
def bind(workdir: Path, zone: str) -> Iterator[Bind]:
    """BIND 9 on 127.0.0.1 (bind_config): certbot's rfc2136 plugin writes the challenge records into it as into
    any real primary server."""
    root = workdir / "bind"
    port = free_port()
    credentials = bind_config(root, zone, "127.0.0.1", port)
    argv = ["named", "-g", "-c", str(root / "named.conf")]
    with running(argv, root / "named.log", port):
        yield Bind(
            ("127.0.0.1", port),
            zone,
            {"dns_rfc2136_server": "127.0.0.1", "dns_rfc2136_port": str(port), **credentials},
        )
