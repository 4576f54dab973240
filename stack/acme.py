"""One certificate from an ACME CA through certbot, for `deploy.py up` now and a renewal service later.

certbot runs as a subprocess of this Python (pinned in requirements.txt) with all its state (account key,
archive, renewal config, logs) in a directory the caller owns; the chain and key come back as bytes for the
caller to store (as Docker config + secret, like the other certificate modes). Nothing here talks to the swarm,
and nothing secret is printed: certbot's output is kept and shown only when it fails, and it holds no keys.
Every order is preceded by a pre-flight (stack/acme_preflight.py, stack/acme_dns.py), so a name that cannot be
validated costs nothing at the CA.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509

from stack import acme_dns, acme_preflight
from stack.acme_preflight import ACME_DIRECTORIES

CERTBOT_TIMEOUT_S = 300
CERTBOT_MAIN = "import sys; from certbot.main import main; sys.exit(main())"  # certbot has no __main__
LINEAGE = "sawmill"  # certbot's name for the one certificate, so a new set of names replaces it


@dataclass(frozen=True)
class Order:
    """What to ask which CA for, and how to prove the names are ours."""

    names: tuple[str, ...]
    email: str
    directory: str
    challenge: Literal["http-01", "dns-01"] = "http-01"
    key_type: Literal["ecdsa", "rsa"] = "ecdsa"
    ca_bundle: Path | None = None
    webroot: Path | None = None  # http-01: what nginx serves at /.well-known/acme-challenge/
    dns_provider: str | None = None
    dns_credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    dns_propagation_s: int | None = None
    http_port: int = 80  # where the pre-flight fetches the probe (the CA's validator uses 80)
    resolver: tuple[str, int] | None = None  # DNS server the pre-flight resolves names with (None: the system's)


@dataclass(frozen=True)
class Issued:
    chain: bytes = field(repr=False)  # PEM, leaf first
    key: bytes = field(repr=False)  # PEM
    names: tuple[str, ...]
    issuer: str
    not_after: dt.datetime
    new: bool  # False when certbot kept a certificate that was not yet due


class AcmeError(Exception):
    """certbot could not obtain the certificate; the message says why and, for Let's Encrypt, which limit applies."""


def names_for(domain: str, hosts: tuple[str, ...], challenge: str) -> tuple[str, ...]:
    """HTTP-01 names every host; DNS-01 names the domain and one wildcard, so a new subdomain needs no order."""
    return (domain, f"*.{domain}") if challenge == "dns-01" else tuple(sorted(set(hosts) | {domain}))


def obtain(order: Order, state_dir: Path, force: bool = False) -> Issued:
    """Pre-flight, then certbot certonly; the certificate certbot holds for `order.names` afterwards. `force`
    renews even a certificate that is not due (an operator's or a test's request)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    before = _current(state_dir)
    if order.challenge == "http-01":
        if order.webroot is None:
            raise ValueError("http-01 needs the webroot nginx serves at /.well-known/acme-challenge/")
        acme_preflight.check_http(order.names, order.webroot, order.http_port, order.resolver)
        _certbot(order, state_dir, ["--authenticator=webroot", f"--webroot-path={order.webroot}"], {}, force)
    else:
        if order.dns_provider is None:
            raise ValueError("dns-01 needs a dns_provider")
        with acme_dns.plugin_run(order.dns_provider, order.dns_credentials, order.dns_propagation_s) as run:
            try:
                acme_dns.probe_zone(order.dns_provider, run, order.names[0].removeprefix("*."), order.dns_credentials)
            except acme_dns.DnsProbeError as exc:
                raise acme_preflight.PreflightError(
                    f"{exc}\nno order was sent to the CA. {acme_preflight.FAILED_VALIDATIONS}."
                ) from None
            _certbot(order, state_dir, run.args, run.env, force)
    issued = _current(state_dir)
    assert issued is not None, "certbot succeeded but left no certificate"
    chain, key = issued
    return _describe(chain, key, new=before is None or before[0] != chain)


def certbot_args(order: Order, state_dir: Path, force: bool = False) -> list[str]:
    """certbot certonly's arguments for this order (the authenticator's are added by the caller)."""
    key = ["--key-type=ecdsa", "--elliptic-curve=secp256r1"] if order.key_type == "ecdsa" else ["--key-type=rsa"]
    return [
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--no-eff-email",
        f"--email={order.email}",
        f"--server={order.directory}",
        f"--config-dir={state_dir / 'config'}",
        f"--work-dir={state_dir / 'work'}",
        f"--logs-dir={state_dir / 'logs'}",
        f"--cert-name={LINEAGE}",
        "--force-renewal" if force else "--keep-until-expiring",
        "--max-log-backups=20",
        *key,
        *(f"--domain={name}" for name in order.names),
    ]


def _certbot(
    order: Order, state_dir: Path, authenticator: list[str], env: Mapping[str, str], force: bool = False
) -> None:
    environment = {**os.environ, **env}
    if order.ca_bundle is not None:
        environment["REQUESTS_CA_BUNDLE"] = str(order.ca_bundle)
    argv = [sys.executable, "-c", CERTBOT_MAIN, *certbot_args(order, state_dir, force), *authenticator]
    try:
        result = subprocess.run(
            argv, env=environment, capture_output=True, text=True, timeout=CERTBOT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise AcmeError(
            f"certbot did not finish within {CERTBOT_TIMEOUT_S} s; is {order.directory} reachable?"
        ) from None
    if result.returncode != 0:
        said = "\n".join(f"  {line}" for line in result.stderr.strip().splitlines()[-15:])
        hint = ""
        if order.directory in ACME_DIRECTORIES.values():
            hint = f"\n{acme_preflight.LIMITS}"
            if "rateLimited" in result.stderr:
                hint = f"\nLet's Encrypt refused: a rate limit is reached. {acme_preflight.LIMITS}"
        raise AcmeError(f"certbot could not obtain a certificate for {', '.join(order.names)}:\n{said}{hint}")


def _current(state_dir: Path) -> tuple[bytes, bytes] | None:
    live = state_dir / "config" / "live" / LINEAGE
    try:
        return (live / "fullchain.pem").read_bytes(), (live / "privkey.pem").read_bytes()
    except FileNotFoundError:
        return None


def _describe(chain: bytes, key: bytes, new: bool) -> Issued:
    leaf = x509.load_pem_x509_certificates(chain)[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    return Issued(
        chain=chain,
        key=key,
        names=tuple(names),
        issuer=leaf.issuer.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
        new=new,
    )
