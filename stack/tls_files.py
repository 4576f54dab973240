"""TLS certificates in `files` mode: a certificate chain and key the user brings, checked before anything deploys.

Checked up front, so a wrong file is a configuration error naming its key rather than an nginx that will not
start: both files parse, the key belongs to the certificate, the certificate has not expired and names every
host the platform serves (exactly, or by a wildcard for one label). `up` then keeps the chain as a Docker
config and the key as a Docker secret, named after the chain's digest, so a new file rolls nginx over to it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization


@dataclass(frozen=True)
class CertificateFiles:
    chain: bytes  # PEM, leaf first
    key: bytes  # PEM


def load(cert_file: Path | None, key_file: Path | None, hosts: tuple[str, ...]) -> CertificateFiles:
    """The two files, checked; ValueError naming the key at fault otherwise."""
    if cert_file is None or key_file is None:
        missing = "certificate_file" if cert_file is None else "certificate_key_file"
        raise ValueError(f"{missing}: certificates = 'files' needs certificate_file and certificate_key_file (PEM)")
    chain, key_pem = _read("certificate_file", cert_file), _read("certificate_key_file", key_file)
    try:
        leaf = x509.load_pem_x509_certificates(chain)[0]
    except ValueError:
        raise ValueError(f"certificate_file: {cert_file} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"certificate_key_file: {key_file} is not an unencrypted PEM private key") from None
    if _public(key.public_key()) != _public(leaf.public_key()):
        raise ValueError(f"certificate_key_file: {key_file} is not the key of the certificate in {cert_file}")
    if leaf.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        raise ValueError(
            f"certificate_file: the certificate in {cert_file} expired on {leaf.not_valid_after_utc:%Y-%m-%d}"
        )
    names = _dns_names(leaf)
    uncovered = [host for host in hosts if not any(covers(name, host) for name in names)]
    if uncovered:
        raise ValueError(
            f"certificate_file: the certificate does not cover {', '.join(uncovered)}"
            f" (it names {', '.join(names) or 'no DNS name'}); issue one for every host, or a wildcard"
        )
    return CertificateFiles(chain, key_pem)


def covers(name: str, host: str) -> bool:
    """RFC 6125: an exact name, or `*.example.com` for exactly one more label."""
    name, host = name.lower().rstrip("."), host.lower().rstrip(".")
    if name.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == name[2:]
    return name == host


def _read(key: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None


def _public(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    except x509.ExtensionNotFound:
        return []
