"""The engine's decisions, driven against an in-memory swarm: what `up`, `down`, `status` and `plan` create,
update, skip, roll back and report, as data (the e2e tests run the same code on the real swarm)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from stack import apply, certs, cli, components, drift, images, lock, plan, status, teardown
from stack.config import ConfigError, load_settings
from stack.verify import DeployError
from tests.unit.fake_swarm import FakeSwarm

ROOT = Path(__file__).resolve().parents[2]


def no_route_check(_plan: plan.Plan, _changed: list[str]) -> None:
    pass


@pytest.fixture
def swarm(isolated_env: Path) -> FakeSwarm:
    """An empty swarm whose node already has every image (nothing is built in a unit test)."""
    fake = FakeSwarm()
    the_plan = plan.make_plan(load_settings())
    refs = [r for cp in the_plan.components for r in cp.images]
    fake.images |= {r.ref for r in images.with_parents(refs) if r.ref} | {images.BASE_IMAGE}
    return fake


def up(swarm: FakeSwarm, check_routes=no_route_check, **settings: object) -> list[str]:
    the_plan = plan.make_plan(load_settings(**settings))
    return apply.apply(swarm, the_plan, the_plan.settings.components, check_routes, poll_s=0.001)


def test_the_engine_names_no_component() -> None:
    """A component is its folder: its name appears only in its own files, never in the engine's code."""
    upcoming = ["bi", "metabase", "superset"]  # ("registry" is also an images mode)
    names = sorted(components.known()) + upcoming
    pattern = re.compile(r"""["'](""" + "|".join(map(re.escape, names)) + r""")["']""")
    engine = [p for p in (ROOT / "stack").glob("*.py")]
    found = [f"{p.name}: {m.group(0)}" for p in engine for m in pattern.finditer(p.read_text())]
    assert engine and not found


def test_every_component_is_a_folder_with_its_declaration_and_stack_template() -> None:
    for name, component in components.known().items():
        assert (component.folder / "component.py").is_file(), name
        assert (component.folder / "stack.yml.j2").is_file(), name


def test_a_first_up_creates_everything_and_deploys_in_the_waves_requires_gives(swarm: FakeSwarm) -> None:
    changed = up(swarm)
    deployed = swarm.made("deploy_stack")
    assert sorted(changed) == sorted(components.known())
    assert deployed.index("sawmill_postgres") < min(
        deployed.index(f"sawmill_{name}") for name, c in components.known().items() if "postgres" in c.requires
    )
    assert "sawmill_net" in swarm.networks
    assert "sawmill_db_connect_api_key" in swarm.secret_values
    assert any(name.startswith("sawmill_tls_key_") for name in swarm.secret_values)
    assert {f"sawmill_{n}" for n in components.known()} == {
        c.labels["sawmill.component"] and f"sawmill_{c.labels['sawmill.component']}"
        for c in swarm.config_store.values()
        if "sawmill.digest" in c.labels
    }


def test_a_second_up_changes_nothing(swarm: FakeSwarm) -> None:
    up(swarm)
    swarm.calls.clear()
    assert up(swarm) == []
    assert not [c for c in swarm.calls if c[0] not in {"build", "pull"}]


def test_a_changed_setting_redeploys_only_its_component(swarm: FakeSwarm) -> None:
    up(swarm)
    swarm.calls.clear()
    assert up(swarm, db_connect={"replicas": 3}) == ["db_connect"]


def test_a_hand_made_change_is_shown_by_plan_and_put_back_by_up(swarm: FakeSwarm) -> None:
    up(swarm)
    swarm.scale_by_hand("sawmill_db_connect_api", 1)
    the_plan = plan.make_plan(load_settings())
    cp = the_plan.component("db_connect")
    assert drift.differences(cp, swarm.services(cp.stack_name)) == ["api: replicas 1 running, 2 planned"]
    assert up(swarm) == ["db_connect"]
    assert drift.differences(cp, swarm.services(cp.stack_name)) == []


def test_a_failed_update_is_rolled_back_with_everything_this_up_changed(swarm: FakeSwarm) -> None:
    up(swarm)
    first_key = next(n for n in swarm.secret_values if n.startswith("sawmill_tls_key_"))
    records = {c for c in swarm.config_store if "_deployed_" in c}
    swarm.failing.add("api")
    with pytest.raises(DeployError) as error:
        up(swarm, domain="example.test", db_connect={"replicas": 3})
    message = str(error.value)
    assert "service sawmill_db_connect_api failed to converge" in message
    assert "webserver: back on its previous version" in message
    assert "sawmill_webserver_nginx" in swarm.made("rollback")
    assert first_key in swarm.secret_values, "the certificate that serves is kept until a deploy verifies"
    assert {c for c in swarm.config_store if "_deployed_" in c} == records, "nothing is recorded as deployed"


def test_a_route_that_does_not_answer_rolls_back_and_keeps_the_old_certificate(swarm: FakeSwarm) -> None:
    up(swarm)
    keys = {n for n in swarm.secret_values if n.startswith("sawmill_tls_key_")}

    def unreachable(_plan: plan.Plan, _changed: list[str]) -> None:
        raise DeployError("no answer through the entrance:\n  https://api.example.test/: TLSV1_UNRECOGNIZED_NAME")

    with pytest.raises(DeployError, match="webserver: back on its previous version"):
        up(swarm, check_routes=unreachable, domain="example.test")
    assert keys <= set(swarm.secret_values)
    states = {s.short: s.update_state for s in swarm.services("sawmill_webserver")}
    assert states == {"door": None, "nginx": "rollback_completed"}  # the door, unchanged, was left alone


def test_old_certificates_and_configs_go_once_the_new_ones_verified(swarm: FakeSwarm) -> None:
    up(swarm)
    old_key = next(n for n in swarm.secret_values if n.startswith("sawmill_tls_key_"))
    old_conf = next(n for n in swarm.config_store if n.startswith("sawmill_webserver_nginx_conf_"))
    up(swarm, domain="example.test")
    assert old_key not in swarm.secret_values
    assert old_conf not in swarm.config_store
    assert len([n for n in swarm.config_store if n.startswith("sawmill_webserver_nginx_conf_")]) == 1


def test_a_refused_check_stops_before_the_stack_is_deployed(swarm: FakeSwarm) -> None:
    up(swarm)
    swarm.check_refuses = 'nginx: [emerg] unknown directive "bogus"'
    swarm.calls.clear()
    with pytest.raises(DeployError, match=r"refused the rendered nginx.conf:\nnginx: \[emerg\]"):
        up(swarm, domain="example.test")
    assert "sawmill_webserver" not in swarm.made("deploy_stack")


def test_a_memory_limit_no_node_has_is_refused_before_anything_changes(swarm: FakeSwarm) -> None:
    swarm.memory = [1 * 2**30]
    with pytest.raises(DeployError, match=r"memory limit 2.0 GiB is more than any node has \(1.0 GiB\)"):
        up(swarm)
    assert swarm.calls == []


def test_a_swarm_of_several_nodes_without_the_hosts_list_is_refused_before_anything_changes(
    swarm: FakeSwarm,
) -> None:
    swarm.add_nodes(2)
    with pytest.raises(DeployError, match=r"this swarm has 3 nodes.*--hosts hosts.json"):
        up(swarm)
    assert swarm.calls == []


def test_the_images_built_here_are_shipped_to_the_other_nodes_before_any_stack_deploys(swarm: FakeSwarm) -> None:
    swarm.add_nodes(1)
    shipped: list[list[str]] = []
    the_plan = plan.make_plan(load_settings())
    apply.apply(swarm, the_plan, the_plan.settings.components, no_route_check, poll_s=0.001,
                ship=lambda refs: shipped.append((refs, list(swarm.made("deploy_stack")))))  # fmt: skip
    local = {r.ref for cp in the_plan.components for r in cp.images if r.local_build}
    [(refs, deployed_then)] = shipped
    assert set(refs) == local and deployed_then == []
    assert not any(r.startswith(images.BASE_IMAGE) for r in refs)  # parents travel inside their children


ACME = {"domain": "example.com", "email": "ops@example.com", "certificates": "acme", "components": ["webserver"]}


def stack_file(component: str) -> dict:
    """The stack file `up` rendered last (in the isolated working directory's build/)."""
    return yaml.safe_load((Path("build") / component / "stack.yml").read_text())


def up_acme(swarm: FakeSwarm, **settings: object) -> list[str]:
    """`up` as the CLI runs it in acme mode: rendering the pair the ACME service stored last."""
    loaded = load_settings(**(ACME | settings))
    the_plan = plan.make_plan(loaded, certs.current_acme(swarm, loaded.prefix))
    swarm.images |= {r.ref for cp in the_plan.components for r in images.with_parents(list(cp.images)) if r.ref}
    return apply.apply(swarm, the_plan, the_plan.settings.components, no_route_check, poll_s=0.001)


def acme_service_issues(swarm: FakeSwarm, names: tuple[str, ...] = ("example.com",)) -> None:
    """What the ACME service does after a successful order: a labelled pair, then its status."""
    key, ca = certs.new_ca("pebble")
    leaf_key, leaf = certs.issue(names, key, ca)
    chain = leaf.public_bytes(serialization.Encoding.PEM)
    pair = certs.pair_names("sawmill", names, certs.chain_digest(chain))
    labels = {"sawmill.prefix": "sawmill", certs.ACME_LABEL: "certificate"}
    swarm.create_secret(pair.key_secret, certs.key_pem(leaf_key), labels)
    swarm.create_config(pair.crt_config, chain, labels)
    status = certs.AcmeStatus(at="now", ok=True, message="", names=names, issuer="CN=pebble", not_after="2031")
    swarm.create_config(
        f"sawmill_acme_status_{len(swarm.calls)}", status.to_json(), labels | {certs.ACME_LABEL: "status"}
    )


def acme_service_fails(swarm: FakeSwarm, message: str) -> None:
    labels = {"sawmill.prefix": "sawmill", certs.ACME_LABEL: "status"}
    status = certs.AcmeStatus(at="now", ok=False, message=message, names=("example.com",))
    swarm.create_config(f"sawmill_acme_status_{len(swarm.calls)}", status.to_json(), labels)


def test_acme_starts_on_a_placeholder_waits_for_the_first_certificate_then_renders_it(
    swarm: FakeSwarm, capsys: pytest.CaptureFixture[str]
) -> None:
    swarm.on_start["acme"] = lambda: acme_service_issues(swarm)
    up_acme(swarm)
    said = capsys.readouterr().err
    assert "certificate for example.com from CN=pebble" in said
    placeholder = certs.tls_names(load_settings(**ACME), None).key_secret
    assert placeholder in swarm.made("create_secret"), "nginx first starts on a placeholder from the local CA"
    assert placeholder not in swarm.secret_values, "and it goes once the ACME pair serves"
    current = certs.current_acme(swarm, "sawmill")
    assert current is not None
    # a later `up` renders the ACME pair (never rolling a renewal back) and asks the CA nothing
    swarm.calls.clear()
    up_acme(swarm)
    nginx = stack_file("webserver")["services"]["nginx"]
    assert [s["source"] for s in nginx["secrets"]] == [f"sawmill_tls_key_{current}"]
    assert "restart_service" not in {c[0] for c in swarm.calls}
    swarm.calls.clear()
    assert up_acme(swarm) == [], "a no-op `up` stays a no-op"


def test_an_up_after_the_acme_service_renewed_touches_nothing_and_keeps_the_renewal(swarm: FakeSwarm) -> None:
    swarm.on_start["acme"] = lambda: acme_service_issues(swarm)
    up_acme(swarm)
    up_acme(swarm)  # as the CLI does once the first certificate serves: the landing page without "pending"
    acme_service_issues(swarm)  # a renewal: a new pair, and nginx updated to it through the Docker API
    renewed = certs.current_acme(swarm, "sawmill")
    nginx = swarm.stacks["sawmill_webserver"]["sawmill_webserver_nginx"]
    renewed_spec = dataclasses.replace(nginx.spec, secrets=(f"sawmill_tls_key_{renewed}",))
    swarm.stacks["sawmill_webserver"]["sawmill_webserver_nginx"] = dataclasses.replace(nginx, spec=renewed_spec)
    swarm.calls.clear()
    assert up_acme(swarm) == []
    assert "deploy_stack" not in {c[0] for c in swarm.calls}
    assert certs.current_acme(swarm, "sawmill") == renewed


def test_acme_failure_keeps_the_placeholder_serving_and_up_says_why(swarm: FakeSwarm) -> None:
    swarm.on_start["acme"] = lambda: acme_service_fails(swarm, "example.com: does not resolve; add an A record")
    with pytest.raises(DeployError, match=r"could not obtain a certificate:\nexample.com: does not resolve") as e:
        up_acme(swarm)
    assert "placeholder from the local CA" in str(e.value) and "certificates are pending" in str(e.value)
    assert certs.tls_names(load_settings(**ACME), None).key_secret in swarm.secret_values


def test_after_a_failed_attempt_up_asks_the_acme_service_for_a_new_one(swarm: FakeSwarm) -> None:
    swarm.on_start["acme"] = lambda: acme_service_issues(swarm)
    up_acme(swarm)
    serving = certs.current_acme(swarm, "sawmill")
    swarm.on_start["acme"] = lambda: acme_service_fails(swarm, "certbot: connection refused")
    swarm.restart_service("sawmill_webserver_acme")  # its scheduled attempt failed: the CA is down
    with pytest.raises(DeployError, match=r"connection refused\nnginx keeps serving the previous certificate"):
        up_acme(swarm)
    assert swarm.made("restart_service")[-1] == "sawmill_webserver_acme"
    assert certs.current_acme(swarm, "sawmill") == serving


def dns_01(credentials: str) -> dict[str, object]:
    """acme settings for dns-01 through cloudflare, its credentials file in the working directory."""
    Path("cloudflare.ini").write_text(credentials)
    return {"challenge": "dns-01", "dns_provider": "cloudflare", "dns_credentials_file": "cloudflare.ini"}


def test_dns_01_credentials_reach_the_acme_service_only_as_a_secret(swarm: FakeSwarm) -> None:
    swarm.on_start["acme"] = lambda: acme_service_issues(swarm, ("example.com", "*.example.com"))
    up_acme(swarm, acme=dns_01("dns_cloudflare_api_token = t0ken-0f-the-z0ne\n"))
    stored = [name for name in swarm.secret_values if name.startswith("sawmill_acme_dns_")]
    assert len(stored) == 1 and swarm.secret_values[stored[0]] == b"dns_cloudflare_api_token = t0ken-0f-the-z0ne\n"
    service = stack_file("webserver")["services"]["acme"]
    assert service["secrets"] == [{"source": "acme_dns_credentials", "target": "acme-dns-credentials", "mode": 0o400}]
    assert stack_file("webserver")["secrets"]["acme_dns_credentials"] == {"external": True, "name": stored[0]}
    assert service["environment"]["SAWMILL_ACME_NAMES"] == "example.com,*.example.com"
    assert (service["environment"]["SAWMILL_ACME_CHALLENGE"], service["environment"]["SAWMILL_ACME_DNS_PROVIDER"]) == (
        "dns-01",
        "cloudflare",
    )
    rendered = "".join(path.read_text() for path in Path("build").rglob("*") if path.is_file())
    assert "t0ken-0f-the-z0ne" not in rendered
    up_acme(swarm, acme=dns_01("dns_cloudflare_api_token = t0ken-0f-the-z0ne\n"))  # off the placeholder
    assert up_acme(swarm, acme=dns_01("dns_cloudflare_api_token = t0ken-0f-the-z0ne\n")) == [], "the same: a no-op"
    assert [name for name in swarm.secret_values if name.startswith("sawmill_acme_dns_")] == stored


def test_new_dns_credentials_roll_the_acme_service_and_the_old_secret_goes(swarm: FakeSwarm) -> None:
    swarm.on_start["acme"] = lambda: acme_service_issues(swarm, ("example.com", "*.example.com"))
    up_acme(swarm, acme=dns_01("dns_cloudflare_api_token = first\n"))
    up_acme(swarm, acme=dns_01("dns_cloudflare_api_token = first\n"))  # off the placeholder
    first = {name for name in swarm.secret_values if name.startswith("sawmill_acme_dns_")}
    assert up_acme(swarm, acme=dns_01("dns_cloudflare_api_token = rotated\n")) == ["webserver"]
    second = {name for name in swarm.secret_values if name.startswith("sawmill_acme_dns_")}
    assert len(second) == 1 and second != first
    assert swarm.secret_values[second.pop()] == b"dns_cloudflare_api_token = rotated\n"


def test_plan_says_nginx_starts_on_a_placeholder_in_acme_mode(
    swarm: FakeSwarm, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "connect", lambda: swarm)
    for key, value in {"DOMAIN": "example.com", "EMAIL": "ops@example.com", "CERTIFICATES": "acme"}.items():
        monkeypatch.setenv(f"SAWMILL_{key}", value)
    assert cli.main(["plan"]) == 0
    assert "will be a placeholder from the local CA until the ACME service stores" in capsys.readouterr().out
    assert swarm.calls == []


def test_status_shows_the_acme_certificate_and_a_failed_renewal(swarm: FakeSwarm) -> None:
    swarm.on_start["acme"] = lambda: acme_service_issues(swarm, ("example.com", "api.example.com"))
    up_acme(swarm, components=["webserver"])
    acme_service_fails(swarm, "certbot could not obtain a certificate: connection refused")
    lines = "\n".join(status.certificate_lines(swarm, load_settings(**ACME)))
    issuer = r"issuer CN=Sawmill local CA \(pebble\)"
    assert re.search(rf"certificate: example.com, api.example.com; {issuer}; valid until 20", lines)
    assert "FAILED (the certificate above keeps serving)" in lines and "connection refused" in lines


def test_down_goes_in_reverse_deploy_order(swarm: FakeSwarm) -> None:
    up(swarm)
    settings = load_settings()
    teardown.down(swarm, settings, settings.components, volumes=True, poll_s=0.001)
    removed = swarm.made("remove_stack")
    assert removed[-1] == "sawmill_postgres"
    assert swarm.made("remove_volumes") == removed
    assert not [c for c in swarm.config_store if "_deployed_" in c]


def test_status_names_the_nodes_each_service_runs_on_once_the_swarm_has_several(swarm: FakeSwarm) -> None:
    up(swarm)
    assert "NODES" not in status.render(swarm, load_settings())  # one node: nothing to tell apart
    swarm.add_nodes(1)
    header, *lines = status.render(swarm, load_settings()).splitlines()
    assert header.split() == ["COMPONENT", "SERVICE", "REPLICAS", "HEALTH", "NODES", "URL"]
    by_service = {tuple(line.split()[:2]): line.split() for line in lines}
    assert by_service[("db_connect", "api")][4] == "host-0"
    assert by_service[("postgres", "init")][4] == "-"  # a job's tasks have ended


def test_status_gives_the_url_to_the_service_it_reaches_and_says_what_is_not_served(swarm: FakeSwarm) -> None:
    up(swarm)
    rows = {(r.component, r.service): r for r in status.rows(swarm, load_settings(), status.host_names(swarm))}
    assert rows[("db_connect", "api")].url == "https://api.localhost/"
    assert rows[("airflow", "api-server")].url == "https://schedule.localhost/"
    assert rows[("airflow", "scheduler")].url == "-"
    assert rows[("kafka", "broker-0")].url == "-"
    assert plan.addresses(load_settings())["kafka"] == plan.NOT_SERVED
    assert rows[("postgres", "server")].url == plan.INTERNAL
    assert rows[("db_connect", "api")].health == "healthy"
    assert rows[("postgres", "init")].health == "completed"


def test_a_second_up_waits_for_the_lock_then_says_who_holds_it(swarm: FakeSwarm) -> None:
    held_by = r"(?s)holds the lock of platform sawmill: .* \(up\) since .*lock release"
    with lock.held(swarm, "sawmill", "up", wait_s=0):
        with pytest.raises(lock.LockHeld, match=held_by), lock.held(swarm, "sawmill", "up", wait_s=0.05, poll_s=0.01):
            pass
        assert lock.holder(swarm, "sawmill") is not None
    assert lock.holder(swarm, "sawmill") is None


def test_a_stale_lock_is_released_by_hand(
    swarm: FakeSwarm, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "connect", lambda: swarm)
    with lock.held(swarm, "sawmill", "up", wait_s=0):
        assert cli.main(["up", "--lock-wait", "0"]) == 1
        assert "another deploy holds the lock" in capsys.readouterr().err
        assert cli.main(["lock", "release"]) == 0
    assert lock.holder(swarm, "sawmill") is None


def test_requirements_that_cycle_or_are_missing_name_the_components(monkeypatch: pytest.MonkeyPatch) -> None:
    known = dict(components.known())
    monkeypatch.setattr(components, "known", lambda: known)
    from dataclasses import replace

    known["postgres"] = replace(known["postgres"], requires=("db_connect",))
    with pytest.raises(components.ComponentsError, match="postgres, db_connect require each other in a cycle"):
        components.waves(["postgres", "db_connect"])
    with pytest.raises(components.ComponentsError, match="kafka requires postgres"):
        components.waves(["kafka"])


def test_independent_components_share_a_wave() -> None:
    waves = components.waves(list(components.known()))
    assert waves[0] == ["postgres", "webserver"]
    assert set(waves[1]) == {"db_connect", "kafka", "presto", "airflow", "bi"}


def test_the_default_platform_leaves_postgres_room_to_scale_the_api_out(isolated_env: Path) -> None:
    assert load_settings(db_connect={"replicas": 7}).db_connect.replicas == 7  # 76 + 5 x 11 of the 140 offered
    with pytest.raises(ConfigError, match="the components may hold 142 postgres connections"):
        load_settings(db_connect={"replicas": 8})


def test_connections_beyond_what_postgres_offers_are_a_config_error(isolated_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"db_connect \(env SAWMILL_DB_CONNECT\): the components may hold 274"):
        load_settings(db_connect={"replicas": 20})
    assert load_settings(db_connect={"replicas": 20}, postgres={"max_connections": 400}).db_connect.replicas == 20


def test_a_component_command_runs_inside_its_service(
    swarm: FakeSwarm, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    monkeypatch.setattr(cli, "connect", lambda: swarm)
    assert cli.main(["api-keys", "list"]) == 0
    assert ("exec_in", "sawmill_db_connect_api", ("python", "-m", "db_connect", "keys", "list")) in swarm.calls


def test_arguments_that_start_with_an_option_reach_the_command_after_a_double_dash(
    swarm: FakeSwarm, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    monkeypatch.setattr(cli, "connect", lambda: swarm)
    assert cli.main(["api-keys", "--", "--help"]) == 0
    assert ("exec_in", "sawmill_db_connect_api", ("python", "-m", "db_connect", "keys", "--help")) in swarm.calls


def test_plan_says_what_up_would_do_and_changes_nothing(
    swarm: FakeSwarm, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "connect", lambda: swarm)
    assert cli.main(["plan"]) == 0
    assert "db_connect: new (not deployed yet)" in capsys.readouterr().out
    up(swarm)
    swarm.scale_by_hand("sawmill_db_connect_api", 1)
    swarm.calls.clear()
    monkeypatch.setenv("SAWMILL_KAFKA__HEAP_MB", "1024")
    assert cli.main(["plan"]) == 0
    shown = capsys.readouterr().out
    assert "postgres: unchanged" in shown
    assert "db_connect: changed by hand since it was deployed; `up` puts it back:\n  api: replicas 1 running" in shown
    assert "kafka: changes" in shown and "-Xmx1024m" in shown
    assert swarm.calls == []


def test_up_places_each_missing_pin_once_and_then_leaves_the_labels_where_they_are(swarm: FakeSwarm) -> None:
    swarm.add_nodes(2)
    the_plan = plan.make_plan(load_settings(kafka={"brokers": 3}))

    def up_on_three_nodes() -> dict[str, str]:
        """The labels `up` set, each with the node it went on."""
        swarm.calls.clear()
        apply.apply(swarm, the_plan, the_plan.settings.components, no_route_check, poll_s=0.001, ship=lambda _: None)
        return {label: node for kind, *args in swarm.calls if kind == "label_node" for node, label in [args]}

    placed = up_on_three_nodes()
    assert sorted(node for label, node in placed.items() if "kafka-broker" in label) == ["node-0", "node-1", "node-2"]
    assert placed["sawmill.postgres"] == placed["sawmill.webserver"] == "node-0"  # where `up` talks
    assert up_on_three_nodes() == {}
