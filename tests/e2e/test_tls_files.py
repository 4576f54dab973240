"""Bring your own certificate (`certificates = "files"`): nginx serves exactly that certificate, the key lives only
in a Docker secret, and a new file rolls nginx over to it.

This module deploys a platform of its own (Postgres, db_connect and nginx, prefix `<e2e prefix>f`, ports 18081 and
18444), so the shared end-to-end platform keeps its local CA.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from python_on_whales import docker

from stack import http, secrets
from tests.e2e.conftest import PREFIX, Platform, deployed
from tests.unit.test_tls_files import write_pair

pytestmark = [pytest.mark.e2e, pytest.mark.own_platform]

HTTPS_PORT = 18444
HOSTS = ["localhost", "api.localhost"]


@pytest.fixture(scope="module")
def own_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_pair(tmp_path_factory.mktemp("own-certificate"), HOSTS)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, own_certificate: tuple[Path, Path]) -> Iterator[Platform]:
    crt, key = own_certificate
    settings = {
        "components": "postgres,db_connect,webserver",
        "http_port": "18081",
        "https_port": str(HTTPS_PORT),
        "certificates": "files",
        "certificate_file": str(crt),
        "certificate_key_file": str(key),
    }
    with deployed(tmp_path_factory.mktemp("files"), f"{PREFIX}f", **settings) as p:
        yield p


def presented(host: str) -> bytes:
    """The certificate nginx presents for `host` (SNI), DER."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return tls.getpeercert(binary_form=True) or b""


def der(crt: Path) -> bytes:
    return x509.load_pem_x509_certificate(crt.read_bytes()).public_bytes(serialization.Encoding.DER)


def test_nginx_serves_the_certificate_from_the_file(platform: Platform, own_certificate: tuple[Path, Path]) -> None:
    crt, _ = own_certificate
    assert presented("api.localhost") == der(crt)
    assert presented("localhost") == der(crt)
    # Trusting that file alone is enough to reach the API through nginx.
    assert http.get("api.localhost", HTTPS_PORT, "/health", cafile=str(crt)).status == 200
    assert "local CA certificate" not in platform.up_output


def test_the_key_is_only_a_docker_secret(platform: Platform, own_certificate: tuple[Path, Path]) -> None:
    _, key = own_certificate
    body = key.read_bytes().split(b"-----")[2].strip()  # the base64 of the key, without the PEM armour
    stored = [s.spec.name for s in secrets.listed({"label": f"sawmill.prefix={platform.prefix}"})]
    assert any("_tls_key_" in name for name in stored)
    for path in platform.build_dir.rglob("*"):
        assert not path.is_file() or body[:40] not in path.read_bytes(), f"key material in {path}"
    services = docker.service.list(filters=[("label", f"com.docker.stack.namespace={platform.prefix}_webserver")])
    assert services
    for service in services:
        assert body[:40].decode() not in str(service.spec)


def test_a_new_certificate_file_rolls_nginx_over_to_it(platform: Platform, tmp_path: Path) -> None:
    crt, key = write_pair(tmp_path, HOSTS)
    up = platform.deploy("up", SAWMILL_CERTIFICATE_FILE=str(crt), SAWMILL_CERTIFICATE_KEY_FILE=str(key))
    assert "stored as config" in up.stdout + up.stderr
    assert presented("api.localhost") == der(crt)
