"""TLS certificates for nginx: in `local` mode a local CA, kept across runs, signs one certificate for every host
name; in `files` mode the user's own certificate and key (checked by stack/tls_files.py) are stored as they are;
in `acme` mode the webserver's ACME service (stack/acme_service.py) stores each certificate it obtains, labelled,
and until the first one nginx serves a placeholder from the local CA.

Key material exists only in memory and in Docker secrets. The CA certificate is public: it is kept as a
Docker config and exported to build/ca.crt for the user to trust. Certificate names carry a digest of the
host names (local) or of the certificate file (files), so the same configuration always renders the same
stack, and a new host name or a new file rolls nginx over to a new certificate.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stack import names, tls_files
from stack.config import Settings, invalid
from stack.swarm import Swarm
from stack.tls_names import (
    ACME_LABEL,
    DNS_CREDENTIALS_FAMILY,
    AcmeStatus,
    TlsNames,
    chain_digest,
    dns_credentials_secret,
    pair_names,
)

CA_DAYS = 3650
LEAF_DAYS = 825


def own_files(settings: Settings) -> tls_files.CertificateFiles | None:
    """In `files` mode the user's certificate and key, read and checked once per plan; None in other modes."""
    if settings.certificates != "files":
        return None
    assert settings.certificate_file is not None and settings.certificate_key_file is not None  # see Settings
    try:
        return tls_files.load(settings.certificate_file, settings.certificate_key_file, settings.tls_hosts)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def tls_names(settings: Settings, own: tls_files.CertificateFiles | None, acme_digest: str | None = None) -> TlsNames:
    """Names after the host names (local, and acme's placeholder), the very chain that will be stored (files), or
    the ACME pair that serves now (`acme_digest`, read from the swarm by `current_acme`)."""
    named = own.chain if own is not None else "\n".join(settings.tls_hosts).encode()
    return pair_names(settings.prefix, settings.tls_hosts, acme_digest or chain_digest(named))


def current_acme(swarm: Swarm, prefix: str) -> str | None:
    """The digest of the newest complete pair the ACME service stored (what nginx serves or is moving to), so a
    later `up` renders it and never rolls a renewed certificate back; None before the first certificate."""
    labels = names.labels(prefix) | {ACME_LABEL: "certificate"}
    stored = sorted(swarm.configs(labels), key=lambda c: c.created, reverse=True)
    family = f"{prefix}_tls_crt_"
    for config in stored:
        digest = config.name.removeprefix(family)
        if swarm.secret_exists(f"{prefix}_tls_key_{digest}"):
            return digest
    return None


def acme_status(swarm: Swarm, prefix: str) -> tuple[dt.datetime, AcmeStatus] | None:
    """The newest result the ACME service recorded, with when its config was created."""
    found = swarm.configs(names.labels(prefix) | {ACME_LABEL: "status"})
    if not found:
        return None
    newest = max(found, key=lambda c: c.created)
    return newest.created, AcmeStatus.from_json(newest.data)


def ca_path(settings: Settings) -> Path:
    return (settings.build_dir / "ca.crt").resolve()


def ensure_local(swarm: Swarm, settings: Settings, tls: TlsNames, reader_image: str) -> bool:
    """Make sure the CA and a certificate for `tls.hosts` exist; return True if one was issued."""
    labels = names.labels(settings.prefix)
    issued = False
    if not _pair_stored(swarm, tls):
        ca_key, ca_cert = _load_or_create_ca(swarm, tls, settings.prefix, reader_image)
        key, cert = issue(tls.hosts, ca_key, ca_cert)
        _store_pair(swarm, tls, cert.public_bytes(serialization.Encoding.PEM), key_pem(key), labels)
        issued = True
    path = ca_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    ca = swarm.config(tls.ca_config)
    assert ca is not None
    path.write_bytes(ca.data)
    return issued


def ensure_files(swarm: Swarm, tls: TlsNames, own: tls_files.CertificateFiles, prefix: str) -> bool:
    """Store the user's certificate and key for nginx unless stored already; return True if they were new."""
    if _pair_stored(swarm, tls):
        return False
    _store_pair(swarm, tls, own.chain, own.key, names.labels(prefix))
    return True


def ensure_dns_credentials(swarm: Swarm, prefix: str, data: bytes) -> bool:
    """Store dns-01's provider credentials as the ACME service's secret unless stored; True if they were new."""
    name = dns_credentials_secret(prefix, data)
    if not name or swarm.secret_exists(name):
        return False
    swarm.create_secret(name, data, names.labels(prefix))
    return True


def remove_stale(swarm: Swarm, tls: TlsNames, prefix: str, dns_secret: str = "") -> list[str]:
    """Drop the certificates, keys and DNS credentials the entrance has moved off (renewed files, new host names,
    new credentials); return their names. Call it only once the platform verified on `tls` and `dns_secret`:
    until then they are what a rollback returns to."""
    labels = names.labels(prefix)
    configs = [c.name for c in swarm.configs(labels) if _stale(c.name, f"{prefix}_tls_crt_", tls.crt_config)]
    keys = [
        name
        for name in swarm.secrets(labels)
        if _stale(name, f"{prefix}_tls_key_", tls.key_secret)
        or _stale(name, f"{prefix}{DNS_CREDENTIALS_FAMILY}", dns_secret)
    ]
    swarm.remove_configs(configs)
    swarm.remove_secrets(keys)
    return configs + keys


def _stale(name: str, family: str, current: str) -> bool:
    return name.startswith(family) and name != current


def _pair_stored(swarm: Swarm, tls: TlsNames) -> bool:
    return swarm.config(tls.crt_config) is not None and swarm.secret_exists(tls.key_secret)


def _store_pair(swarm: Swarm, tls: TlsNames, chain: bytes, key: bytes, labels: dict[str, str]) -> None:
    """The chain as a Docker config, its key as a secret; half a pair, left by an interrupted run, is replaced."""
    swarm.remove_secrets([tls.key_secret] if swarm.secret_exists(tls.key_secret) else [])
    swarm.remove_configs([tls.crt_config] if swarm.config(tls.crt_config) else [])
    swarm.create_secret(tls.key_secret, key, labels)
    swarm.create_config(tls.crt_config, chain, labels)


def issue(
    hosts: tuple[str, ...], ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def new_ca(prefix: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Sawmill local CA ({prefix})")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _load_or_create_ca(
    swarm: Swarm, tls: TlsNames, prefix: str, reader_image: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    labels = names.labels(prefix)
    stored = swarm.config(tls.ca_config)
    if stored is not None and swarm.secret_exists(tls.ca_key_secret):
        key = serialization.load_pem_private_key(swarm.read_secret(tls.ca_key_secret, reader_image, labels), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key, x509.load_pem_x509_certificate(stored.data)
    key, cert = new_ca(prefix)
    swarm.remove_configs([tls.ca_config] if stored else [])  # half a CA is no CA: start over
    swarm.remove_secrets([tls.ca_key_secret] if swarm.secret_exists(tls.ca_key_secret) else [])
    swarm.create_secret(tls.ca_key_secret, key_pem(key), labels)
    swarm.create_config(tls.ca_config, cert.public_bytes(serialization.Encoding.PEM), labels)
    return key, cert


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
