"""The configuration: zero-config defaults, overrides, and errors that name the key before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.components import COMPONENTS
from stack.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_zero_config_is_the_local_platform(isolated_env: Path) -> None:
    settings = load_settings()
    assert settings.domain == "localhost"
    assert settings.certificates == "local"
    assert settings.images == "local"
    assert settings.components == list(COMPONENTS)
    assert settings.subdomains == {
        "db_connect": "api.localhost",
        "kafka": "kafka.localhost",
        "airflow": "schedule.localhost",
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
    with pytest.raises(ConfigError, match="db_connect needs postgres"):
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
