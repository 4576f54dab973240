"""The ACME service: one task on a manager that obtains and renews the platform's certificate and puts it into
service, so renewal needs nobody and spends the CA's limits once, whatever the number of nginx replicas.

It serves its webroot on a small HTTP listener, to which every nginx replica proxies
/.well-known/acme-challenge/ (one webroot for all replicas and nodes). At start, then every
`renew_interval_seconds` (with jitter), or at once when the file `renew-now` appears in its state volume, it
runs `stack.acme.obtain` (pre-flight first; certbot keeps a certificate that is not due). A new certificate
becomes a digest-named Docker config + secret, and nginx's service is updated to them through the manager's
Docker API (the mounted socket): the start-first roll of `up`, so no request is dropped. The old pair is
removed once nginx converged. Each attempt's result is a labelled config that `up` and `status` read.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import http.client
import http.server
import json
import os
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stack import acme, acme_dns, acme_preflight, names, tls_names

STATE = Path("/var/lib/sawmill-acme")
LISTEN_PORT = 8402
SOCKET = "/var/run/docker.sock"
API = "/v1.41"  # Docker Engine 20.10 and later
TLS_CRT_TARGET = "/etc/nginx/tls/tls.crt"
TLS_KEY_TARGET = "tls.key"
DNS_CREDENTIALS = Path("/run/secrets/acme-dns-credentials")  # dns-01 (webserver/stack.yml.j2 mounts it)
CONVERGE_TIMEOUT_S = 300
STARTUP_GRACE_S = 60  # failures this soon after start are retried quietly: nginx and the door start beside us
STARTUP_RETRY_S = 5
JITTER = 0.1  # ± this share of the interval, so many platforms do not ask the CA at the same second


class ApiError(Exception):
    """The Docker API refused a call; the message carries its answer."""


@dataclass(frozen=True)
class Job:
    """What the service is told through its environment (nothing secret: no key, no credential)."""

    prefix: str
    nginx_service: str
    order: acme.Order
    interval_s: int
    retry_s: int

    @classmethod
    def from_env(cls, env: Mapping[str, str], state: Path = STATE, credentials: Path = DNS_CREDENTIALS) -> Job:
        dns = env.get("SAWMILL_ACME_PREFLIGHT_DNS") or None
        resolver = None
        if dns is not None:
            host, _, port = dns.rpartition(":")
            resolver = (socket.gethostbyname(host), int(port))
        bundle = env.get("SAWMILL_ACME_CA_BUNDLE") or None
        dns_provider = env.get("SAWMILL_ACME_DNS_PROVIDER") or None
        propagation = env.get("SAWMILL_ACME_DNS_PROPAGATION") or None
        order = acme.Order(
            names=tuple(env["SAWMILL_ACME_NAMES"].split(",")),
            email=env["SAWMILL_ACME_EMAIL"],
            directory=env["SAWMILL_ACME_DIRECTORY"],
            key_type="rsa" if env.get("SAWMILL_ACME_KEY_TYPE") == "rsa" else "ecdsa",
            ca_bundle=Path(bundle) if bundle else None,
            webroot=state / "webroot",
            resolver=resolver,
            challenge="dns-01" if env.get("SAWMILL_ACME_CHALLENGE") == "dns-01" else "http-01",
            dns_provider=dns_provider,
            dns_credentials=acme_dns.parse_credentials(credentials.read_text()) if dns_provider else {},
            dns_propagation_s=int(propagation) if propagation else None,
        )
        return cls(
            prefix=env["SAWMILL_ACME_PREFIX"],
            nginx_service=env["SAWMILL_ACME_NGINX_SERVICE"],
            order=order,
            interval_s=int(env.get("SAWMILL_ACME_INTERVAL", "43200")),
            retry_s=int(env.get("SAWMILL_ACME_RETRY", "300")),
        )


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class DockerApi:
    """The few Engine API calls the service makes, over the manager's socket (no docker CLI in the image)."""

    def __init__(self, path: str = SOCKET, timeout: float = 30) -> None:
        self.path, self.timeout = path, timeout

    def call(self, method: str, url: str, body: object = None) -> object:
        connection = _UnixConnection(self.path, self.timeout)
        try:
            data = None if body is None else json.dumps(body)
            connection.request(method, API + url, body=data, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        if response.status >= 400:
            message = raw.decode(errors="replace").strip()
            raise ApiError(f"{method} {url}: HTTP {response.status} {message}")
        return json.loads(raw) if raw.strip() else None

    def create(self, kind: str, name: str, data: bytes, labels: dict[str, str]) -> str:
        """Create a config or secret ("configs"/"secrets"); one left by an interrupted run is reused."""
        body = {"Name": name, "Labels": labels, "Data": base64.b64encode(data).decode()}
        try:
            created = self.call("POST", f"/{kind}/create", body)
        except ApiError as exc:
            if "HTTP 409" not in str(exc):
                raise
            found = self.call("GET", f"/{kind}/{urllib.parse.quote(name)}")
            assert isinstance(found, dict)
            return str(found["ID"])
        assert isinstance(created, dict)
        return str(created["ID"])

    def remove(self, kind: str, name: str) -> None:
        with contextlib.suppress(ApiError):  # gone already (an `up` removed it) is fine
            self.call("DELETE", f"/{kind}/{urllib.parse.quote(name)}")

    def listed(self, kind: str, label: str) -> list[dict]:
        filters = urllib.parse.quote(json.dumps({"label": [label]}))
        found = self.call("GET", f"/{kind}?filters={filters}")
        assert isinstance(found, list)
        return found

    def service(self, name: str) -> dict:
        found = self.call("GET", f"/services/{urllib.parse.quote(name)}")
        assert isinstance(found, dict)
        return found


def serving(api: DockerApi, service: str) -> tuple[str, str]:
    """The certificate config and key secret nginx's service mounts now."""
    spec = api.service(service)["Spec"]["TaskTemplate"]["ContainerSpec"]
    crt = next(c["ConfigName"] for c in spec.get("Configs", []) if c.get("File", {}).get("Name") == TLS_CRT_TARGET)
    key = next(s["SecretName"] for s in spec.get("Secrets", []) if s.get("File", {}).get("Name") == TLS_KEY_TARGET)
    return crt, key


def install(api: DockerApi, job: Job, issued: acme.Issued) -> bool:
    """Make nginx serve `issued`, rolling its replicas start-first; False if it serves it already."""
    pair = tls_names.pair_names(job.prefix, issued.names, tls_names.chain_digest(issued.chain))
    old_crt, old_key = serving(api, job.nginx_service)
    if old_crt == pair.crt_config:
        return False
    labels = names.labels(job.prefix) | {tls_names.ACME_LABEL: "certificate"}
    secret_id = api.create("secrets", pair.key_secret, issued.key, labels)
    config_id = api.create("configs", pair.crt_config, issued.chain, labels)
    service = api.service(job.nginx_service)
    spec = service["Spec"]
    container = spec["TaskTemplate"]["ContainerSpec"]
    for mounted in container["Configs"]:
        if mounted.get("File", {}).get("Name") == TLS_CRT_TARGET:
            mounted["ConfigID"], mounted["ConfigName"] = config_id, pair.crt_config
    for mounted in container["Secrets"]:
        if mounted.get("File", {}).get("Name") == TLS_KEY_TARGET:
            mounted["SecretID"], mounted["SecretName"] = secret_id, pair.key_secret
    before = (service.get("UpdateStatus") or {}).get("StartedAt")
    api.call("POST", f"/services/{service['ID']}/update?version={service['Version']['Index']}", spec)
    _wait_converged(api, job.nginx_service, before)
    for kind, name in (("secrets", old_key), ("configs", old_crt)):
        if f"_tls_{'key' if kind == 'secrets' else 'crt'}_" in name:
            api.remove(kind, name)
    return True


def _wait_converged(api: DockerApi, service: str, before: str | None) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while time.monotonic() < deadline:
        status = api.service(service).get("UpdateStatus") or {}
        if status.get("StartedAt") != before:
            state = status.get("State")
            if state == "completed":
                return
            if state in {"rollback_completed", "rollback_paused", "paused"}:
                raise ApiError(f"{service} did not take the new certificate ({state}: {status.get('Message')})")
        time.sleep(1)
    raise ApiError(f"{service} did not converge on the new certificate within {CONVERGE_TIMEOUT_S} s")


def record(api: DockerApi, prefix: str, status: tls_names.AcmeStatus) -> None:
    """Store this attempt's result as the newest status config, and drop the older ones."""
    label = f"{tls_names.ACME_LABEL}=status"
    listed = api.listed("configs", label)
    older = [c["Spec"]["Name"] for c in listed if c["Spec"]["Labels"].get(names.PREFIX_LABEL) == prefix]
    name = f"{prefix}{tls_names.STATUS_FAMILY}{time.time_ns()}"
    api.create("configs", name, status.to_json(), names.labels(prefix) | {tls_names.ACME_LABEL: "status"})
    for stale in older:
        if stale != name:
            api.remove("configs", stale)


def attempt(api: DockerApi, job: Job, state: Path, force: bool) -> tls_names.AcmeStatus:
    """One obtain-or-renew; the result says what serves afterwards and, on failure, why and what to fix."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    order = job.order
    try:
        issued = acme.obtain(order, state / "certbot", force=force)
        installed = install(api, job, issued)
        print(
            f"{now} certificate for {', '.join(issued.names)} valid until {issued.not_after:%Y-%m-%d %H:%M}"
            f" ({'new, nginx rolled over to it' if installed else 'unchanged'})",
            flush=True,
        )
        crt, _ = serving(api, job.nginx_service)
        return tls_names.AcmeStatus(
            at=now,
            ok=True,
            message="",
            names=issued.names,
            issuer=issued.issuer,
            not_after=issued.not_after.isoformat(timespec="seconds"),
            certificate=crt,
        )
    except (acme_preflight.PreflightError, acme.AcmeError, ApiError, OSError) as exc:
        print(f"{now} no certificate: {exc}", flush=True)
        with contextlib.suppress(ApiError, OSError, StopIteration, KeyError):
            crt, _ = serving(api, job.nginx_service)
            return tls_names.AcmeStatus(at=now, ok=False, message=str(exc), names=order.names, certificate=crt)
        return tls_names.AcmeStatus(at=now, ok=False, message=str(exc), names=order.names)


def serve_webroot(webroot: Path, port: int = LISTEN_PORT) -> http.server.ThreadingHTTPServer:
    """The challenge files, over plain HTTP to the nginx replicas (in a thread of this process)."""
    webroot.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_Quiet, directory=str(webroot))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """One line per challenge request is enough (the default also logs to stderr)."""
        print(f"webroot: {self.address_string()} {self.requestline} {args[1] if len(args) > 1 else ''}", flush=True)


def main() -> None:
    """Run until stopped: an attempt at start, then on the schedule or when `renew-now` appears."""
    job = Job.from_env(os.environ)
    serve_webroot(STATE / "webroot")
    api = DockerApi()
    trigger = STATE / "renew-now"
    started = next_at = time.monotonic()
    while True:
        force = trigger.exists()
        if force or time.monotonic() >= next_at:
            trigger.unlink(missing_ok=True)
            result = attempt(api, job, STATE, force)
            if not result.ok and time.monotonic() - started < STARTUP_GRACE_S:
                next_at = time.monotonic() + STARTUP_RETRY_S  # the entrance may still be starting beside us
                continue
            with contextlib.suppress(ApiError, OSError):
                record(api, job.prefix, result)
            wait = job.interval_s * random.uniform(1 - JITTER, 1 + JITTER) if result.ok else job.retry_s
            next_at = time.monotonic() + wait
        time.sleep(1)


if __name__ == "__main__":
    main()
