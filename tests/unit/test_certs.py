"""Local CA: one certificate for every host name, verifiable against the CA the user is told to trust."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from stack import certs
from stack.config import load_settings


def test_issued_certificate_names_every_host_and_chains_to_the_ca() -> None:
    ca_key, ca_cert = certs.new_ca("test")
    hosts = ("api.localhost", "localhost")
    _, leaf = certs.issue(hosts, ca_key, ca_cert)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == list(hosts)
    leaf.verify_directly_issued_by(ca_cert)
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_certificate_names_depend_only_on_the_host_names(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = certs.tls_names(load_settings(), None)
    assert first.hosts == (
        "api.localhost",
        "bi.localhost",
        "kafka.localhost",
        "localhost",
        "presto.localhost",
        "schedule.localhost",
    )
    assert first == certs.tls_names(load_settings(), None)
    monkeypatch.setenv("SAWMILL_DOMAIN", "example.org")
    other = certs.tls_names(load_settings(), None)
    assert other.key_secret != first.key_secret and other.crt_config != first.crt_config
    assert other.ca_key_secret == first.ca_key_secret  # the CA is kept across domains
