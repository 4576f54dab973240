"""What certbot is asked for, and how DNS credentials are handed to it (tests/integration/test_acme.py runs it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stack import acme, acme_dns

ORDER = acme.Order(names=("example.com", "api.example.com"), email="ops@example.com", directory="https://ca/dir")


def test_http_01_names_every_host_and_dns_01_the_domain_and_its_wildcard() -> None:
    hosts = ("api.example.com", "example.com", "bi.example.com")
    assert acme.names_for("example.com", hosts, "http-01") == ("api.example.com", "bi.example.com", "example.com")
    assert acme.names_for("example.com", hosts, "dns-01") == ("example.com", "*.example.com")


def test_certbot_is_asked_for_one_ecdsa_certificate_with_all_its_state_in_the_callers_directory(
    tmp_path: Path,
) -> None:
    args = acme.certbot_args(ORDER, tmp_path)
    assert args[0] == "certonly"
    assert {"--non-interactive", "--agree-tos", "--keep-until-expiring", "--key-type=ecdsa"} <= set(args)
    assert "--elliptic-curve=secp256r1" in args
    assert [a for a in args if a.startswith("--domain=")] == ["--domain=example.com", "--domain=api.example.com"]
    assert f"--config-dir={tmp_path / 'config'}" in args
    assert f"--work-dir={tmp_path / 'work'}" in args
    assert f"--logs-dir={tmp_path / 'logs'}" in args
    assert "--server=https://ca/dir" in args
    assert "--cert-name=sawmill" in args, "one lineage, so a new set of names replaces the certificate"


def test_rsa_is_asked_for_by_name(tmp_path: Path) -> None:
    args = acme.certbot_args(acme.Order(**{**ORDER.__dict__, "key_type": "rsa"}), tmp_path)
    assert "--key-type=rsa" in args
    assert not any(a.startswith("--elliptic-curve") for a in args)


@pytest.mark.parametrize(
    ("provider", "credentials", "flags"),
    [
        ("digitalocean", {"dns_digitalocean_token": "t0k"}, ["--authenticator=dns-digitalocean"]),
        ("cloudflare", {"dns_cloudflare_api_token": "t0k"}, ["--authenticator=dns-cloudflare"]),
        # values no random temporary directory name can contain (a bare "x" made this test flaky)
        ("rfc2136", {k: f"{k}-v4lue" for k in acme_dns.PROVIDERS["rfc2136"].required}, ["--authenticator=dns-rfc2136"]),
    ],
)
def test_an_ini_plugin_reads_its_credentials_from_a_private_file_that_is_gone_afterwards(
    provider: str, credentials: dict[str, str], flags: list[str]
) -> None:
    plugin = acme_dns.PROVIDERS[provider].plugin
    with acme_dns.plugin_run(provider, credentials, propagation_s=30) as run:
        assert run.args[: len(flags)] == flags
        path = Path(next(a for a in run.args if a.startswith(f"--{plugin}-credentials=")).split("=", 1)[1])
        assert f"--{plugin}-propagation-seconds=30" in run.args
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert os.stat(path.parent).st_mode & 0o777 == 0o700
        assert all(f"{key} = {value}" in path.read_text() for key, value in credentials.items())
        assert not any(value in " ".join(run.args) for value in credentials.values())
    assert not path.parent.exists()


def test_route53_gets_its_keys_as_an_aws_credentials_file_named_in_the_environment() -> None:
    keys = {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "s3cr3t"}
    with acme_dns.plugin_run("route53", keys, propagation_s=None) as run:
        assert run.args == ["--authenticator=dns-route53"]
        path = Path(run.env["AWS_SHARED_CREDENTIALS_FILE"])
        assert path.read_text().startswith("[default]\n")
        assert "aws_secret_access_key = s3cr3t" in path.read_text()
    assert not path.exists()


def test_missing_credentials_are_named_before_anything_is_written() -> None:
    with (
        pytest.raises(acme_dns.DnsProbeError, match="the rfc2136 credentials lack dns_rfc2136_secret"),
        acme_dns.plugin_run("rfc2136", {k: "x" for k in acme_dns.PROVIDERS["rfc2136"].required[:3]}, None),
    ):
        pass


def test_every_provider_the_settings_accept_has_a_plugin_installed() -> None:
    from certbot._internal.plugins import disco

    from stack.config import DNS_PROVIDERS

    installed = disco.PluginsRegistry.find_all()
    assert set(acme_dns.PROVIDERS) == set(DNS_PROVIDERS)
    assert all(spec.plugin in installed for spec in acme_dns.PROVIDERS.values())
