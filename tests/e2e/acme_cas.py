"""A real ACME CA for the tests on the swarm: Debian's pebble (PEBBLE_VA_NOSLEEP=1) in a container on the
platform's own overlay network (the host's binary mounted into the debootstrap base image, so nothing is built
for it), with the DNS server the test gives it; and the platform deployed against it, then removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from python_on_whales import docker

from stack.images import BASE_IMAGE
from tests.e2e.conftest import Platform, prefixed_objects
from tests.integration.acme_servers import listener_certificate

START_S = 30


def container_ip(name: str, network: str) -> str:
    return docker.container.inspect(name).network_settings.networks[network].ip_address


def run_container(
    name: str,
    network: str,
    argv: list[str],
    image: str = BASE_IMAGE,
    volumes: tuple[tuple[str, str, str], ...] = (),
    publish: tuple[int, int] | None = None,
    **env: str,
) -> None:
    """A CA-side container on the platform's network; on the base image it runs a binary of this host."""
    if image == BASE_IMAGE:
        volumes = ((f"/usr/bin/{argv[0]}", f"/usr/bin/{argv[0]}", "ro"), *volumes)
    docker.run(
        image,
        argv,
        name=name,
        detach=True,
        networks=[network],
        publish=[("127.0.0.1:" + str(publish[0]), publish[1])] if publish else [],
        volumes=list(volumes),
        envs=env,
    )


def remove_containers(*names: str) -> None:
    for name in names:
        if docker.container.exists(name):
            docker.container.remove(name, force=True)


@dataclass
class Pebble:
    name: str
    bundle: Path  # trusts pebble's listener
    work: Path
    management_port: int  # published on 127.0.0.1

    @property
    def directory(self) -> str:
        return f"https://{self.name}:14000/dir"

    def root(self) -> bytes:
        """The root pebble made at start, from its management port."""
        context = ssl.create_default_context(cafile=str(self.bundle))
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            return response.read()

    def root_file(self) -> str:
        path = self.work / "pebble-root.pem"
        path.write_bytes(self.root())
        return str(path)

    def orders(self) -> int:
        """Orders pebble has received, counted from its log."""
        return len(re.findall(r"POST /order-plz", docker.container.logs(self.name)))


@contextlib.contextmanager
def pebble(name: str, network: str, work: Path, management_port: int, dns: str) -> Iterator[Pebble]:
    """pebble on `network`, resolving names (and TXT records) through the DNS server at `dns` (ip:port)."""
    bundle, _ = listener_certificate(work, name)
    config = {
        "listenAddress": "0.0.0.0:14000",
        "managementListenAddress": "0.0.0.0:15000",
        "certificate": "/etc/pebble/listener.crt",
        "privateKey": "/etc/pebble/listener.key",
        "httpPort": 80,
        "tlsPort": 5001,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
    (work / "pebble.json").write_text(json.dumps({"pebble": config}))
    (work / "pebble.json").chmod(0o644)
    work.chmod(0o755)
    try:
        run_container(
            name,
            network,
            ["pebble", "-config", "/etc/pebble/pebble.json", "-dnsserver", dns],
            volumes=((str(work), "/etc/pebble", "ro"),),
            publish=(management_port, 15000),
            PEBBLE_VA_NOSLEEP="1",
            PEBBLE_WFE_NONCEREJECT="0",
            PEBBLE_AUTHZREUSE="0",
        )
        ca = Pebble(name, bundle, work, management_port)
        deadline = time.monotonic() + START_S
        while True:
            try:
                ca.root()
                break
            except OSError:
                assert time.monotonic() < deadline, docker.container.logs(name)
                time.sleep(0.5)
        yield ca
    finally:
        remove_containers(name)


def presented_on(port: int, host: str) -> x509.Certificate:
    """The certificate nginx presents on 127.0.0.1:`port` for the server name `host` (not verified)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")


def dns_names(certificate: x509.Certificate) -> list[str]:
    return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )


def acme_env(prefix: str, build_dir: Path, ca: Pebble, **settings: str) -> dict[str, str]:
    """`deploy.py`'s environment for a platform of the webserver alone ordering from `ca`, plus `settings`."""
    no_config = build_dir.parent / f"{prefix}-empty.toml"
    no_config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAWMILL_")}
    return env | {
        "SAWMILL_CONFIG": str(no_config),
        "SAWMILL_PREFIX": prefix,
        "SAWMILL_BUILD_DIR": str(build_dir),
        "SAWMILL_COMPONENTS": "webserver",
        "SAWMILL_EMAIL": "ops@example.com",
        "SAWMILL_CERTIFICATES": "acme",
        "SAWMILL_ACME__SERVER": ca.directory,
        "SAWMILL_ACME__CA_BUNDLE": str(ca.bundle),
        "SAWMILL_ACME__RETRY_SECONDS": "5",
        "SAWMILL_ACME__FIRST_CERTIFICATE_SECONDS": "240",
        **settings,
    }


def tear_down(platform: Platform, prefix: str, *containers: str) -> None:
    """The test's CA containers first (they hold the network `down --purge` removes), then the platform."""
    remove_containers(*containers)
    platform.deploy("down", "--purge", check=False)
    deadline = time.monotonic() + 30  # an overlay network is removed a moment after its last container
    while prefixed_objects(prefix) and time.monotonic() < deadline:
        time.sleep(1)
    assert not prefixed_objects(prefix), f"down --purge left {prefixed_objects(prefix)}"
