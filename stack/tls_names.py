"""What a TLS pair and the ACME service's result are called in the swarm: shared by the engine (stack/certs.py) and
the ACME service (stack/acme_service.py), which runs without the engine's settings and component folders."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

ACME_LABEL = "sawmill.acme"  # "certificate": a pair the ACME service stored; "status": its last result
STATUS_FAMILY = "_acme_status_"
DNS_CREDENTIALS_FAMILY = "_acme_dns_"


@dataclass(frozen=True)
class TlsNames:
    hosts: tuple[str, ...]
    crt_config: str
    key_secret: str
    ca_config: str
    ca_key_secret: str


def chain_digest(chain: bytes) -> str:
    return hashlib.sha256(chain).hexdigest()[:10]


def pair_names(prefix: str, hosts: tuple[str, ...], digest: str) -> TlsNames:
    return TlsNames(
        hosts=hosts,
        crt_config=f"{prefix}_tls_crt_{digest}",
        key_secret=f"{prefix}_tls_key_{digest}",
        ca_config=f"{prefix}_ca_crt",
        ca_key_secret=f"{prefix}_ca_key",
    )


def dns_credentials_secret(prefix: str, data: bytes) -> str:
    """The Docker secret holding dns-01's provider credentials, named by their digest so new ones roll the ACME
    service; "" without credentials."""
    return f"{prefix}{DNS_CREDENTIALS_FAMILY}{chain_digest(data)}" if data else ""


@dataclass(frozen=True)
class AcmeStatus:
    """The ACME service's last result, kept as a labelled Docker config so any manager can read it. No key."""

    at: str  # ISO time of the attempt
    ok: bool
    message: str  # on failure: certbot's or the pre-flight's reason, with what to fix
    names: tuple[str, ...] = ()
    issuer: str = ""
    not_after: str = ""  # ISO
    certificate: str = ""  # the config nginx serves after this attempt

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> AcmeStatus:
        raw = json.loads(data)
        return cls(**{**raw, "names": tuple(raw.get("names", ()))})
