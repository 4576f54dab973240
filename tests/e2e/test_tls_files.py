"""Bring your own certificate (`certificates = "files"`): nginx serves exactly that certificate, the key lives only
in a Docker secret, and a new file rolls nginx over to it and retires the old pair.

This module deploys a platform of its own (Postgres, db_connect and nginx, prefix `<e2e prefix>f`, ports 18081 and
18444), so the shared end-to-end platform keeps its local CA.
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from python_on_whales import docker

from stack import http
from stack.swarm import DockerSwarm
from tests.e2e.conftest import PREFIX, Platform, deployed
from tests.unit.test_tls_files import leaf_pair

pytestmark = [pytest.mark.e2e, pytest.mark.own_platform]

HTTPS_PORT = 18444
HOSTS = ("localhost", "api.localhost")


@pytest.fixture(scope="module")
def own_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return leaf_pair(tmp_path_factory.mktemp("own-certificate"), HOSTS)


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


def stored_pairs(prefix: str) -> tuple[list[str], list[str]]:
    """Names of the certificate configs and key secrets the platform holds."""
    label = {"label": f"sawmill.prefix={prefix}"}
    configs = [c.spec.name for c in docker.config.list(filters=label) if "_tls_crt_" in c.spec.name]
    keys = [name for name in DockerSwarm().secrets({"sawmill.prefix": prefix}) if "_tls_key_" in name]
    return configs, keys


def test_nginx_serves_the_certificate_from_the_file(platform: Platform, own_certificate: tuple[Path, Path]) -> None:
    crt, _ = own_certificate
    assert presented("api.localhost") == der(crt)
    assert presented("localhost") == der(crt)
    # Trusting that file alone is enough to reach the API through nginx.
    assert http.get("api.localhost", HTTPS_PORT, "/health", cafile=str(crt)).status == 200
    assert "local CA certificate" not in platform.up_output
    assert "valid until" in platform.up_output


def test_the_key_is_only_a_docker_secret(platform: Platform, own_certificate: tuple[Path, Path]) -> None:
    crt, key = own_certificate
    # The second line of the key's base64: the first is the same header for every P-256 key.
    secret_line = key.read_bytes().splitlines()[2]
    configs, keys = stored_pairs(platform.prefix)
    assert len(configs) == len(keys) == 1
    assert base64.b64decode(docker.config.inspect(configs[0]).spec.data) == crt.read_bytes()
    for path in platform.build_dir.rglob("*"):
        assert not path.is_file() or secret_line not in path.read_bytes(), f"key material in {path}"
    services = docker.service.list(filters=[("label", f"com.docker.stack.namespace={platform.prefix}_webserver")])
    assert services
    for service in services:  # environment, labels, mounts: nothing in a spec carries the key
        assert secret_line.decode() not in service.spec.model_dump_json()


def test_a_new_certificate_file_rolls_nginx_over_to_it_and_retires_the_old_pair(
    platform: Platform, tmp_path: Path
) -> None:
    old_configs, old_keys = stored_pairs(platform.prefix)
    crt, key = leaf_pair(tmp_path, HOSTS)
    up = platform.deploy("up", SAWMILL_CERTIFICATE_FILE=str(crt), SAWMILL_CERTIFICATE_KEY_FILE=str(key))
    assert "stored as config" in up.stdout + up.stderr
    assert presented("api.localhost") == der(crt)
    configs, keys = stored_pairs(platform.prefix)
    assert len(configs) == len(keys) == 1 and configs != old_configs and keys != old_keys
    assert f"removed {old_keys[0]}" in up.stdout + up.stderr
