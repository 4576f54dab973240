"""certificates = "acme" on the real swarm, against a real ACME CA: Debian's pebble (PEBBLE_VA_NOSLEEP=1) and
pebble-challtestsrv as its DNS, each a container on the platform's own overlay network (the host's binaries
mounted into the debootstrap base image, so nothing is built for them).

challtestsrv answers every name with the door's address on that network, so pebble's validator reaches this
platform's nginx on port 80 as a public CA would reach the published port; the ACME service's pre-flight asks the
same DNS (`[acme] preflight_dns`). Only the webserver component is deployed (prefix `<e2e prefix>acme`, ports
28080 and 28443), keeping the test light.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from python_on_whales import docker

from stack import certs, http
from stack.swarm import DockerSwarm
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
from tests.e2e.conftest import ROOT, Platform, prefixed_objects
from tests.poller import Poller

pytestmark = [pytest.mark.e2e, pytest.mark.own_platform]

PREFIX = os.environ.get("SAWMILL_ACME_E2E_PREFIX", "sawmillacme")
HTTP_PORT = int(os.environ.get("SAWMILL_ACME_E2E_HTTP_PORT", "28080"))
HTTPS_PORT = int(os.environ.get("SAWMILL_ACME_E2E_HTTPS_PORT", "28443"))
PEBBLE_MANAGEMENT_PORT = HTTP_PORT + 70  # 28150
CHALLTESTSRV_PORT = HTTP_PORT - 25  # 28055
DOMAIN = "acme.test"
PEBBLE = f"{PREFIX}-pebble"
DNS = f"{PREFIX}-challtestsrv"
NETWORK = f"{PREFIX}_net"
WAIT_S = 300
# challtestsrv as a DNS server only, answering no AAAA (pebble would try ::1, its own container, first)
NO_CHALLENGE_SERVERS = ("-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv6", "")


def resolve_to(ip: str) -> None:
    """challtestsrv: answer every name with `ip`."""
    body = json.dumps({"ip": ip}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{CHALLTESTSRV_PORT}/set-default-ipv4", body)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=5) as response:
        assert response.status == 200


def door_ip(deadline: float) -> str:
    """The door's address on the platform's network, once its task runs."""
    while time.monotonic() < deadline:
        found = docker.container.list(filters=[("label", f"com.docker.swarm.service.name={PREFIX}_webserver_door")])
        if found:
            return container_ip(found[0].id, NETWORK)
        time.sleep(1)
    raise AssertionError(f"the door did not start within {WAIT_S} s")


def acme_container(prefix: str = PREFIX) -> str:
    service = f"{prefix}_webserver_acme"
    deadline = time.monotonic() + 60  # a task Swarm is replacing comes back within this
    while time.monotonic() < deadline:
        found = docker.container.list(filters=[("label", f"com.docker.swarm.service.name={service}")])
        if found:
            return found[0].id
        time.sleep(1)
    tasks = [(t.id[:12], t.status.state, t.status.err) for t in docker.service.ps(service)]
    raise AssertionError(f"no running ACME service container: {tasks}")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """pebble and challtestsrv on the platform's network (made here, before `up`, which adopts it)."""
    assert not prefixed_objects(PREFIX), f"leftovers of an earlier run with prefix {PREFIX}: {prefixed_objects(PREFIX)}"
    remove_containers(PEBBLE, DNS)
    docker.network.create(NETWORK, driver="overlay", attachable=True, labels={"sawmill.prefix": PREFIX})
    try:
        run_container(
            DNS,
            NETWORK,
            [*("pebble-challtestsrv", "-dns01", ":8053", "-management", ":8055"), *NO_CHALLENGE_SERVERS],
            publish=(CHALLTESTSRV_PORT, 8055),
        )
        work = tmp_path_factory.mktemp("pebble")
        with pebble(PEBBLE, NETWORK, work, PEBBLE_MANAGEMENT_PORT, f"{container_ip(DNS, NETWORK)}:8053") as started:
            yield started
    finally:
        remove_containers(DNS)


@pytest.fixture(scope="module")
def platform(ca: Pebble, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`up` with certificates = "acme" while the test points challtestsrv at the door once it runs."""
    build_dir = tmp_path_factory.mktemp("acme-build")
    env = acme_env(
        PREFIX,
        build_dir,
        ca,
        SAWMILL_DOMAIN=DOMAIN,
        SAWMILL_HTTP_PORT=str(HTTP_PORT),
        SAWMILL_HTTPS_PORT=str(HTTPS_PORT),
        SAWMILL_ACME__PREFLIGHT_DNS=f"{container_ip(DNS, NETWORK)}:8053",
    )
    p = Platform(build_dir=build_dir, env=env)
    try:
        began = time.monotonic()
        up = subprocess.Popen(
            [sys.executable, "deploy.py", "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        resolve_to(door_ip(time.monotonic() + WAIT_S))
        out, _ = up.communicate(timeout=900)
        p.up_output = out.decode()
        assert up.returncode == 0, p.up_output
        waited = re.search(r"✓ waiting for the ACME service's certificate .*\(([\d.]+) s\)", p.up_output)
        print(
            f"first up with certificates = acme: {time.monotonic() - began:.1f} s, of which waiting for the"
            f" certificate after the stack converged: {waited.group(1) if waited else '?'} s",
            file=sys.stderr,
        )
        yield p
    finally:
        if "up" in locals() and up.poll() is None:
            up.kill()
        tear_down(p, PREFIX, PEBBLE, DNS)


def presented(host: str = DOMAIN) -> x509.Certificate:
    return presented_on(HTTPS_PORT, host)


def get(path: str = "/", cafile: str | None = None) -> http.Response:
    return http.get(DOMAIN, HTTPS_PORT, path, cafile=cafile, timeout=5)


def wait_status_after(since: dt.datetime, timeout_s: float = WAIT_S) -> certs.AcmeStatus:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = certs.acme_status(DockerSwarm(), PREFIX)
        if found is not None and found[0] > since:
            return found[1]
        time.sleep(1)
    raise AssertionError(f"the ACME service recorded no result within {timeout_s} s")


def renew_now() -> dt.datetime:
    """Ask the ACME service for a forced renewal (the file its loop watches), as an operator could."""
    since = dt.datetime.now(dt.UTC)
    docker.execute(acme_container(), ["touch", "/var/lib/sawmill-acme/renew-now"])
    return since


def test_http_01_through_the_real_nginx_gives_a_chain_that_verifies_against_pebbles_root(
    platform: Platform, ca: Pebble
) -> None:
    assert re.search(rf"certificate for {re.escape(DOMAIN)} from CN=Pebble Intermediate", platform.up_output)
    root = ca.root_file()
    response = get("/", cafile=root)  # raises unless the chain verifies for the name
    assert response.status == 200
    assert b"Certificates are pending" not in response.body, "the landing page is rendered again once issued"
    leaf = presented()
    assert dns_names(leaf) == [DOMAIN]
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)


def test_a_second_up_is_a_no_op_and_keeps_the_acme_certificate(platform: Platform) -> None:
    before = {s.spec.name: s.version.index for s in docker.service.list() if s.spec.name.startswith(f"{PREFIX}_")}
    serial = presented().serial_number
    out = platform.deploy("up").stdout
    after = {s.spec.name: s.version.index for s in docker.service.list() if s.spec.name.startswith(f"{PREFIX}_")}
    assert before == after, out
    assert presented().serial_number == serial


def test_a_forced_renewal_rolls_nginx_without_a_failed_request(platform: Platform) -> None:
    old = presented()
    began = time.monotonic()
    with Poller(lambda: get("/").status, bound=3000) as poller:
        result = wait_status_after(renew_now())
        took = time.monotonic() - began
        time.sleep(2)
    assert result.ok, result.message
    new = presented()
    assert new.serial_number != old.serial_number
    assert poller.failed == 0, poller.errors[:5]
    assert poller.ok > 20
    print(f"forced renewal: {took:.1f} s, {poller.ok} requests, 0 failed", file=sys.stderr)
    # a later `up` renders the renewed pair: it neither rolls the certificate back nor restarts anything
    versions = {s.spec.name: s.version.index for s in docker.service.list() if s.spec.name.startswith(f"{PREFIX}_")}
    platform.deploy("up")
    assert presented().serial_number == new.serial_number
    after = {s.spec.name: s.version.index for s in docker.service.list() if s.spec.name.startswith(f"{PREFIX}_")}
    assert after == versions
    status = platform.deploy("status").stdout
    assert f"certificate: {DOMAIN}; issuer CN=Pebble Intermediate" in status and "last ACME attempt" in status


def test_a_name_that_does_not_reach_nginx_fails_the_preflight_and_sends_no_order(
    platform: Platform, ca: Pebble
) -> None:
    serial = presented().serial_number
    orders = ca.orders()
    resolve_to("127.0.0.1")  # every name now points at nothing that serves port 80
    try:
        result = wait_status_after(renew_now())
    finally:
        resolve_to(door_ip(time.monotonic() + 30))
    assert not result.ok
    assert f"{DOMAIN}: resolves to 127.0.0.1, but port 80 there does not answer" in result.message
    assert "no order was sent to the CA" in result.message
    assert ca.orders() == orders
    assert presented().serial_number == serial


def test_no_key_material_in_build_logs_or_service_specs(platform: Platform) -> None:
    key = docker.execute(acme_container(), ["cat", "/var/lib/sawmill-acme/certbot/config/live/sawmill/privkey.pem"])
    secret_line = key.splitlines()[2]
    for path in platform.build_dir.rglob("*"):
        assert not path.is_file() or secret_line.encode() not in path.read_bytes(), f"key material in {path}"
    logs = platform.deploy("logs", "webserver").stdout
    assert "webroot:" in logs or "certificate for" in logs
    assert secret_line not in logs and "PRIVATE KEY" not in logs
    assert secret_line not in platform.up_output
    for service in docker.service.list():
        if service.spec.name.startswith(f"{PREFIX}_"):
            assert secret_line not in service.spec.model_dump_json()


def test_a_component_added_later_gets_a_certificate_naming_its_host_without_a_failed_request(
    platform: Platform, ca: Pebble
) -> None:
    old, orders = presented(), ca.orders()
    platform.env["SAWMILL_COMPONENTS"] = "webserver,postgres,db_connect"  # the operator's config, from now on
    with Poller(lambda: get("/").status, bound=3000) as poller:
        up = platform.deploy("up")
        time.sleep(2)
    said = up.stdout + up.stderr
    assert f"certificate for {DOMAIN}, api.{DOMAIN} from CN=Pebble Intermediate" in said, said
    new = presented(f"api.{DOMAIN}")
    assert sorted(dns_names(new)) == [DOMAIN, f"api.{DOMAIN}"] and new.serial_number != old.serial_number
    assert presented().serial_number == new.serial_number
    assert ca.orders() == orders + 1
    assert http.get(f"api.{DOMAIN}", HTTPS_PORT, "/", cafile=ca.root_file()).status in (200, 401)
    assert poller.failed == 0, poller.errors[:5]
    print(f"a subdomain added: {poller.ok} requests to the bare domain meanwhile, 0 failed", file=sys.stderr)


def test_with_pebble_stopped_the_old_certificate_keeps_serving_and_up_and_status_say_why(
    platform: Platform, ca: Pebble
) -> None:
    serial = presented().serial_number
    docker.container.stop(PEBBLE)
    result = wait_status_after(renew_now())
    assert not result.ok and "certbot could not obtain a certificate" in result.message
    assert presented().serial_number == serial
    status = platform.deploy("status").stdout
    assert "FAILED (the certificate above keeps serving)" in status
    up = platform.deploy("up", check=False)
    said = up.stdout + up.stderr
    assert up.returncode == 1, said
    assert "the ACME service could not obtain a certificate" in said
    assert "nginx keeps serving the previous certificate (valid until" in said
    assert get("/").status == 200 and presented().serial_number == serial
