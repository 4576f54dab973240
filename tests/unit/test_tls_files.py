"""Bring-your-own certificates (`certificates = "files"`): a wrong file is a config error naming its key.

Checked when a plan is made, so `up` and `plan` refuse before anything deploys, while `down`, `status` and
the rest still work when the files have moved.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from stack import apply, certs, plan, tls_files
from stack.config import ConfigError, load_settings

HOSTS = (
    "api.example.com",
    "bi.example.com",
    "example.com",
    "kafka.example.com",
    "presto.example.com",
    "schedule.example.com",
)
Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: Key


def issue(
    name: str, by: Issued | None = None, names: list[str] | None = None, days: int = 90, starts: int = -1, key=None
) -> Issued:  # type: ignore[no-untyped-def]
    """A certificate for `name` (SANs `names`), signed by `by` or self-signed, valid from `starts` for `days`."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(by.cert.subject if by else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=starts))
        .not_valid_after(now + dt.timedelta(days=days))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    signer = by.key if by else key
    return Issued(builder.sign(signer, None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()), key)


def pem(*parts: x509.Certificate | Key) -> bytes:
    return b"".join(
        part.public_bytes(serialization.Encoding.PEM)
        if isinstance(part, x509.Certificate)
        else part.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        for part in parts
    )


def write(folder: Path, chain: bytes, key: bytes) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tls.crt").write_bytes(chain)
    (folder / "tls.key").write_bytes(key)
    return folder / "tls.crt", folder / "tls.key"


def leaf_pair(folder: Path, names: tuple[str, ...] = HOSTS, **kwargs) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A self-signed certificate for `names` and its key, as PEM files."""
    leaf = issue(names[0], names=list(names), **kwargs)
    return write(folder, pem(leaf.cert), pem(leaf.key))


def test_a_certificate_naming_every_host_loads(tmp_path: Path) -> None:
    crt, key = leaf_pair(tmp_path)
    loaded = tls_files.load(crt, key, HOSTS)
    assert loaded.chain == crt.read_bytes() and loaded.key == key.read_bytes()


def test_a_bundle_with_an_rsa_key_loads_as_its_certificates_and_expires_with_the_first_to(tmp_path: Path) -> None:
    root = issue("Root", days=3650)
    intermediate = issue("Intermediate", by=root, days=60)
    leaf = issue(
        "example.com",
        by=intermediate,
        names=["example.com", "*.example.com"],
        key=rsa.generate_private_key(65537, 2048),
    )
    bundle = b"subject=CN = example.com\n" + pem(leaf.cert) + b"\nissuer=CN = Root\n" + pem(intermediate.cert)
    loaded = tls_files.load(*write(tmp_path, bundle, pem(leaf.key)), HOSTS)
    assert loaded.chain == pem(leaf.cert, intermediate.cert), "certificates only are stored, leaf first"
    assert loaded.not_after == intermediate.cert.not_valid_after_utc


def test_a_wildcard_covers_one_label_only() -> None:
    assert tls_files.covers("*.example.com", "api.example.com")
    assert tls_files.covers("API.Example.com.", "api.example.com")
    assert not tls_files.covers("*.example.com", "example.com")
    assert not tls_files.covers("*.example.com", "a.api.example.com")
    assert not tls_files.covers("*.example.com", "api.example.org")


def test_a_wildcard_and_the_domain_cover_the_platform(tmp_path: Path) -> None:
    tls_files.load(*leaf_pair(tmp_path, ("example.com", "*.example.com")), HOSTS)


def combined(d: Path) -> tuple[Path, Path]:
    """certificate and key in one file, given as both: the key must not be stored as a (readable) config."""
    leaf = issue("example.com", names=list(HOSTS))
    crt, _ = write(d, pem(leaf.cert, leaf.key), b"")
    return crt, crt


def intermediate_first(d: Path) -> tuple[Path, Path]:
    intermediate = issue("Intermediate", by=issue("Root"))
    leaf = issue("example.com", by=intermediate, names=list(HOSTS))
    return write(d, pem(intermediate.cert, leaf.cert), pem(leaf.key))


def unrelated_second(d: Path) -> tuple[Path, Path]:
    leaf = issue("example.com", by=issue("Intermediate"), names=list(HOSTS))
    return write(d, pem(leaf.cert, issue("Another").cert), pem(leaf.key))


def expired_intermediate(d: Path) -> tuple[Path, Path]:
    intermediate = issue("Intermediate", by=issue("Root"), starts=-30, days=-1)
    leaf = issue("example.com", by=intermediate, names=list(HOSTS))
    return write(d, pem(leaf.cert, intermediate.cert), pem(leaf.key))


def ed25519_key(d: Path) -> tuple[Path, Path]:
    leaf = issue("example.com", names=list(HOSTS), key=ed25519.Ed25519PrivateKey.generate())
    return write(d, pem(leaf.cert), pem(leaf.key))


def another_key(d: Path) -> tuple[Path, Path]:
    crt, _ = leaf_pair(d)
    return crt, write(d / "other", b"", pem(ec.generate_private_key(ec.SECP256R1())))[1]


@pytest.mark.parametrize(
    ("make", "key", "says"),
    [
        (lambda d: leaf_pair(d, ("example.com", "api.example.com")), "certificate_file", "kafka.example.com"),
        (lambda d: leaf_pair(d, days=-1, starts=-30), "certificate_file", "the certificate .* expired"),
        (lambda d: leaf_pair(d, starts=1), "certificate_file", "not valid before"),
        (another_key, "certificate_key_file", "not the key"),
        (lambda d: (d / "absent.crt", d / "absent.key"), "certificate_file", "cannot read"),
        (lambda d: (leaf_pair(d)[1], leaf_pair(d)[1]), "certificate_file", "private key"),
        (lambda d: (leaf_pair(d)[0], leaf_pair(d)[0]), "certificate_key_file", "PEM private"),
        (lambda d: write(d, b"junk", b""), "certificate_file", "no PEM"),
        (combined, "certificate_file", "holds a private key"),
        (intermediate_first, "certificate_file", "put the server's certificate first"),
        (unrelated_second, "certificate_file", "certificate 1 .* is not issued by the one after it"),
        (expired_intermediate, "certificate_file", "its issuer CN=Intermediate .* expired"),
        (ed25519_key, "certificate_key_file", "Ed25519PrivateKey key; browsers accept RSA or ECDSA"),
    ],
    ids=[
        "a host not covered",
        "expired",
        "not yet valid",
        "a key of another certificate",
        "no file",
        "a key as the certificate",
        "a certificate as the key",
        "not PEM",
        "certificate and key in one file",
        "the intermediate first",
        "a second certificate that did not issue the first",
        "an expired intermediate",
        "an Ed25519 key",
    ],
)
def test_a_wrong_pair_is_refused_naming_the_key(tmp_path: Path, make, key: str, says: str) -> None:  # type: ignore[no-untyped-def]
    crt, key_file = make(tmp_path)
    with pytest.raises(ValueError, match=f"^{key}: .*{says}"):
        tls_files.load(crt, key_file, HOSTS)


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


def test_a_bad_file_stops_the_plan_but_not_the_commands_that_need_no_certificate(
    isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files_mode(monkeypatch, tmp_path / "renewed-elsewhere.crt", tmp_path / "renewed-elsewhere.key")
    settings = load_settings()  # what down, status, logs and secrets need
    assert plan.addresses(settings)["db_connect"] == "https://api.example.com/"
    with pytest.raises(ConfigError, match=r"certificate_file \(env SAWMILL_CERTIFICATE_FILE\): cannot read"):
        plan.make_plan(settings)


def test_the_plan_carries_the_checked_certificate_and_names_it_after_the_chain(
    isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files_mode(monkeypatch, *leaf_pair(tmp_path / "one"))
    first = plan.make_plan(load_settings())
    assert first.own_certificate is not None and first.own_certificate.key == (tmp_path / "one/tls.key").read_bytes()
    assert first.own_certificate.key.decode() not in "".join(f for cp in first.components for f in cp.files.values())
    assert plan.make_plan(load_settings()).tls == first.tls, "the same file, the same names: nothing to roll"
    files_mode(monkeypatch, *leaf_pair(tmp_path / "two"))
    second = plan.make_plan(load_settings()).tls
    assert (second.crt_config, second.key_secret) != (first.tls.crt_config, first.tls.key_secret)
    assert second.hosts == HOSTS


def test_local_mode_reads_no_certificate_file(isolated_env: Path) -> None:
    settings = load_settings()
    assert certs.own_files(settings) is None
    assert plan.make_plan(settings).own_certificate is None


def test_up_warns_three_weeks_before_the_certificate_expires() -> None:
    now = dt.datetime.now(dt.UTC)
    assert apply._validity(now + dt.timedelta(days=60, hours=1)).startswith("  valid until")
    soon = apply._validity(now + dt.timedelta(days=20, hours=1))
    assert soon.startswith("! valid until") and "(20 days): renew the files" in soon
