"""bi's declaration and rendered stack: the engine follows the settings, secrets are only Docker secrets, and the
images a component declares but does not use for these settings are neither planned nor built."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bi.component import COMPONENT, METABASE_IMAGE, engine
from stack import plan
from stack.component import Image
from stack.config import ConfigError, load_settings


def bi_plan(**overrides: object) -> plan.ComponentPlan:
    return plan.make_plan(load_settings(**overrides)).component("bi")


def services(cp: plan.ComponentPlan) -> dict:
    return yaml.safe_load(cp.files["stack.yml"])["services"]


def test_the_engine_follows_the_image_mode_unless_named(isolated_env: Path) -> None:
    assert engine(load_settings()) == "superset"
    assert engine(load_settings(images="registry")) == "metabase"
    assert engine(load_settings(images="registry", bi={"engine": "superset"})) == "superset"


def test_an_unknown_engine_is_a_config_error_naming_the_key_and_the_fix(isolated_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"bi\.engine.*'tableau' is not a BI engine.*bi\.engine = 'superset'"):
        load_settings(bi={"engine": "tableau"})


def test_superset_runs_the_locally_built_image_with_an_idempotent_setup_job(isolated_env: Path) -> None:
    cp = bi_plan()
    assert [ref.name for ref in cp.images] == ["bi"]
    assert cp.images[0].ref is not None and cp.images[0].ref.startswith("sawmill/bi:")
    web, init = services(cp)["web"], services(cp)["init"]
    assert web["image"] == init["image"] == cp.images[0].ref
    assert (web["command"], init["command"]) == (["serve"], ["setup"])
    assert init["deploy"]["mode"] == "replicated-job"
    assert "127.0.0.1:8088/api/health" in " ".join(web["healthcheck"]["test"])
    assert web["deploy"]["endpoint_mode"] == "dnsrr"
    assert {s["target"] for s in init["secrets"]} == {"bi_db_password", "bi_secret_key", "bi_admin_password"}


def test_superset_can_be_picked_in_registry_mode_and_the_template_agrees_with_the_declaration(
    isolated_env: Path,
) -> None:
    settings = load_settings(images="registry", bi={"engine": "superset"})
    cp = plan.make_plan(settings).component("bi")
    assert engine(settings) == "superset"
    assert services(cp)["web"]["command"] == ["serve"]
    assert [ref.name for ref in cp.images] == ["bi"] and cp.images[0].ref.startswith("sawmill/bi:")


def test_the_entrance_routes_bi_with_its_own_headers_and_health_path(isolated_env: Path) -> None:
    whole = plan.make_plan(load_settings())
    nginx = whole.component("webserver").files["nginx.conf"]
    server = nginx[nginx.index("server_name bi.localhost;") :]
    server = server[: server.index("location /")]
    assert "proxy_set_header X-Forwarded-Proto https;" in server
    assert "proxy_set_header Connection $connection_upgrade;" in server
    assert "sawmill_bi_web:8088/api/health" in nginx


def test_presto_is_a_data_source_only_where_presto_runs(isolated_env: Path) -> None:
    with_presto = services(bi_plan())["init"]["environment"]
    assert with_presto["SAWMILL_PRESTO_HOST"] == "sawmill_presto_coordinator"
    without = services(bi_plan(components=["postgres", "bi", "webserver"]))["init"]["environment"]
    assert "SAWMILL_PRESTO_HOST" not in without


def test_metabase_runs_its_pinned_image_with_secrets_exported_from_files(isolated_env: Path) -> None:
    cp = bi_plan(images="registry")
    assert cp.images[0].ref == METABASE_IMAGE
    assert cp.images[1].name == "bi_setup" and cp.images[1].ref.startswith("sawmill/bi_setup:")
    web, init = services(cp)["web"], services(cp)["init"]
    assert init["image"] == cp.images[1].ref
    assert init["environment"]["SAWMILL_METABASE_URL"] == "http://sawmill_bi_web:8088"
    assert init["deploy"]["mode"] == "replicated-job"
    assert web["image"] == METABASE_IMAGE
    assert web["entrypoint"] == ["/bin/sh", "/opt/sawmill/entrypoint.sh"]
    assert web["environment"]["MB_DB_PASS_FILE"] == "/run/secrets/bi_db_password"
    assert web["environment"]["MB_JETTY_PORT"] == "8088"
    assert not any(key in web["environment"] for key in ("MB_DB_PASS", "MB_ENCRYPTION_SECRET_KEY"))
    assert "metabase-entrypoint.sh" in cp.files


def test_metabase_in_local_mode_is_left_out_and_said_to_be(isolated_env: Path) -> None:
    whole = plan.make_plan(load_settings(bi={"engine": "metabase"}))
    assert METABASE_IMAGE in [ref.missing_from for ref in whole.unavailable]
    assert "bi" not in [c.name for c in whole.routes]


def test_secrets_reach_services_only_as_mounted_files(isolated_env: Path) -> None:
    for overrides in ({}, {"images": "registry"}):
        cp = bi_plan(**overrides)
        for service in services(cp).values():
            assert {s["target"] for s in service["secrets"]} >= {"bi_db_password"}
            for key in service.get("environment", {}):
                assert not key.endswith(("PASSWORD", "SECRET_KEY", "_PASS")), key


def test_the_default_platform_fits_postgres_connections_with_bi(isolated_env: Path) -> None:
    assert "bi" in load_settings().components
    assert COMPONENT.db_connections is not None and COMPONENT.db_connections(load_settings()) == 6


def test_an_image_used_only_by_other_settings_is_not_planned(isolated_env: Path) -> None:
    settings = load_settings()
    assert Image("x", None).is_used(settings)
    assert not Image("x", None, used=lambda s: s.images == "registry").is_used(settings)
    planned = {ref.name: ref.ref for ref in plan.make_plan(settings).component("bi").images}
    assert planned["bi"] is not None and planned["bi"].startswith("sawmill/bi:")  # not Metabase's, which is unused
