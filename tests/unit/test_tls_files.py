"""Bring-your-own certificates (`certificates = "files"`): a wrong file is a config error naming its key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from stack import certs, tls_files
from stack.config import ConfigError, load_settings

HOSTS = ("api.example.com", "example.com", "kafka.example.com", "schedule.example.com")


def write_pair(
    folder: Path, names: list[str], days: int = 90, key: ec.EllipticCurvePrivateKey | None = None
) -> tuple[Path, Path]:
    """A self-signed certificate for `names` and its key (or another key, to mismatch), as PEM files."""
    own = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .public_key(own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(own, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    crt, pem = folder / "tls.crt", folder / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        (key or own).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return crt, pem


def test_a_certificate_naming_every_host_loads(tmp_path: Path) -> None:
    crt, key = write_pair(tmp_path, list(HOSTS))
    loaded = tls_files.load(crt, key, HOSTS)
    assert loaded.chain == crt.read_bytes() and loaded.key == key.read_bytes()


def test_a_wildcard_covers_one_label_only() -> None:
    assert tls_files.covers("*.example.com", "api.example.com")
    assert tls_files.covers("API.Example.com.", "api.example.com")
    assert not tls_files.covers("*.example.com", "example.com")
    assert not tls_files.covers("*.example.com", "a.api.example.com")
    assert not tls_files.covers("*.example.com", "api.example.org")


def test_a_wildcard_and_the_domain_cover_the_platform(tmp_path: Path) -> None:
    tls_files.load(*write_pair(tmp_path, ["example.com", "*.example.com"]), HOSTS)


@pytest.mark.parametrize(
    ("make", "key", "says"),
    [
        (lambda d: write_pair(d, ["example.com", "api.example.com"]), "certificate_file", "kafka.example.com"),
        (lambda d: write_pair(d, list(HOSTS), days=-1), "certificate_file", "expired"),
        (
            lambda d: write_pair(d, list(HOSTS), key=ec.generate_private_key(ec.SECP256R1())),
            "certificate_key_file",
            "not the key",
        ),
        (lambda d: (d / "absent.crt", d / "absent.key"), "certificate_file", "cannot read"),
        (lambda d: (write_pair(d, list(HOSTS))[1], write_pair(d, list(HOSTS))[1]), "certificate_file", "no PEM"),
        (
            lambda d: (write_pair(d, list(HOSTS))[0], write_pair(d, list(HOSTS))[0]),
            "certificate_key_file",
            "PEM private",
        ),
    ],
    ids=["a host not covered", "expired", "a key of another certificate", "no file", "not a certificate", "not a key"],
)
def test_a_wrong_pair_is_refused_naming_the_key(tmp_path: Path, make, key: str, says: str) -> None:  # type: ignore[no-untyped-def]
    crt, pem = make(tmp_path)
    with pytest.raises(ValueError, match=f"^{key}: .*{says}"):
        tls_files.load(crt, pem, HOSTS)


def files_mode(monkeypatch: pytest.MonkeyPatch, crt: Path | None, key: Path | None) -> None:
    monkeypatch.setenv("SAWMILL_DOMAIN", "example.com")
    monkeypatch.setenv("SAWMILL_CERTIFICATES", "files")
    if crt is not None and key is not None:
        monkeypatch.setenv("SAWMILL_CERTIFICATE_FILE", str(crt))
        monkeypatch.setenv("SAWMILL_CERTIFICATE_KEY_FILE", str(key))


def test_files_mode_without_the_files_is_a_config_error(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files_mode(monkeypatch, None, None)
    with pytest.raises(ConfigError, match=r"certificate_file \(env SAWMILL_CERTIFICATE_FILE\): .* needs"):
        load_settings()


def test_a_new_certificate_file_gets_new_names_so_nginx_rolls_over(
    isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files_mode(monkeypatch, *write_pair(tmp_path / "one", list(HOSTS)))
    first = certs.tls_names(load_settings())
    assert certs.tls_names(load_settings()) == first, "the same file, the same names: nothing to roll"
    files_mode(monkeypatch, *write_pair(tmp_path / "two", list(HOSTS)))
    second = certs.tls_names(load_settings())
    assert (second.crt_config, second.key_secret) != (first.crt_config, first.key_secret)
    assert second.hosts == HOSTS
