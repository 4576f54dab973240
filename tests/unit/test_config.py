"""The configuration: zero-config defaults, overrides, and errors that name the key before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from stack import certs, components
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
        "bi": "bi.localhost",
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


ACME = {"SAWMILL_CERTIFICATES": "acme", "SAWMILL_DOMAIN": "example.com", "SAWMILL_EMAIL": "ops@example.com"}


def acme_settings(monkeypatch: pytest.MonkeyPatch, **acme: str) -> object:
    for key, value in {**ACME, **{f"SAWMILL_ACME__{k.upper()}": v for k, v in acme.items()}}.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def test_acme_defaults_to_lets_encrypt_over_http_01_with_an_ecdsa_key(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = acme_settings(monkeypatch).acme
    assert acme.directory == "https://acme-v02.api.letsencrypt.org/directory"
    assert (acme.challenge, acme.dns_provider, acme.key_type, acme.ca_bundle) == ("http-01", None, "ecdsa", None)


def write_root(path: Path) -> None:
    """A CA root made now (none is kept in the repository), as a private CA's bundle would hold it."""
    path.write_bytes(certs.new_ca("test")[1].public_bytes(serialization.Encoding.PEM))


def test_acme_takes_staging_or_a_private_ca_with_its_bundle(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert acme_settings(monkeypatch, server="staging").acme.directory.startswith("https://acme-staging-v02.")
    root = isolated_env / "root.pem"
    write_root(root)
    acme = acme_settings(monkeypatch, server="https://127.0.0.1:14000/dir", ca_bundle=str(root)).acme
    assert (acme.directory, acme.ca_bundle, acme.public_ca) == ("https://127.0.0.1:14000/dir", root, False)


def dns_01(directory: Path, credentials: str = "dns_cloudflare_api_token = t0ken\n") -> dict[str, str]:
    (directory / "cloudflare.ini").write_text(credentials)
    return {
        "challenge": "dns-01",
        "dns_provider": "cloudflare",
        "dns_credentials_file": str(directory / "cloudflare.ini"),
    }


def test_dns_01_takes_one_of_certbots_dns_plugins_and_its_credentials(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = acme_settings(monkeypatch, **dns_01(isolated_env)).acme
    assert (acme.challenge, acme.dns_provider) == ("dns-01", "cloudflare")
    assert acme.dns_credentials() == {"dns_cloudflare_api_token": "t0ken"}


@pytest.mark.parametrize(
    ("credentials", "named"),
    [
        ("dns_cloudflare_email = ops@example.com\n", "lacks dns_cloudflare_api_token (a file of `key = value` lines"),
        ("; comment\ndns_cloudflare_api_token t0ken\n", "cloudflare.ini: line 2 is not `key = value`"),
        ("dns_cloudflare_api_token =\n", "lacks dns_cloudflare_api_token"),
    ],
)
def test_dns_credentials_that_cannot_work_are_refused_without_echoing_them(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, credentials: str, named: str
) -> None:
    with pytest.raises(ConfigError) as error:
        acme_settings(monkeypatch, **dns_01(isolated_env, credentials))
    assert "acme.dns_credentials_file (env SAWMILL_ACME__DNS_CREDENTIALS_FILE)" in str(error.value)
    assert named in str(error.value)
    assert "t0ken" not in str(error.value) and "ops@example.com" not in str(error.value)


@pytest.mark.parametrize(
    ("acme", "named"),
    [
        (
            {"server": "http://ca.internal/dir"},
            "acme.server (env SAWMILL_ACME__SERVER): an ACME directory is served over https",
        ),
        ({"server": "prod"}, "acme.server (env SAWMILL_ACME__SERVER): 'prod' is not 'production', 'staging' or"),
        ({"ca_bundle": "/nonexistent.pem"}, "acme.ca_bundle (env SAWMILL_ACME__CA_BUNDLE): cannot read"),
        ({"challenge": "dns-01"}, "acme.dns_provider (env SAWMILL_ACME__DNS_PROVIDER): challenge = 'dns-01' needs"),
        (
            {"challenge": "dns-01", "dns_provider": "route53"},
            "acme.dns_credentials_file (env SAWMILL_ACME__DNS_CREDENTIALS_FILE): dns_provider = 'route53' needs its"
            " credentials, a file of `key = value` lines: aws_access_key_id = ...; aws_secret_access_key = ...",
        ),
        (
            {"dns_credentials_file": "/etc/hostname"},
            "acme.dns_credentials_file (env SAWMILL_ACME__DNS_CREDENTIALS_FILE): only challenge = 'dns-01' uses",
        ),
        (
            {"challenge": "dns-01", "dns_provider": "rfc2136", "dns_credentials_file": "/nonexistent.ini"},
            "acme.dns_credentials_file (env SAWMILL_ACME__DNS_CREDENTIALS_FILE): cannot read /nonexistent.ini",
        ),
        ({"dns_provider": "rfc2136"}, "acme.dns_provider (env SAWMILL_ACME__DNS_PROVIDER): only challenge = 'dns-01'"),
        ({"challenge": "dns-01", "dns_provider": "godaddy"}, "acme.dns_provider (env SAWMILL_ACME__DNS_PROVIDER)"),
        ({"dns_propagation_seconds": "5"}, "acme.dns_propagation_seconds (env SAWMILL_ACME__DNS_PROPAGATION_SECONDS)"),
        ({"challenge": "tls-alpn-01"}, "acme.challenge (env SAWMILL_ACME__CHALLENGE)"),
        ({"key_type": "ed25519"}, "acme.key_type (env SAWMILL_ACME__KEY_TYPE)"),
        ({"directory": "x"}, "acme.directory (env SAWMILL_ACME__DIRECTORY): not a setting here"),
    ],
)
def test_bad_acme_settings_name_the_key_and_the_fix(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, acme: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as error:
        acme_settings(monkeypatch, **acme)
    assert named in str(error.value)


def test_a_ca_bundle_is_refused_for_lets_encrypt_which_is_trusted_already(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = isolated_env / "root.pem"
    write_root(root)
    with pytest.raises(ConfigError, match=r"acme.ca_bundle .*: Let's Encrypt \(staging\) is trusted already"):
        acme_settings(monkeypatch, server="staging", ca_bundle=str(root))
    (isolated_env / "not.pem").write_text("hello")
    with pytest.raises(ConfigError, match=r"acme.ca_bundle .*not.pem holds no PEM certificate"):
        acme_settings(monkeypatch, server="https://127.0.0.1:14000/dir", ca_bundle=str(isolated_env / "not.pem"))


def test_http_01_from_lets_encrypt_needs_nginx_on_port_80(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAWMILL_HTTP_PORT", "8080")
    with pytest.raises(ConfigError, match=r"http_port .*: Let's Encrypt checks HTTP-01 on port 80 only"):
        acme_settings(monkeypatch)
    assert acme_settings(monkeypatch, server="https://127.0.0.1:14000/dir").http_port == 8080  # a private CA may
    assert acme_settings(monkeypatch, **dns_01(isolated_env)).http_port == 8080


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
