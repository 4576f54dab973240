"""The engine's decisions, driven against an in-memory swarm: what `up`, `down`, `status` and `plan` create,
update, skip, roll back and report, as data (the e2e tests run the same code on the real swarm)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stack import apply, cli, components, drift, images, lock, plan, status, teardown
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


def test_acme_certificates_are_refused_by_up_before_anything_changes(swarm: FakeSwarm) -> None:
    with pytest.raises(DeployError, match=r"certificates = 'acme': .* `up` cannot yet run certbot on the swarm"):
        up(swarm, domain="example.com", email="ops@example.com", certificates="acme")
    assert swarm.calls == []


def test_plan_shows_acme_certificates_as_what_up_cannot_do_yet(
    swarm: FakeSwarm, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "connect", lambda: swarm)
    for key, value in {"DOMAIN": "example.com", "EMAIL": "ops@example.com", "CERTIFICATES": "acme"}.items():
        monkeypatch.setenv(f"SAWMILL_{key}", value)
    assert cli.main(["plan"]) == 0
    assert "will be obtained from the ACME CA, which `up` cannot do yet" in capsys.readouterr().out
    assert swarm.calls == []


def test_down_goes_in_reverse_deploy_order(swarm: FakeSwarm) -> None:
    up(swarm)
    settings = load_settings()
    teardown.down(swarm, settings, settings.components, volumes=True, poll_s=0.001)
    removed = swarm.made("remove_stack")
    assert removed[-1] == "sawmill_postgres"
    assert swarm.made("remove_volumes") == removed
    assert not [c for c in swarm.config_store if "_deployed_" in c]


def test_status_gives_the_url_to_the_service_it_reaches_and_says_what_is_not_served(swarm: FakeSwarm) -> None:
    up(swarm)
    rows = {(r.component, r.service): r for r in status.rows(swarm, load_settings())}
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
    assert set(waves[1]) == {"db_connect", "kafka", "presto", "airflow"}


def test_connections_beyond_what_postgres_offers_are_a_config_error(isolated_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"db_connect \(env SAWMILL_DB_CONNECT\): the components may hold 268"):
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
