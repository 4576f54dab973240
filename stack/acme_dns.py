"""certbot's DNS plugins for DNS-01: which flags and credentials each takes, and a probe that writes and removes a
TXT record through the very plugin certbot will use, so a zone we cannot write fails before the CA is asked.

Credentials reach the plugins only as files in a private temporary directory (0700, files 0600) that is removed
when the run ends; they are never passed on a command line, printed or logged.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import secrets
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certbot.interfaces import Authenticator

PROBE_WAIT_S = 10.0


@dataclass(frozen=True)
class Provider:
    plugin: str  # certbot's authenticator name
    required: tuple[str, ...]  # keys of its credentials
    ini: bool  # credentials as the plugin's INI file (else as an AWS shared-credentials file)


PROVIDERS = {
    "digitalocean": Provider("dns-digitalocean", ("dns_digitalocean_token",), ini=True),
    "cloudflare": Provider("dns-cloudflare", ("dns_cloudflare_api_token",), ini=True),
    "route53": Provider("dns-route53", ("aws_access_key_id", "aws_secret_access_key"), ini=False),
    "rfc2136": Provider(
        "dns-rfc2136",
        ("dns_rfc2136_server", "dns_rfc2136_port", "dns_rfc2136_name", "dns_rfc2136_secret", "dns_rfc2136_algorithm"),
        ini=True,
    ),
}


class DnsProbeError(Exception):
    """The zone cannot be written (or the written record is not served); the message says what to fix."""


@dataclass(frozen=True)
class PluginRun:
    """What certbot needs to run a DNS plugin: its arguments and environment, all pointing into a private dir."""

    args: list[str]
    env: dict[str, str]


def missing_credentials(provider: str, credentials: Mapping[str, str]) -> list[str]:
    return [key for key in PROVIDERS[provider].required if not credentials.get(key)]


def parse_credentials(text: str) -> dict[str, str]:
    """`key = value` lines, as certbot's plugins take them (blank lines and `#`/`;` comments skipped). A bad line
    is named by its number only: its text may be a credential."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        key, equals, value = stripped.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"line {number} is not `key = value`")
        found[key.strip()] = value.strip()
    return found


def credentials_template(provider: str) -> str:
    """What a credentials file for `provider` holds, for error messages."""
    return "; ".join(f"{key} = ..." for key in PROVIDERS[provider].required)


@contextlib.contextmanager
def plugin_run(provider: str, credentials: Mapping[str, str], propagation_s: int | None) -> Iterator[PluginRun]:
    """Write the credentials where only this process can read them, for as long as the block runs."""
    spec = PROVIDERS[provider]
    missing = missing_credentials(provider, credentials)
    if missing:
        raise DnsProbeError(f"the {provider} credentials lack {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="sawmill-acme-") as private:
        os.chmod(private, 0o700)
        path = Path(private) / ("credentials.ini" if spec.ini else "aws-credentials")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            if not spec.ini:
                out.write("[default]\n")
            out.writelines(f"{key} = {value}\n" for key, value in credentials.items())
        args = [f"--authenticator={spec.plugin}"]
        env: dict[str, str] = {}
        if spec.ini:
            args.append(f"--{spec.plugin}-credentials={path}")
            if propagation_s is not None:
                args.append(f"--{spec.plugin}-propagation-seconds={propagation_s}")
        else:  # boto3 reads the shared-credentials file; route53's plugin polls for the change itself
            env = {"AWS_SHARED_CREDENTIALS_FILE": str(path), "AWS_CONFIG_FILE": os.devnull}
        yield PluginRun(args, env)


def probe_zone(provider: str, run: PluginRun, domain: str, credentials: Mapping[str, str]) -> None:
    """Create and delete a random TXT record at _acme-challenge.DOMAIN through the plugin's own perform/cleanup."""
    from acme import challenges, messages
    from certbot import achallenges, errors
    from cryptography.hazmat.primitives.asymmetric import ec
    from josepy import JWKEC

    spec = PROVIDERS[provider]
    challenge = achallenges.KeyAuthorizationAnnotatedChallenge(
        challb=messages.ChallengeBody(chall=challenges.DNS01(token=secrets.token_bytes(32))),
        identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=domain),
        account_key=JWKEC(key=ec.generate_private_key(ec.SECP256R1())),  # a throwaway: nothing is signed
    )
    with _environment(run.env):
        authenticator = _authenticator(spec.plugin, run.args)
        try:
            try:
                authenticator.perform([challenge])
            except errors.Error as exc:
                raise DnsProbeError(f"{spec.plugin} could not write a TXT record for {domain}: {exc}") from None
            value = challenge.validation(challenge.account_key)
            if provider == "rfc2136":
                _wait_served(challenge.validation_domain_name(domain), value, credentials)
        finally:
            with contextlib.suppress(errors.Error):
                authenticator.cleanup([challenge])


def _authenticator(plugin: str, args: list[str]) -> Authenticator:
    """The plugin, configured from the same arguments the certbot run gets."""
    from certbot._internal.display import obj
    from certbot._internal.plugins import disco

    obj.set_display(obj.NoninteractiveDisplay(io.StringIO()))  # the plugins' notices are not ours to print
    entry = disco.PluginsRegistry.find_all()[plugin]
    namespace = argparse.Namespace()
    prefix = plugin.replace("-", "_") + "_"
    for arg in args:
        key, _, value = arg.removeprefix("--").partition("=")
        if key.startswith(plugin + "-"):
            setattr(namespace, prefix + key.removeprefix(plugin + "-").replace("-", "_"), value)
    setattr(namespace, prefix + "propagation_seconds", 0)  # the probe checks the record itself where it can
    authenticator = entry.init(namespace)
    authenticator.prepare()
    return authenticator


def _wait_served(name: str, value: str, credentials: Mapping[str, str]) -> None:
    """RFC 2136: the server that took the update must answer the record, or the CA's resolvers will not."""
    import dns.message
    import dns.query
    import dns.rdatatype

    server, port = credentials["dns_rfc2136_server"], int(credentials["dns_rfc2136_port"])
    deadline = time.monotonic() + PROBE_WAIT_S
    while True:
        answer = dns.query.udp(dns.message.make_query(name, dns.rdatatype.TXT), server, port=port, timeout=2)
        texts = {b"".join(r.strings).decode() for rrset in answer.answer for r in rrset if rrset.rdtype == 16}
        if value in texts:
            return
        if time.monotonic() > deadline:
            raise DnsProbeError(
                f"{server}:{port} took the update of {name} but does not answer it: is it the zone's primary,"
                " and does the TSIG key's update-policy allow TXT records there?"
            )
        time.sleep(0.2)


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
