"""A real platform on the real local swarm, beside any platform already running there.

The tests use their own prefix and ports, run `deploy.py` exactly as a user does, and remove everything
they created at the end (`down --purge`), checking that nothing with their prefix is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from python_on_whales import docker

from stack import components, http
from stack.swarm import DockerSwarm

ROOT = Path(__file__).resolve().parents[2]
PREFIX = os.environ.get("SAWMILL_E2E_PREFIX", "sawmille2e")
HTTP_PORT = int(os.environ.get("SAWMILL_E2E_HTTP_PORT", "18080"))
HTTPS_PORT = int(os.environ.get("SAWMILL_E2E_HTTPS_PORT", "18443"))


@dataclass
class Platform:
    build_dir: Path
    env: dict[str, str]
    api_key: str = field(default="")
    up_output: str = field(default="")

    @property
    def cafile(self) -> str:
        return str(self.build_dir / "ca.crt")

    def deploy(self, *args: str, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """Run `python deploy.py ARGS` as a user would, with this platform's settings."""
        result = subprocess.run(
            [sys.executable, "deploy.py", *args],
            cwd=ROOT,
            env=self.env | extra_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"deploy.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def get(self, host: str, path: str = "/", **kwargs: object) -> http.Response:
        return http.get(host, HTTPS_PORT, path, cafile=self.cafile, **kwargs)

    def api(self, path: str) -> http.Response:
        return self.get("api.localhost", path, headers={"Authorization": f"Bearer {self.api_key}"})

    def status(self) -> dict:
        return json.loads(self.deploy("status", "--json").stdout)

    @property
    def prefix(self) -> str:
        return self.env["SAWMILL_PREFIX"]

    def psql(self, sql: str) -> str:
        """Run SQL as the superuser inside the Postgres container (local socket, no password)."""
        container = running_container(f"{self.prefix}_postgres_server")
        return docker.execute(container, ["psql", "-U", "postgres", "-d", "warehouse", "-tAc", sql])


def service_versions() -> dict[str, int]:
    """Each of the platform's services with its spec version: unchanged versions mean nothing was updated."""
    return {s.spec.name: s.version.index for s in docker.service.list() if s.spec.name.startswith(f"{PREFIX}_")}


def running_container(service: str) -> str:
    found = docker.container.list(filters=[("label", f"com.docker.swarm.service.name={service}")])
    assert found, f"no running container of {service}"
    return found[0].id


def prefixed_objects(prefix: str = PREFIX) -> list[str]:
    label = {"label": f"sawmill.prefix={prefix}"}
    stack_label = [[("label", f"com.docker.stack.namespace={prefix}_{c}")] for c in components.known()]
    found = DockerSwarm().secrets({"sawmill.prefix": prefix})
    found += [c.spec.name for c in docker.config.list(filters=label)]
    found += [n.name for n in docker.network.list(filters=[("name", f"{prefix}_")])]
    for selector in stack_label:
        found += [s.spec.name for s in docker.service.list(filters=selector)]
        found += [v.name for v in docker.volume.list(filters=selector)]
    found += [k for node in docker.node.list() for k in (node.spec.labels or {}) if k.startswith(f"{prefix}.")]
    return found


@contextmanager
def deployed(build_dir: Path, prefix: str, **settings: str) -> Iterator[Platform]:
    """A platform deployed with `up` from the embedded defaults plus SAWMILL_* settings; purged afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAWMILL_")}
    no_config = build_dir.parent / f"{build_dir.name}.toml"  # empty: a sawmill.toml in the cwd must not count
    no_config.write_text("")
    env |= {"SAWMILL_CONFIG": str(no_config), "SAWMILL_PREFIX": prefix}
    env |= {"SAWMILL_BUILD_DIR": str(build_dir)} | {f"SAWMILL_{k.upper()}": v for k, v in settings.items()}
    p = Platform(build_dir=build_dir, env=env)
    assert not prefixed_objects(prefix), f"leftovers of an earlier run with prefix {prefix}: {prefixed_objects(prefix)}"
    volumes = {v.name for v in docker.volume.list()}
    try:
        up = p.deploy("up")
        p.up_output = up.stdout + up.stderr
        yield p
    finally:
        p.deploy("down", "--purge", check=False)
        assert not prefixed_objects(prefix), f"down --purge left {prefixed_objects(prefix)}"
        # unlabelled too: an image's VOLUME gives every container without a mount there an anonymous volume
        left = sorted({v.name for v in docker.volume.list()} - volumes)
        assert not left, f"down --purge left volumes no label names: {left}"


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    build_dir = tmp_path_factory.mktemp("build")
    # one Presto worker: queries cross containers as they do across nodes (tests/e2e/test_presto.py)
    settings = {"http_port": str(HTTP_PORT), "https_port": str(HTTPS_PORT), "presto__workers": "1"}
    with deployed(build_dir, PREFIX, **settings) as p:
        p.api_key = p.deploy("secrets", "show", "db_connect_api_key").stdout.strip()
        yield p


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end modules that deploy a platform of their own run before the shared one takes the CPUs."""
    here = Path(__file__).parent
    items.sort(key=lambda item: (item.path.is_relative_to(here), not item.get_closest_marker("own_platform")))
