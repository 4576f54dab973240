"""TLS certificates in `files` mode: a certificate chain and key the user brings, checked before anything deploys.

Checked when a plan is made (`up`, `plan`), so a wrong file is a configuration error naming its key rather
than an nginx that will not start or a browser that refuses it: both files parse, the key (RSA or ECDSA)
belongs to the first certificate, each certificate is issued by the next, all are valid now, and the first
names every host the platform serves (exactly, or by a wildcard for one label). Only the certificates are
kept from the chain file, so a key pasted into it can never become a (readable) Docker config.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes


@dataclass(frozen=True)
class CertificateFiles:
    chain: bytes  # PEM certificates only, leaf first
    key: bytes  # PEM
    not_after: dt.datetime  # when the first certificate of the chain to expire does


def load(cert_file: Path, key_file: Path, hosts: tuple[str, ...]) -> CertificateFiles:
    """The two files, checked; ValueError starting with the key at fault otherwise."""
    chain_pem, key_pem = _read("certificate_file", cert_file), _read("certificate_key_file", key_file)
    if b"PRIVATE KEY" in chain_pem:
        raise ValueError(
            f"certificate_file: {cert_file} holds a private key; keep only certificates there (e.g. certbot's"
            " fullchain.pem) and give the key in certificate_key_file"
        )
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise ValueError(f"certificate_file: {cert_file} holds no PEM certificate") from None
    key = _private_key(key_file, key_pem)
    _check_key_is_the_leafs(key, chain, cert_file, key_file)
    _check_order(chain, cert_file)
    _check_dates(chain, cert_file)
    names = _dns_names(chain[0])
    uncovered = [host for host in hosts if not any(covers(name, host) for name in names)]
    if uncovered:
        raise ValueError(
            f"certificate_file: the certificate does not cover {', '.join(uncovered)}"
            f" (it names {', '.join(names) or 'no DNS name'}); issue one for every host, or a wildcard"
        )
    return CertificateFiles(
        chain=b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain),
        key=key_pem,
        not_after=min(cert.not_valid_after_utc for cert in chain),
    )


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


def _private_key(key_file: Path, key_pem: bytes) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"certificate_key_file: {key_file} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(
            f"certificate_key_file: {key_file} is a {type(key).__name__.removeprefix('_')} key;"
            " browsers accept RSA or ECDSA server keys"
        )
    return key


def _check_key_is_the_leafs(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, chain: list[x509.Certificate], cert_file: Path, key_file: Path
) -> None:
    public = _public(key.public_key())
    if _public(chain[0].public_key()) == public:
        return
    if any(_public(cert.public_key()) == public for cert in chain[1:]):
        raise ValueError(
            f"certificate_file: the certificate of this key is not the first in {cert_file};"
            " put the server's certificate first, then its intermediates"
        )
    raise ValueError(f"certificate_key_file: {key_file} is not the key of the certificate in {cert_file}")


def _check_order(chain: list[x509.Certificate], cert_file: Path) -> None:
    """Each certificate issued by the next: what a client is sent must be a path it can follow."""
    for position, (cert, issuer) in enumerate(itertools.pairwise(chain), start=1):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise ValueError(
                f"certificate_file: certificate {position} in {cert_file} ({cert.subject.rfc4514_string()}) is not"
                f" issued by the one after it ({issuer.subject.rfc4514_string()}); the chain goes server"
                " certificate first, each followed by its issuer"
            ) from None


def _check_dates(chain: list[x509.Certificate], cert_file: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    for cert in chain:
        which = "the certificate" if cert is chain[0] else f"its issuer {cert.subject.rfc4514_string()}"
        if cert.not_valid_before_utc > now:
            raise ValueError(
                f"certificate_file: {which} in {cert_file} is not valid before"
                f" {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            )
        if cert.not_valid_after_utc <= now:
            raise ValueError(f"certificate_file: {which} in {cert_file} expired on {cert.not_valid_after_utc:%Y-%m-%d}")


def _public(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    except x509.ExtensionNotFound:
        return []
