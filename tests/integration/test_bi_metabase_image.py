"""The Metabase setup job's image, as `up` builds it in registry mode, run against the in-process fake Metabase
(tests/unit/fake_metabase.py: behaviours cited from Metabase's source). Local mode never builds this image, so
this is where its Dockerfile, its PyYAML and its copy of the starter dashboards are checked. It proves the image
runs the client; not that a live Metabase accepts it (none can run here).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack import components, images
from stack.config import load_settings
from stack.swarm import DockerSwarm
from tests.unit.fake_metabase import FakeMetabase, Served


@pytest.fixture(scope="module")
def setup_image() -> str:
    settings = load_settings(images="registry", components=["postgres", "bi", "webserver"])
    ref = images.ref(next(i for i in components.known()["bi"].images if i.name == "bi_setup"), settings)
    images.ensure(DockerSwarm(), [ref])
    assert ref.ref is not None
    return ref.ref


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "secrets"
    folder.mkdir(mode=0o755)
    for name, value in (("bi_admin_password", "admin-pass-0f-the-test"), ("bi_db_password", "db-pass-0f-the-test")):
        (folder / name).write_text(value)
        (folder / name).chmod(0o644)  # the job runs as nobody, as under Swarm's secret mounts
    yield folder


def run_job(image: str, url: str, secrets_dir: Path) -> subprocess.CompletedProcess[str]:
    argv = ["docker", "run", "--rm", "--network", "host", "-v", f"{secrets_dir}:/run/secrets:ro"]
    argv += ["-e", f"SAWMILL_METABASE_URL={url}", "-e", "SAWMILL_SITE_URL=https://bi.localhost/"]
    argv += ["-e", "SAWMILL_REFRESH_SECONDS=10", "-e", "SAWMILL_SETUP_TIMEOUT=30", image]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_the_image_sets_up_a_fresh_metabase_then_changes_nothing_on_a_second_run(
    setup_image: str, secrets_dir: Path
) -> None:
    fake = FakeMetabase()
    with Served(fake) as served:
        first = run_job(setup_image, served.url, secrets_dir)
        assert first.returncode == 0, first.stdout + first.stderr
        created = [path for method, path in fake.requests if method == "POST"]
        after_first = len(fake.requests)
        second = run_job(setup_image, served.url, secrets_dir)
        assert second.returncode == 0, second.stdout + second.stderr
    assert created.count("/api/card") == 10 and created.count("/api/dashboard") == 2
    assert re.search(r"'Host metrics \(live\)': 5 cards, https://bi\.localhost/dashboard/\d+#refresh=10", first.stdout)
    again = [path for method, path in fake.requests[after_first:] if method == "POST"]
    assert "/api/card" not in again and "/api/dashboard" not in again and "/api/collection" not in again
    assert "admin-pass-0f-the-test" not in first.stdout + first.stderr + second.stdout + second.stderr
