"""certificates = "acme" with challenge = "dns-01" on the real swarm: the ACME service's certbot writes the challenge's
TXT record through the real rfc2136 plugin into BIND 9 (Debian's bind9, primary for the zone, TSIG-signed
updates), a container on the platform's own network, and pebble's validator reads it there. The credentials reach
the service only as the Docker secret `up` made from `[acme] dns_credentials_file`.

One certificate names the domain and its wildcard, so a component added later is served under it with no new
order. Prefix `sawmillacmedns`, ports 29080 and 29443; the webserver alone, then postgres and db_connect added.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from python_on_whales import docker

from stack import http
from tests.e2e.acme_cas import (
    Pebble,
    acme_env,
    container_ip,
    dns_names,
    pebble,
    presented_on,
    remove_containers,
    run_container,
    tear_down,
)
from tests.e2e.conftest import Platform, prefixed_objects
from tests.integration.acme_servers import bind_config
from tests.nodes.simulated import node_image

pytestmark = [pytest.mark.e2e, pytest.mark.own_platform]

PREFIX = os.environ.get("SAWMILL_ACME_DNS_E2E_PREFIX", "sawmillacmedns")
HTTP_PORT = int(os.environ.get("SAWMILL_ACME_DNS_E2E_HTTP_PORT", "29080"))
HTTPS_PORT = HTTP_PORT + 363  # 29443
PEBBLE_MANAGEMENT_PORT = HTTP_PORT + 70  # 29150
DOMAIN = "dns.test"
PEBBLE = f"{PREFIX}-pebble"
BIND = f"{PREFIX}-bind"
NETWORK = f"{PREFIX}_net"
BIND_IMAGE_DIR = Path(__file__).resolve().parent / "bind"
BIND_CONFIG = Path("/etc/sawmill-bind")
START_S = 60
QUIET = {"capture_output": True, "text": True, "check": True, "timeout": 30}


@dataclass(frozen=True)
class Zone:
    address: str  # BIND's, on the platform's network
    credentials: dict[str, str]  # certbot's rfc2136 credentials, as the operator writes them


@pytest.fixture(scope="module")
def zone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zone]:
    """BIND on the platform's network (made here, before `up`, which adopts it), primary for DOMAIN."""
    assert not prefixed_objects(PREFIX), f"leftovers of an earlier run with prefix {PREFIX}: {prefixed_objects(PREFIX)}"
    remove_containers(PEBBLE, BIND)
    work = tmp_path_factory.mktemp("bind")
    credentials = bind_config(work, DOMAIN, "any", 53, seen_at=BIND_CONFIG)
    docker.network.create(NETWORK, driver="overlay", attachable=True, labels={"sawmill.prefix": PREFIX})
    try:
        image = node_image(BIND_IMAGE_DIR, "sawmill/test-bind")
        run_container(
            BIND,
            NETWORK,
            ["named", "-g", "-c", f"{BIND_CONFIG}/named.conf"],
            image,
            ((str(work), str(BIND_CONFIG), "rw"),),
        )
        deadline = time.monotonic() + START_S
        while "running" not in docker.container.logs(BIND):
            assert time.monotonic() < deadline, docker.container.logs(BIND)
            time.sleep(0.5)
        address = container_ip(BIND, NETWORK)
        yield Zone(address, {"dns_rfc2136_server": address, "dns_rfc2136_port": "53", **credentials})
    finally:
        remove_containers(BIND)


@pytest.fixture(scope="module")
def ca(zone: Zone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    with pebble(
        PEBBLE, NETWORK, tmp_path_factory.mktemp("pebble"), PEBBLE_MANAGEMENT_PORT, f"{zone.address}:53"
    ) as started:
        yield started


@pytest.fixture(scope="module")
def platform(ca: Pebble, zone: Zone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`up` with dns-01 through rfc2136, the credentials in a file only its owner reads, as an operator keeps it."""
    build_dir = tmp_path_factory.mktemp("acme-dns-build")
    credentials = build_dir.parent / "rfc2136.ini"
    credentials.touch(mode=0o600)
    credentials.write_text("".join(f"{key} = {value}\n" for key, value in zone.credentials.items()))
    env = acme_env(
        PREFIX,
        build_dir,
        ca,
        SAWMILL_DOMAIN=DOMAIN,
        SAWMILL_HTTP_PORT=str(HTTP_PORT),
        SAWMILL_HTTPS_PORT=str(HTTPS_PORT),
        SAWMILL_ACME__CHALLENGE="dns-01",
        SAWMILL_ACME__DNS_PROVIDER="rfc2136",
        SAWMILL_ACME__DNS_CREDENTIALS_FILE=str(credentials),
        SAWMILL_ACME__DNS_PROPAGATION_SECONDS="0",
    )
    p = Platform(build_dir=build_dir, env=env)
    try:
        began = time.monotonic()
        up = p.deploy("up")
        p.up_output = up.stdout + up.stderr
        print(f"first up with dns-01 through rfc2136: {time.monotonic() - began:.1f} s", file=sys.stderr)
        yield p
    finally:
        tear_down(p, PREFIX, PEBBLE, BIND)


def presented(host: str = DOMAIN) -> x509.Certificate:
    return presented_on(HTTPS_PORT, host)


def test_dns_01_gives_one_certificate_for_the_domain_and_its_wildcard(platform: Platform, ca: Pebble) -> None:
    assert f"certificate for {DOMAIN}, *.{DOMAIN} from CN=Pebble" in platform.up_output
    assert "stored the rfc2136 credentials as a secret of the ACME service" in platform.up_output
    leaf = presented()
    assert sorted(dns_names(leaf)) == sorted([DOMAIN, f"*.{DOMAIN}"])
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    response = http.get(DOMAIN, HTTPS_PORT, "/", cafile=ca.root_file())  # raises unless the chain verifies
    assert response.status == 200


def test_the_dns_credentials_are_only_a_secret_of_the_acme_service(platform: Platform, zone: Zone) -> None:
    tsig = zone.credentials["dns_rfc2136_secret"]
    for path in platform.build_dir.rglob("*"):
        assert not path.is_file() or tsig.encode() not in path.read_bytes(), f"the TSIG secret in {path}"
    assert tsig not in platform.up_output
    logs = platform.deploy("logs", "webserver").stdout
    assert "certificate for" in logs and tsig not in logs
    specs = [s for s in docker.service.list() if s.spec.name.startswith(f"{PREFIX}_")]
    assert specs and all(tsig not in s.spec.model_dump_json() for s in specs)
    inspect = ["docker", "service", "inspect", f"{PREFIX}_webserver_acme"]
    found = subprocess.run([*inspect, "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Secrets}}"], **QUIET)
    mounted = json.loads(found.stdout)
    assert [m["SecretName"].startswith(f"{PREFIX}_acme_dns_") for m in mounted] == [True], mounted
    assert mounted[0]["File"]["Name"] == "acme-dns-credentials" and mounted[0]["File"]["Mode"] == 0o400


def test_a_component_added_later_is_served_under_the_same_certificate_with_no_new_order(
    platform: Platform, ca: Pebble
) -> None:
    serial, orders = presented().serial_number, ca.orders()
    platform.env["SAWMILL_COMPONENTS"] = "webserver,postgres,db_connect"  # the operator's config, from now on
    began = time.monotonic()
    up = platform.deploy("up")
    print(f"up adding postgres and db_connect under the wildcard: {time.monotonic() - began:.1f} s", file=sys.stderr)
    added = up.stdout + up.stderr
    assert "waiting for the ACME service's certificate" not in added, "the wildcard covers api.: nothing to wait for"
    assert presented(f"api.{DOMAIN}").serial_number == serial
    assert ca.orders() == orders
    response = http.get(f"api.{DOMAIN}", HTTPS_PORT, "/", cafile=ca.root_file())
    assert response.status in (200, 401), response.body[:300]  # db_connect itself answered, over a verified chain
