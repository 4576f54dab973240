"""The platform on a real swarm: deployed from zero, reached only through nginx on 80/443, updated
without dropping a request, rolled back when a release is bad, and keeping its data across down/up.

Tests run in file order against one platform (see conftest.py); each states one behaviour.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from python_on_whales import docker

from stack import http as https
from stack import swarm as swarm_module
from stack.swarm import DockerSwarm
from tests.poller import Poller

from .conftest import HTTP_PORT, HTTPS_PORT, PREFIX, ROOT, Platform, running_container, service_versions

pytestmark = pytest.mark.e2e


def task_ids() -> set[str]:
    return {
        t.id
        for s in docker.service.list()
        if s.spec.name.startswith(f"{PREFIX}_")
        for t in docker.service.ps(s)
        if t.desired_state == "running"
    }


def plain_http(path: str, host: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=5)
    conn.request("GET", path, headers={"Host": host})
    return conn.getresponse()


def test_cold_up_serves_the_api_over_tls_verified_by_the_local_ca(platform: Platform) -> None:
    health = platform.get("api.localhost", "/health")
    assert health.status == 200
    assert json.loads(health.body) == {"status": "ok"}
    ca = x509.load_pem_x509_certificate(Path(platform.cafile).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "https://api.localhost:18443/" in platform.up_output
    assert f"local CA certificate: {platform.cafile}" in platform.up_output


def test_status_reports_every_service_healthy_with_its_url(platform: Platform) -> None:
    status = platform.status()
    assert status["ca_certificate"] == platform.cafile
    rows = {(r["component"], r["service"]): r for r in status["services"]}
    assert rows[("db_connect", "api")]["replicas"] == "2/2"
    assert rows[("db_connect", "api")]["url"] == "https://api.localhost:18443/"
    jobs = {k for k, r in rows.items() if r["replicas"] == "job"}
    assert ("postgres", "init") in jobs
    assert {rows[k]["health"] for k in jobs} == {"completed"}
    assert {r["health"] for k, r in rows.items() if k not in jobs} == {"healthy"}


def test_http_redirects_to_https_except_acme_challenges(platform: Platform) -> None:
    redirect = plain_http("/health?x=1", "api.localhost")
    assert redirect.status == 301
    assert redirect.getheader("Location") == "https://api.localhost:18443/health?x=1"
    challenge = plain_http("/.well-known/acme-challenge/some-token", "api.localhost")
    assert challenge.status == 404  # served from the webroot, not redirected


def test_an_unknown_host_gets_no_service(platform: Platform) -> None:
    with pytest.raises(ssl.SSLError):
        platform.get("evil.example.com", "/")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        plain_http("/", "evil.example.com")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):  # known SNI, unknown Host
        https.get("api.localhost", HTTPS_PORT, "/", cafile=platform.cafile, headers={"Host": "evil.example.com"})


def test_tls_is_modern_and_security_headers_are_set(platform: Platform) -> None:
    response = platform.get("api.localhost", "/health")
    assert response.headers["strict-transport-security"] == "max-age=63072000"
    assert response.headers["x-content-type-options"] == "nosniff"
    old = ssl.create_default_context(cafile=platform.cafile)
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=5) as sock, pytest.raises(ssl.SSLError):
        old.wrap_socket(sock, server_hostname="api.localhost")


def test_nothing_but_the_two_web_ports_is_published(platform: Platform) -> None:
    published = {
        (s.spec.name, p.target_port, p.published_port, p.publish_mode)
        for s in docker.service.list()
        if s.spec.name.startswith(f"{PREFIX}_")
        for p in (s.endpoint.ports or [])
    }
    assert published == {
        (f"{PREFIX}_webserver_door", 80, HTTP_PORT, "host"),
        (f"{PREFIX}_webserver_door", 443, HTTPS_PORT, "host"),
    }


def test_landing_page_lists_services_with_live_health(platform: Platform) -> None:
    page = platform.get("localhost", "/")
    assert page.status == 200
    assert b"https://api.localhost:18443/" in page.body
    assert platform.get("localhost", "/health/db_connect").status == 200


def test_the_api_needs_its_generated_key(platform: Platform) -> None:
    assert platform.get("api.localhost", "/").status == 401
    assert len(platform.api_key) == 32
    listing = platform.api("/")
    assert listing.status == 200, listing.body


def test_secrets_appear_in_no_rendered_file_service_spec_or_log(platform: Platform) -> None:
    values = [
        platform.api_key,
        platform.deploy("secrets", "show", "db_connect_db_password").stdout.strip(),
        platform.deploy("secrets", "show", "postgres_password").stdout.strip(),
    ]
    assert all(len(v) == 32 for v in values)
    rendered = "".join(p.read_text() for p in platform.build_dir.rglob("*") if p.is_file())
    services = [s for s in docker.service.list() if s.spec.name.startswith(f"{PREFIX}_")]
    specs = subprocess.run(
        ["docker", "service", "inspect", *[s.id for s in services]], capture_output=True, text=True, check=True
    ).stdout
    # every task's container, stopped ones too (`docker service logs` was seen to hang on a replaced task)
    stacked = docker.container.list(all=True, filters=[("label", "com.docker.stack.namespace")])
    containers = [c for c in stacked if c.config.labels["com.docker.stack.namespace"].startswith(f"{PREFIX}_")]
    logs = "".join(docker.container.logs(c) for c in containers)
    for value in values:
        assert value not in rendered
        assert value not in specs
        assert value not in logs
        assert value not in platform.up_output


def test_a_secret_reads_back_byte_for_byte_through_no_log(platform: Platform) -> None:
    """The reader is a one-shot service without a log driver; the value comes back through `docker exec`."""
    name, value = f"{PREFIX}_e2e_probe", b"first line\n\ttab, backslash \\, trailing newline\n"
    swarm = DockerSwarm()
    swarm.create_secret(name, value, {"sawmill.prefix": PREFIX})
    readers: dict[str, str] = {}  # one-shot services of the prefix seen while reading: name -> log driver
    result: dict[str, bytes] = {}
    labels = {"sawmill.prefix": PREFIX}
    reading = threading.Thread(target=lambda: result.update(value=swarm.read_secret(name, reader_image(), labels)))
    reading.start()
    try:
        while reading.is_alive():
            listed = ["docker", "service", "ls", "-q", "--filter", f"label=sawmill.prefix={PREFIX}"]
            for service in subprocess.run(listed, capture_output=True, text=True).stdout.split():
                inspect = ["docker", "service", "inspect", "--format", "{{json .Spec}}", service]
                found = subprocess.run(inspect, capture_output=True, text=True)
                if found.returncode != 0:  # removed meanwhile
                    continue
                spec = json.loads(found.stdout)
                if "com.docker.stack.namespace" not in spec["Labels"]:  # not one of the platform's services
                    readers[spec["Name"]] = (spec["TaskTemplate"].get("LogDriver") or {"Name": "default"})["Name"]
            time.sleep(0.05)
    finally:
        reading.join()
        swarm.remove_secrets([name])
    assert result["value"] == value
    assert readers and set(readers.values()) == {"none"}
    assert not [s for s in docker.service.list() if s.spec.name in readers], "the reader service is removed"


def reader_image() -> str:
    return docker.service.inspect(f"{PREFIX}_postgres_server").spec.task_template.container_spec.image.split("@")[0]


def test_bad_config_changes_nothing_and_names_the_key(platform: Platform) -> None:
    before = service_versions()
    result = platform.deploy("up", check=False, SAWMILL_DOMAIN="bad domain.com")
    assert result.returncode == 2
    assert "domain (env SAWMILL_DOMAIN)" in result.stderr
    result = platform.deploy("up", "spark", check=False)
    assert result.returncode == 2 and "unknown component(s) spark" in result.stderr
    # an address no certificate can name for every subdomain: refused before any service or certificate moves
    result = platform.deploy("up", check=False, SAWMILL_DOMAIN="127.0.0.1")
    assert result.returncode == 2 and "'127.0.0.1' is an IP address" in result.stderr
    assert service_versions() == before
    assert platform.get("api.localhost", "/health").status == 200


def test_two_concurrent_ups_take_turns_through_the_deploy_lock(platform: Platform) -> None:
    """Two terminals (or CI jobs) run the same change at once: one deploys, the other waits, then has nothing
    left to do."""
    env = platform.env | {"SAWMILL_DB_CONNECT__REPLICAS": "3"}
    runs = [
        subprocess.Popen(
            [sys.executable, "deploy.py", "up", "db_connect"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    waited = [out for out in outputs if "for the deploy lock, held by" in out]
    assert len(waited) == 1, outputs
    assert "db_connect: unchanged" in waited[0]
    assert sum("deploying db_connect" in out for out in outputs) == 1
    assert docker.service.inspect(f"{PREFIX}_db_connect_api").spec.mode["Replicated"]["Replicas"] == 3
    assert "free" in platform.deploy("lock", "status").stdout
    platform.deploy("up", "db_connect")  # back to the platform's 2 replicas


def test_a_hand_made_change_is_shown_by_plan_and_undone_by_up(platform: Platform) -> None:
    subprocess.run(["docker", "service", "scale", "-d", f"{PREFIX}_db_connect_api=1"], check=True, capture_output=True)
    shown = platform.deploy("plan").stdout
    assert "db_connect: changed by hand since it was deployed" in shown
    assert "api: replicas 1 running, 2 planned" in shown
    result = platform.deploy("up", "db_connect")
    assert "db_connect was changed by hand, putting it back" in result.stderr
    assert docker.service.inspect(f"{PREFIX}_db_connect_api").spec.mode["Replicated"]["Replicas"] == 2
    assert "db_connect: unchanged" in platform.deploy("plan").stdout


def test_a_second_up_updates_no_service_and_builds_nothing(platform: Platform) -> None:
    tasks, versions = task_ids(), service_versions()
    result = platform.deploy("up")
    for component in ("postgres", "db_connect", "webserver"):
        assert f"{component}: unchanged" in result.stderr
    assert "building image" not in result.stderr
    assert task_ids() == tasks
    assert service_versions() == versions


def test_plan_shows_the_difference_and_changes_nothing(platform: Platform) -> None:
    versions = service_versions()
    unchanged = platform.deploy("plan").stdout
    assert "db_connect: unchanged" in unchanged
    changed = platform.deploy("plan", SAWMILL_DB_CONNECT__REPLICAS="3").stdout
    assert "db_connect: changes" in changed
    assert "-      replicas: 2\n+      replicas: 3" in changed
    assert "postgres: unchanged" in changed
    assert service_versions() == versions


def test_logs_show_a_components_recent_lines(platform: Platform) -> None:
    logs = platform.deploy("logs", "db_connect", "--tail", "20").stdout
    assert f"== {PREFIX}_db_connect_api" in logs
    assert "Application startup complete" in logs  # uvicorn's stderr; nginx keeps the access log, not the API


def test_logs_fall_back_to_this_nodes_containers_when_swarm_gives_no_answer(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(swarm_module, "SERVICE_LOGS_TIMEOUT_S", 0.001)  # as if `docker service logs` hung
    logs = DockerSwarm().logs(f"{PREFIX}_db_connect_api", 20)
    assert logs.startswith("(docker service logs gave no answer in 0.001 s; this node's containers)")
    assert "Application startup complete" in logs


def build_variant(tag: str, extra: str) -> str:
    """A new db_connect image derived from the running one (a new release, as far as Swarm can tell)."""
    current = docker.service.inspect(f"{PREFIX}_db_connect_api").spec.task_template.container_spec.image
    current = current.split("@")[0]
    dockerfile = f"FROM {current}\n{extra}\n"
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True, check=True, capture_output=True
    )
    return tag


def health_poller(platform: Platform) -> Poller:
    """GET /health through nginx every 0.1 s, counting what failed."""
    return Poller(lambda: platform.get("api.localhost", "/health", timeout=5).status, bound=3000)


def test_a_rolling_update_of_db_connect_drops_no_request(platform: Platform) -> None:
    tag = build_variant("sawmill/db_connect:e2e-release", 'LABEL release="e2e"')
    with health_poller(platform) as poller:
        platform.deploy("up", "db_connect", SAWMILL_IMAGE_OVERRIDES=json.dumps({"db_connect": tag}))
        time.sleep(2)
    assert poller.failed == 0, poller.errors[:5]
    assert poller.ok > 20
    image = docker.service.inspect(f"{PREFIX}_db_connect_api").spec.task_template.container_spec.image
    assert image.startswith(tag)


def test_a_new_certificate_and_a_route_coming_and_going_drop_no_request(platform: Platform) -> None:
    """Taking Airflow out of the platform and back changes nginx's server blocks and, in local mode, its
    certificate (one fewer, then one more name): nginx's replicas roll behind the door, which stays put."""
    door = door_tasks()
    with health_poller(platform) as poller:
        first = platform.deploy("up", SAWMILL_COMPONENTS="postgres,db_connect,kafka,webserver")
        with pytest.raises(OSError):  # no certificate names it now: the handshake is refused
            platform.get("schedule.localhost", "/", timeout=5)
        second = platform.deploy("up")
        time.sleep(2)
    for result in (first, second):
        assert "issued a new certificate" in result.stderr and "deploying webserver" in result.stderr
    assert poller.failed == 0, poller.errors[:5]
    assert poller.ok > 50
    assert door_tasks() == door, "the door was not replaced"
    assert len(stored_keys()) == 1, "a replaced key is removed once its successor verified"
    assert platform.get("schedule.localhost", "/api/v2/monitor/health").status == 200


def door_tasks() -> set[str]:
    """The door's running tasks (`stack deploy` bumps every service's version, replacing no task)."""
    return {t.id for t in docker.service.ps(f"{PREFIX}_webserver_door") if t.desired_state == "running"}


def stored_keys() -> list[str]:
    return [n for n in DockerSwarm().secrets({"sawmill.prefix": PREFIX}) if "_tls_key_" in n]


def test_a_release_that_fails_its_health_check_is_rolled_back(platform: Platform) -> None:
    good = docker.service.inspect(f"{PREFIX}_db_connect_api").spec.task_template.container_spec.image
    bad = build_variant("sawmill/db_connect:e2e-broken", "ENV PGPORT=1")  # cannot reach its database
    with health_poller(platform) as poller:
        result = platform.deploy(
            "up", "db_connect", check=False, SAWMILL_IMAGE_OVERRIDES=json.dumps({"db_connect": bad})
        )
    assert result.returncode == 1
    assert "rollback" in result.stderr
    assert "task " in result.stderr and "| " in result.stderr  # the failing task's error and its log lines
    assert docker.service.inspect(f"{PREFIX}_db_connect_api").spec.task_template.container_spec.image == good
    assert poller.failed == 0, poller.errors[:5]
    assert platform.get("api.localhost", "/health").status == 200


def test_data_survives_down_and_up(platform: Platform) -> None:
    platform.psql("CREATE TABLE consumption.survivors (id int primary key, name text)")
    platform.psql("INSERT INTO consumption.survivors VALUES (1, 'kept')")
    old_container = running_container(f"{PREFIX}_postgres_server")
    platform.deploy("down")
    assert not [s for s in docker.service.list() if s.spec.name.startswith(f"{PREFIX}_")]
    platform.deploy("up")
    assert running_container(f"{PREFIX}_postgres_server") != old_container
    rows = platform.api("/consumption/survivors")
    assert rows.status == 200, rows.body
    assert json.loads(rows.body) == [{"id": 1, "name": "kept"}]
