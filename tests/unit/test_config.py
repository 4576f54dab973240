"""The configuration: zero-config defaults, overrides, and errors that name the key before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack import components
from stack.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_zero_config_is_the_local_platform(isolated_env: Path) -> None:
    settings = load_settings()
    assert settings.domain == "localhost"
    assert settings.certificates == "local"
    assert settings.images == "local"
    assert settings.components == list(components.known())
    assert settings.hosts == {
        "db_connect": "api.localhost",
        "kafka": "kafka.localhost",
        "airflow": "schedule.localhost",
        "presto": "presto.localhost",
        "webserver": "localhost",
    }
    assert settings.url("api.localhost") == "https://api.localhost/"


def test_toml_file_then_environment_override(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated_env / "sawmill.toml").write_text('domain = "data.example.com"\nhttps_port = 8443\n')
    monkeypatch.setenv("SAWMILL_HTTPS_PORT", "9443")
    monkeypatch.setenv("SAWMILL_DB_CONNECT__REPLICAS", "3")
    settings = load_settings()
    assert settings.domain == "data.example.com"
    assert settings.https_port == 9443
    assert settings.db_connect.replicas == 3
    assert settings.url("api.data.example.com") == "https://api.data.example.com:9443/"


def test_components_accept_a_comma_separated_environment_value(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAWMILL_COMPONENTS", "webserver, postgres")
    assert load_settings().components == ["postgres", "webserver"]  # deploy order, not given order


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("SAWMILL_DOMAIN", "my domain.com", "domain (env SAWMILL_DOMAIN)"),
        ("SAWMILL_COMPONENTS", "postgres,spark", "components (env SAWMILL_COMPONENTS)"),
        ("SAWMILL_EMAIL", "not-an-email", "email (env SAWMILL_EMAIL)"),
        ("SAWMILL_HTTPS_PORT", "70000", "https_port (env SAWMILL_HTTPS_PORT)"),
        ("SAWMILL_PREFIX", "Has-Caps", "prefix (env SAWMILL_PREFIX)"),
        ("SAWMILL_DB_CONNECT__REPLICAS", "0", "db_connect.replicas (env SAWMILL_DB_CONNECT__REPLICAS)"),
        ("SAWMILL_COMPONENTS", "", "components (env SAWMILL_COMPONENTS): name at least one"),
        ("SAWMILL_HTTP_PORT", "443", "https_port (env SAWMILL_HTTPS_PORT): must differ from http_port"),
        ("SAWMILL_IMAGE_OVERRIDES", '{"postgres": "NOT A REF!!"}', "image_overrides.postgres (env SAWMILL_IMAGE_"),
        ("SAWMILL_IMAGE_OVERRIDES", '{"nosuchimage": "x:1"}', "is not an image of the platform"),
        ("SAWMILL_DB_CONNECT__EXPOSED_SCHEMAS", '["Bad Schema;drop"]', "db_connect.exposed_schemas.0"),
        ("SAWMILL_KAFKA__METRICS_INTERVAL", "inf", "kafka.metrics_interval"),
        (
            "SAWMILL_KAFKA__TOPICS",
            '{"t": {"replication_factor": 3}}',
            "kafka.topics.t.replication_factor (env SAWMILL_KAFKA__TOPICS__T__REPLICATION_FACTOR): 3 copies",
        ),
        (
            "SAWMILL_KAFKA__SINKS",
            '[{"topic": "a", "table": "raw.a_b"}, {"topic": "b", "table": "raw_a.b"}]',
            "sink-raw-a-b",
        ),
    ],
)
def test_bad_values_are_rejected_naming_the_key(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert named in str(error.value)


def test_unknown_keys_in_the_file_are_rejected(isolated_env: Path) -> None:
    (isolated_env / "sawmill.toml").write_text('domian = "example.com"\n')
    with pytest.raises(ConfigError, match="domian"):
        load_settings()


def test_a_component_without_what_it_needs_is_rejected(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAWMILL_COMPONENTS", "webserver,db_connect")
    with pytest.raises(ConfigError, match=r"components .*: db_connect requires postgres; add it to components"):
        load_settings()


def test_acme_needs_an_email_and_a_real_domain(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAWMILL_CERTIFICATES", "acme")
    monkeypatch.setenv("SAWMILL_DOMAIN", "example.com")
    with pytest.raises(ConfigError, match="email"):
        load_settings()


def test_the_documented_example_config_is_valid_and_states_the_defaults(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = load_settings()
    monkeypatch.setenv("SAWMILL_CONFIG", str(ROOT / "sawmill.example.toml"))
    assert load_settings() == defaults, "sawmill.example.toml says it shows every default"


def test_acme_is_refused_up_front_until_it_is_built(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAWMILL_CERTIFICATES", "acme")
    monkeypatch.setenv("SAWMILL_DOMAIN", "example.com")
    monkeypatch.setenv("SAWMILL_EMAIL", "ops@example.com")
    with pytest.raises(ConfigError, match="'acme' is not implemented yet"):
        load_settings()


def test_a_config_file_that_is_named_must_exist(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAWMILL_CONFIG", str(isolated_env / "nope.toml"))
    with pytest.raises(ConfigError, match=r"SAWMILL_CONFIG: .*nope.toml is not a file"):
        load_settings()


@pytest.mark.parametrize("content", [b'domain = "a\n', b"\xff\xfe"], ids=["a TOML error", "not UTF-8"])
def test_a_config_file_that_does_not_parse_is_named(isolated_env: Path, content: bytes) -> None:
    (isolated_env / "sawmill.toml").write_bytes(content)
    with pytest.raises(ConfigError, match=r"  sawmill.toml is not valid TOML") as error:
        load_settings()
    assert "env SAWMILL_CONFIG" not in str(error.value)  # the variable is not set: naming it would mislead


def test_a_misspelt_variable_is_pointed_out(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAWMILL_DOMIAN", "example.com")
    monkeypatch.setenv("SAWMILL_VENV", "/opt/venv")  # a script's variable, not a near miss: no warning
    assert load_settings().domain == "localhost"
    warnings = capsys.readouterr().err
    assert "SAWMILL_DOMIAN is not a setting and is ignored; did you mean SAWMILL_DOMAIN?" in warnings
    assert "SAWMILL_VENV" not in warnings


def test_a_misspelt_key_in_the_file_gets_a_suggestion(isolated_env: Path) -> None:
    (isolated_env / "sawmill.toml").write_text('domian = "example.com"\n[db_connect]\nreplica = 3\n')
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "domian (env SAWMILL_DOMIAN): not a setting here; did you mean domain?" in str(error.value)
    assert "db_connect.replica (env SAWMILL_DB_CONNECT__REPLICA): not a setting here; did you mean replicas?" in str(
        error.value
    )


def test_a_list_items_error_names_the_variable_that_can_set_it(isolated_env: Path) -> None:
    (isolated_env / "sawmill.toml").write_text('[[kafka.sinks]]\ntopic = "t"\ntable = "raw.t"\nreplicas = 0\n')
    with pytest.raises(ConfigError, match=r"kafka.sinks.0.replicas \(env SAWMILL_KAFKA__SINKS, a JSON list\)"):
        load_settings()


def test_a_component_named_twice_is_refused(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAWMILL_COMPONENTS", "postgres,db_connect,postgres")
    with pytest.raises(ConfigError, match="postgres listed twice"):
        load_settings()


@pytest.mark.parametrize("domain", ["127.0.0.1", "10.0.0.7"])
def test_an_ip_address_is_no_domain(isolated_env: Path, monkeypatch: pytest.MonkeyPatch, domain: str) -> None:
    monkeypatch.setenv("SAWMILL_DOMAIN", domain)
    with pytest.raises(ConfigError, match=r"domain \(env SAWMILL_DOMAIN\): .* is an IP address"):
        load_settings()


def test_the_swarms_own_ports_cannot_be_published(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAWMILL_HTTPS_PORT", "2377")
    with pytest.raises(ConfigError, match=r"https_port .*: 2377 is the swarm's manager API"):
        load_settings()
