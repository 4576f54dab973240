"""Rendering: stack files and nginx config follow the platform's rules, purely from settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from stack import certs, components, names, plan
from stack.config import load_settings


@pytest.fixture
def rendered(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> plan.Plan:
    monkeypatch.setenv("SAWMILL_BUILD_DIR", str(isolated_env / "build"))
    return plan.make_plan(load_settings())


def stack_of(p: plan.Plan, component: str) -> dict:
    return yaml.safe_load(p.component(component).files["stack.yml"])


def test_every_component_renders_a_stack_in_deploy_order(rendered: plan.Plan) -> None:
    assert [c.name for c in rendered.components] == [
        "postgres",
        "db_connect",
        "kafka",
        "presto",
        "airflow",
        "bi",
        "webserver",
    ]
    for cp in rendered.components:
        assert cp.stack_name == f"sawmill_{cp.name}"
        assert stack_of(rendered, cp.name)["networks"]["platform"] == {"external": True, "name": "sawmill_net"}


def test_only_nginx_publishes_ports_and_in_host_mode(rendered: plan.Plan) -> None:
    published = {
        (cp.name, name): svc.get("ports", [])
        for cp in rendered.components
        for name, svc in stack_of(rendered, cp.name)["services"].items()
    }
    assert {k for k, ports in published.items() if ports} == {("webserver", "door")}
    ports = published[("webserver", "door")]
    assert [(p["target"], p["published"], p["mode"]) for p in ports] == [(80, 80, "host"), (443, 443, "host")]


def test_every_long_running_service_is_dnsrr_with_a_health_check_and_limits(rendered: plan.Plan) -> None:
    for cp in rendered.components:
        for name, svc in stack_of(rendered, cp.name)["services"].items():
            deploy = svc["deploy"]
            if deploy.get("mode") == "replicated-job":
                continue
            assert deploy["endpoint_mode"] == "dnsrr", name
            assert "healthcheck" in svc, name
            assert deploy["update_config"]["failure_action"] == "rollback", name
            assert "limits" in deploy["resources"], name


def test_db_connect_rolls_start_first_and_postgres_stop_first(rendered: plan.Plan) -> None:
    assert stack_of(rendered, "db_connect")["services"]["api"]["deploy"]["update_config"]["order"] == "start-first"
    assert stack_of(rendered, "postgres")["services"]["server"]["deploy"]["update_config"]["order"] == "stop-first"


def test_secrets_are_external_references_and_no_value_is_rendered(rendered: plan.Plan) -> None:
    for cp in rendered.components:
        declared = stack_of(rendered, cp.name).get("secrets", {})
        assert all(spec == {"external": True} for spec in declared.values())
        assert set(cp.secrets) <= set(declared) | {rendered.tls.key_secret}
    postgres = stack_of(rendered, "postgres")["services"]["init"]
    assert postgres["environment"]["SAWMILL_SERVICES"] == "db_connect kafka presto airflow bi"
    assert postgres["environment"]["SAWMILL_WAREHOUSE_READERS"] == "db_connect bi"
    assert postgres["environment"]["SAWMILL_WAREHOUSE_WRITERS"] == "kafka airflow"
    assert postgres["environment"]["SAWMILL_AUTHENTICATORS"] == "db_connect:api_anon,api_reader,api_writer"
    # grants live with Postgres: adding a reader re-renders no other stack
    scheduler = stack_of(rendered, "airflow")["services"]["scheduler"]
    assert not [key for key in scheduler["environment"] if "READERS" in key]


def test_postgres_is_pinned_to_the_node_holding_its_volume(rendered: plan.Plan) -> None:
    server = stack_of(rendered, "postgres")["services"]["server"]
    assert server["deploy"]["placement"]["constraints"] == ["node.labels.sawmill.postgres == true"]
    assert "data:/var/lib/postgresql/data" in server["volumes"]


def test_every_pinned_service_is_constrained_to_a_label_its_component_pins(isolated_env: Path) -> None:
    """`up` places exactly the labels a component declares; a constraint on any other would never be met."""
    settings = load_settings(kafka={"brokers": 3})
    the_plan = plan.make_plan(settings)
    for cp in the_plan.components:
        pins = components.known()[cp.name].pins
        declared = {
            f"node.labels.{names.node_label('sawmill', pin)} == true" for pin in (pins(settings) if pins else ())
        }
        constrained = {
            constraint
            for service in stack_of(the_plan, cp.name)["services"].values()
            for constraint in service.get("deploy", {}).get("placement", {}).get("constraints", [])
            if constraint.startswith("node.labels.")
        }
        assert constrained == declared, cp.name
    brokers = stack_of(the_plan, "kafka")["services"]
    assert [brokers[f"broker-{i}"]["deploy"]["placement"]["constraints"] for i in range(3)] == [
        [f"node.labels.sawmill.kafka-broker-{i} == true"] for i in range(3)
    ]


def test_the_door_and_nginx_run_on_the_node_labelled_as_the_entrance(rendered: plan.Plan) -> None:
    """Where the domain's DNS points: on several nodes, a door elsewhere would leave the platform unreachable."""
    services = stack_of(rendered, "webserver")["services"]
    door, nginx = services["door"], services["nginx"]
    assert door["deploy"]["placement"]["constraints"] == ["node.labels.sawmill.webserver == true"]
    assert {p["mode"] for p in door["ports"]} == {"host"}
    assert nginx["deploy"]["placement"] == door["deploy"]["placement"]  # TLS never crosses to another node


def test_nginx_has_one_server_per_subdomain_and_refuses_unknown_hosts(rendered: plan.Plan) -> None:
    conf = rendered.component("webserver").files["nginx.conf"]
    assert "server_name api.localhost;" in conf
    assert "server_name localhost;" in conf
    assert "ssl_reject_handshake on;" in conf
    assert "return 444;" in conf
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert 'Strict-Transport-Security "max-age=63072000" always' in conf
    assert "resolver 127.0.0.11 valid=1s ipv6=off;" in conf
    assert "set $backend sawmill_db_connect_api:8000;" in conf
    assert "location /.well-known/acme-challenge/" in conf
    assert "return 301 https://$host$request_uri;" in conf


def test_redirect_keeps_a_non_default_https_port(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAWMILL_HTTPS_PORT", "18443")
    conf = plan.make_plan(load_settings()).component("webserver").files["nginx.conf"]
    assert "return 301 https://$host:18443$request_uri;" in conf


def test_the_api_host_streams_bodies_and_nginx_refuses_in_the_apis_json(rendered: plan.Plan) -> None:
    conf = rendered.component("webserver").files["nginx.conf"]
    named = [block for block in conf.split("    server {") if "listen 443" in block and "server_name" in block]
    blocks = {block.split("server_name ", 1)[1].split(";")[0]: block for block in named}
    api = blocks["api.localhost"]
    assert "client_max_body_size 0;" in api and "proxy_request_buffering off;" in api
    assert "error_page 414 /_error/uri_too_long;" in api
    assert """return 414 '{"code":"uri_too_long",""" in api
    airflow = blocks["schedule.localhost"]
    assert "proxy_request_buffering" not in airflow and "_error" not in airflow, "other UIs keep nginx's defaults"


def test_landing_page_links_every_service(rendered: plan.Plan) -> None:
    page = rendered.component("webserver").files["index.html"]
    assert 'href="https://api.localhost/"' in page
    assert 'data-health="/health/db_connect"' in page


def test_config_names_change_with_content_so_swarm_rolls_the_service(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = plan.make_plan(load_settings())
    monkeypatch.setenv("SAWMILL_DOMAIN", "data.example.com")
    second = plan.make_plan(load_settings())
    name = stack_of(first, "webserver")["configs"]["nginx_conf"]["name"]
    assert name.startswith("sawmill_webserver_nginx_conf_")
    assert name != stack_of(second, "webserver")["configs"]["nginx_conf"]["name"]
    assert first.component("webserver").digest != second.component("webserver").digest
    assert first.component("postgres").digest == second.component("postgres").digest


def test_the_same_settings_render_the_same_digest(rendered: plan.Plan) -> None:
    again = plan.make_plan(rendered.settings)
    assert [c.digest for c in again.components] == [c.digest for c in rendered.components]


def test_registry_mode_pins_official_images_with_the_same_major_versions(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAWMILL_IMAGES", "registry")
    p = plan.make_plan(load_settings())
    assert stack_of(p, "postgres")["services"]["server"]["image"] == "postgres:15.13-bookworm"
    assert stack_of(p, "webserver")["services"]["nginx"]["image"].startswith("nginx:1.")
    assert stack_of(p, "db_connect")["services"]["api"]["image"].startswith("sawmill/db_connect:")
    dockerfile = (Path(__file__).resolve().parents[2] / "stack/postgres/Dockerfile").read_text()
    assert "postgresql-15" in dockerfile


def test_write_plan_writes_build_dir_and_removes_stale_files(rendered: plan.Plan) -> None:
    directory = rendered.directory("webserver")
    directory.mkdir(parents=True)
    (directory / "stale.conf").write_text("old")
    plan.write_plan(rendered)
    assert sorted(p.name for p in directory.iterdir()) == ["door.conf", "index.html", "nginx.conf", "stack.yml"]


def acme_plan(isolated_env: Path, monkeypatch: pytest.MonkeyPatch, digest: str | None = None) -> plan.Plan:
    """acme mode against a private CA whose root is made now (a bundle, as for pebble)."""
    _, root = certs.new_ca("test CA")
    bundle = isolated_env / "ca.pem"
    bundle.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    settings = {
        "DOMAIN": "example.com",
        "EMAIL": "ops@example.com",
        "CERTIFICATES": "acme",
        "ACME__SERVER": "https://ca.internal/dir",
        "ACME__CA_BUNDLE": str(bundle),
        "ACME__PREFLIGHT_DNS": "dns.internal:53",
        "BUILD_DIR": str(isolated_env / "build"),
    }
    for key, value in settings.items():
        monkeypatch.setenv(f"SAWMILL_{key}", value)
    return plan.make_plan(load_settings(), digest)


def test_acme_mode_adds_one_acme_service_on_the_entrance_manager_that_alone_reaches_the_docker_api(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = acme_plan(isolated_env, monkeypatch)
    services = stack_of(p, "webserver")["services"]
    acme = services["acme"]
    assert acme["deploy"]["replicas"] == 1
    assert acme["deploy"]["placement"]["constraints"] == [
        "node.role == manager",
        "node.labels.sawmill.webserver == true",  # beside its state volume, on a swarm of several managers
    ]
    assert acme["image"].startswith("sawmill/acme:")
    socket = {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}
    assert socket in acme["volumes"] and "acme_state:/var/lib/sawmill-acme" in acme["volumes"]
    assert not any(socket in s.get("volumes", []) for name, s in services.items() if name != "acme")
    env = acme["environment"]
    assert env["SAWMILL_ACME_NAMES"].split(",") == list(p.settings.tls_hosts)
    assert env["SAWMILL_ACME_DIRECTORY"] == "https://ca.internal/dir"
    assert env["SAWMILL_ACME_NGINX_SERVICE"] == "sawmill_webserver_nginx"
    assert env["SAWMILL_ACME_PREFLIGHT_DNS"] == "dns.internal:53"
    assert acme["configs"] == [{"source": "acme_ca", "target": "/etc/sawmill-acme/ca.pem"}]
    assert p.component("webserver").files["acme-ca.pem"] == (isolated_env / "ca.pem").read_text()


def test_acme_mode_proxies_the_challenge_path_to_the_acme_service(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = acme_plan(isolated_env, monkeypatch).component("webserver").files["nginx.conf"]
    location = conf.split("location /.well-known/acme-challenge/ {", 1)[1].split("}", 1)[0]
    assert "set $acme sawmill_webserver_acme:8402;" in location and "proxy_pass http://$acme;" in location
    assert "root /var/www/acme" not in location


def test_the_first_acme_render_is_a_placeholder_and_the_landing_page_says_so(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending = acme_plan(isolated_env, monkeypatch)
    assert "Certificates are pending" in pending.component("webserver").files["index.html"]
    assert pending.tls == certs.tls_names(pending.settings, None)  # the local CA's names: a placeholder
    issued = acme_plan(isolated_env, monkeypatch, digest="0123456789")
    assert "Certificates are pending" not in issued.component("webserver").files["index.html"]
    nginx = stack_of(issued, "webserver")["services"]["nginx"]
    assert nginx["secrets"][0]["source"] == "sawmill_tls_key_0123456789"
    assert stack_of(issued, "webserver")["configs"]["tls_crt"] == {
        "external": True,
        "name": "sawmill_tls_crt_0123456789",
    }


def test_acme_mode_renders_no_key_material(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = acme_plan(isolated_env, monkeypatch)
    plan.write_plan(p)
    for path in (isolated_env / "build").rglob("*"):
        assert not path.is_file() or b"PRIVATE KEY" not in path.read_bytes(), path


def test_other_modes_render_no_acme_service_nor_build_its_image(rendered: plan.Plan) -> None:
    assert "acme" not in stack_of(rendered, "webserver")["services"]
    assert "acme" not in {ref.name for cp in rendered.components for ref in cp.images}
