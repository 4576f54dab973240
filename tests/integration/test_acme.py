"""ACME certificates from a real CA (Debian's pebble) through certbot: HTTP-01 through a real nginx's webroot,
DNS-01 wildcards through certbot's rfc2136 plugin into a real BIND, and the pre-flight that keeps a name that
cannot be validated from ever reaching the CA. Every server is a host process on 127.0.0.1 (see acme_servers)."""

from __future__ import annotations

import base64
import dataclasses
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from stack import acme
from stack.acme_preflight import PreflightError
from tests.integration import acme_servers
from tests.integration.acme_servers import Bind, Nginx, Pebble

DOMAIN = "sawmill.test"
SERVED = (DOMAIN, f"api.{DOMAIN}", f"schedule.{DOMAIN}", f"bi.{DOMAIN}")
WILD = "wild.test"


def require_servers() -> None:
    missing = acme_servers.missing_binaries()
    if missing:
        pytest.fail(
            f"these tests need Debian's {', '.join(missing)}: run them through scripts/test.sh, which installs them"
        )


@dataclasses.dataclass(frozen=True)
class HttpCa:
    pebble: Pebble
    nginx: Nginx
    dns: tuple[str, int]

    def order(self, names: tuple[str, ...]) -> acme.Order:
        return acme.Order(
            names=names,
            email=f"ops@{DOMAIN}",
            directory=self.pebble.directory,
            ca_bundle=self.pebble.ca_bundle,
            webroot=self.nginx.webroot,
            http_port=self.nginx.port,
            resolver=self.dns,
        )


@dataclasses.dataclass(frozen=True)
class DnsCa:
    pebble: Pebble
    bind: Bind

    def order(self, **changes: object) -> acme.Order:
        order = acme.Order(
            names=acme.names_for(WILD, (), "dns-01"),
            email=f"ops@{WILD}",
            directory=self.pebble.directory,
            ca_bundle=self.pebble.ca_bundle,
            challenge="dns-01",
            dns_provider="rfc2136",
            dns_credentials=self.bind.credentials,
            dns_propagation_s=0,
        )
        return dataclasses.replace(order, **changes)


@pytest.fixture(scope="module")
def http_ca() -> Iterator[HttpCa]:
    """pebble validating through nginx (which serves SERVED), resolving every name to 127.0.0.1."""
    require_servers()
    with tempfile.TemporaryDirectory(prefix="sawmill-acme-http-") as work:
        workdir = Path(work)
        with (
            acme_servers.challtestsrv(workdir) as dns,
            acme_servers.nginx(workdir, SERVED) as web,
            acme_servers.pebble(workdir, web.port, dns) as pebble,
        ):
            yield HttpCa(pebble, web, dns)


@pytest.fixture(scope="module")
def dns_ca() -> Iterator[DnsCa]:
    """pebble resolving through BIND, which is authoritative for WILD and takes TSIG-signed updates."""
    require_servers()
    with tempfile.TemporaryDirectory(prefix="sawmill-acme-dns-") as work:
        workdir = Path(work)
        with (
            acme_servers.bind(workdir, WILD) as bind,
            acme_servers.pebble(workdir, acme_servers.free_port(), bind.address) as pebble,
        ):
            yield DnsCa(pebble, bind)


def verify_chain(issued: acme.Issued, root: x509.Certificate) -> x509.Certificate:
    """Each certificate issued by the next, the last by pebble's root; the key is the leaf's. Returns the leaf."""
    chain = x509.load_pem_x509_certificates(issued.chain)
    for cert, issuer in zip(chain, [*chain[1:], root], strict=True):
        cert.verify_directly_issued_by(issuer)
    key = serialization.load_pem_private_key(issued.key, None)
    assert key.public_key() == chain[0].public_key()
    return chain[0]


def test_http_01_issues_one_ecdsa_certificate_for_the_domain_and_its_subdomains(
    http_ca: HttpCa, tmp_path: Path
) -> None:
    orders = http_ca.pebble.orders()
    issued = acme.obtain(http_ca.order(SERVED), tmp_path / "state")
    leaf = verify_chain(issued, http_ca.pebble.root())
    assert sorted(issued.names) == sorted(SERVED)
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"
    assert issued.issuer.startswith("CN=Pebble Intermediate CA")
    assert issued.not_after == leaf.not_valid_after_utc
    assert issued.new
    assert http_ca.pebble.orders() == orders + 1
    assert list((http_ca.nginx.webroot / ".well-known" / "acme-challenge").iterdir()) == [], "tokens are cleaned up"


def test_the_same_names_again_keep_the_certificate_and_send_no_order(http_ca: HttpCa, tmp_path: Path) -> None:
    first = acme.obtain(http_ca.order(SERVED[:2]), tmp_path / "state")
    orders = http_ca.pebble.orders()
    again = acme.obtain(http_ca.order(SERVED[:2]), tmp_path / "state")
    assert (again.chain, again.key, again.new) == (first.chain, first.key, False)
    assert http_ca.pebble.orders() == orders


def test_a_new_set_of_names_is_a_new_certificate_with_a_new_key(http_ca: HttpCa, tmp_path: Path) -> None:
    first = acme.obtain(http_ca.order(SERVED[:2]), tmp_path / "state")
    grown = acme.obtain(http_ca.order(SERVED), tmp_path / "state")
    verify_chain(grown, http_ca.pebble.root())
    assert sorted(grown.names) == sorted(SERVED)
    assert grown.new and grown.key != first.key


def test_rsa_is_there_for_whoever_asks(http_ca: HttpCa, tmp_path: Path) -> None:
    issued = acme.obtain(dataclasses.replace(http_ca.order(SERVED[:1]), key_type="rsa"), tmp_path / "state")
    assert verify_chain(issued, http_ca.pebble.root()).public_key().key_size == 2048


def test_a_name_that_does_not_reach_nginx_fails_the_preflight_and_no_order_is_sent(
    http_ca: HttpCa, tmp_path: Path
) -> None:
    stray = f"elsewhere.{DOMAIN}"  # resolves to 127.0.0.1, but nginx serves no such name (444)
    orders = http_ca.pebble.orders()
    with pytest.raises(PreflightError) as error:
        acme.obtain(http_ca.order((*SERVED[:2], stray)), tmp_path / "state")
    message = str(error.value)
    assert f"{stray}: http://{stray}:{http_ca.nginx.port}/.well-known/acme-challenge/" in message
    assert "closed the connection from 127.0.0.1" in message
    assert f"this nginx does not serve {stray}" in message
    assert "no order was sent to the CA" in message
    assert "5 failed validations per account, per hostname, per hour" in message
    assert f"api.{DOMAIN}" not in message, "only the failing name is reported"
    assert http_ca.pebble.orders() == orders
    assert not (tmp_path / "state" / "config").exists(), "certbot did not even register an account"


def test_a_name_nothing_listens_for_is_told_to_open_the_port(http_ca: HttpCa, tmp_path: Path) -> None:
    closed = dataclasses.replace(http_ca.order(SERVED[:1]), http_port=acme_servers.free_port())
    with pytest.raises(PreflightError, match=rf"{DOMAIN}: resolves to 127.0.0.1, but port \d+ there does not answer"):
        acme.obtain(closed, tmp_path / "state")


def test_each_failing_name_is_told_its_fix_one_without_a_record_to_add_one(
    http_ca: HttpCa, dns_ca: DnsCa, tmp_path: Path
) -> None:
    unknown = f"nothing.{WILD}"  # BIND is authoritative for WILD and has no such record: NXDOMAIN
    orders = http_ca.pebble.orders()
    resolved_by_bind = dataclasses.replace(http_ca.order((WILD, unknown)), resolver=dns_ca.bind.address)
    with pytest.raises(PreflightError) as error:
        acme.obtain(resolved_by_bind, tmp_path / "state")
    assert f"{unknown}: does not resolve (NXDOMAIN); add an A (or AAAA) record for {unknown}" in str(error.value)
    assert f"\n  {WILD}: http://{WILD}:" in str(error.value), "each failing name with its own fix: nginx serves no WILD"
    assert http_ca.pebble.orders() == orders


def test_an_unreachable_ca_is_an_error_that_names_it_and_keeps_the_certificate_held(
    http_ca: HttpCa, tmp_path: Path
) -> None:
    held = acme.obtain(http_ca.order(SERVED[:1]), tmp_path / "state")
    gone = f"https://127.0.0.1:{acme_servers.free_port()}/dir"
    with pytest.raises(acme.AcmeError, match=rf"certbot could not obtain a certificate for {DOMAIN}, api.{DOMAIN}:"):
        acme.obtain(dataclasses.replace(http_ca.order(SERVED[:2]), directory=gone), tmp_path / "state")
    assert acme.obtain(http_ca.order(SERVED[:1]), tmp_path / "state").chain == held.chain


def test_dns_01_issues_the_domain_and_its_wildcard_through_rfc2136(dns_ca: DnsCa, tmp_path: Path) -> None:
    orders = dns_ca.pebble.orders()
    issued = acme.obtain(dns_ca.order(), tmp_path / "state")
    verify_chain(issued, dns_ca.pebble.root())
    assert issued.names == (WILD, f"*.{WILD}")
    assert dns_ca.pebble.orders() == orders + 1
    query = dns.message.make_query(f"_acme-challenge.{WILD}", "TXT")
    answer = dns.query.udp(query, dns_ca.bind.address[0], port=dns_ca.bind.address[1], timeout=2)
    assert answer.answer == [], "the probe's and the challenge's TXT records are removed"


def test_a_zone_the_key_cannot_write_fails_the_preflight_and_no_order_is_sent(dns_ca: DnsCa, tmp_path: Path) -> None:
    wrong = {**dns_ca.bind.credentials, "dns_rfc2136_secret": base64.b64encode(b"not the key" * 6).decode()}
    orders = dns_ca.pebble.orders()
    with pytest.raises(PreflightError) as error:
        acme.obtain(dns_ca.order(dns_credentials=wrong), tmp_path / "state")
    message = str(error.value)
    assert f"dns-rfc2136 could not write a TXT record for {WILD}" in message
    assert "no order was sent to the CA" in message
    assert dns_ca.pebble.orders() == orders


def test_no_key_and_no_credential_appears_in_the_output_or_certbots_logs(
    dns_ca: DnsCa, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    before = set(Path(tempfile.gettempdir()).glob("sawmill-acme-*"))
    issued = acme.obtain(dns_ca.order(), tmp_path / "state")
    out, err = capfd.readouterr()
    account_keys = [
        json.loads(path.read_text())["d"]
        for path in (tmp_path / "state" / "config").glob("accounts/**/private_key.json")
    ]
    key_body = b"".join(issued.key.splitlines()[1:-1]).decode()
    secrets = [key_body, key_body[:40], *account_keys, dns_ca.bind.credentials["dns_rfc2136_secret"]]
    assert len(account_keys) == 1
    logs = "".join(path.read_text() for path in (tmp_path / "state" / "logs").iterdir())
    for secret in secrets:
        assert secret not in out + err
        assert secret not in logs
    assert set(Path(tempfile.gettempdir()).glob("sawmill-acme-*")) == before, "the credentials' directory is gone"
    assert (tmp_path / "state").stat().st_mode & 0o077 == 0, "certbot's state is the owner's alone"
