"""terraform/, checked as far as a machine without DigitalOcean's provider plugin allows: formatting, the
provider-free cloud-init module run for real (init, validate, apply) with its output put through cloud-init's own
schema check, and checkov over the whole tree.

The `terraform` binary comes from no package registry this project reaches; where it is missing, the checks that
need it are skipped with a reason naming them and what to install (and the run's header says so), while the others
still run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import TOOLS
from tests.integration.terraform_support import (
    CLOUD_INIT,
    ROOT,
    TERRAFORM_DIR,
    Run,
    apply_cloud_init,
    needs_terraform,
    terraform_runner,
)

CHECKOV = TOOLS / "checkov" / "bin" / "checkov"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKd3bSCpXtLq0Zm2r7w1o5v3hJ0iQ9Ykq1Z2Xc3Vb4Nm ops@example"
VOLUME_DEVICE = "/dev/disk/by-id/scsi-0DO_Volume_sawmill-data"


@pytest.fixture
def terraform(tmp_path: Path) -> Run:
    return terraform_runner(tmp_path)


@pytest.fixture(scope="module")
def cloud_init_schema() -> Callable[[Path], subprocess.CompletedProcess[str]]:
    """cloud-init's own schema check (Debian's package; scripts/test.sh installs it)."""
    binary = shutil.which("cloud-init")
    if binary is None:
        pytest.fail(
            "cloud-init is not installed: `apt-get install --no-install-recommends cloud-init` (scripts/test.sh does)"
        )

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=60, check=False
        )

    return check


@needs_terraform
def test_every_terraform_file_is_formatted(terraform: Run) -> None:
    terraform("fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR), cwd=ROOT)


@needs_terraform
@pytest.mark.parametrize("data_device", ["", VOLUME_DEVICE], ids=["plain-node", "data-node"])
def test_the_cloud_init_module_renders_user_data_that_cloud_init_accepts(
    terraform: Run,
    cloud_init_schema: Callable[[Path], subprocess.CompletedProcess[str]],
    tmp_path: Path,
    data_device: str,
) -> None:
    user_data = apply_cloud_init(terraform, tmp_path, {"ssh_authorized_keys": [PUBLIC_KEY], "data_device": data_device})
    path = tmp_path / "user-data.yaml"
    path.write_text(user_data)

    checked = cloud_init_schema(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Valid cloud-config" in checked.stdout

    assert user_data.startswith("#cloud-config\n")
    config = yaml.safe_load(user_data)
    assert "docker.io" in config["packages"]
    assert config["users"] == [
        {"name": "deploy", "shell": "/bin/bash", "lock_passwd": True, "ssh_authorized_keys": [PUBLIC_KEY]}
    ]
    assert ["usermod", "--append", "--groups", "docker", "deploy"] in config["runcmd"]
    assert config["ssh_pwauth"] is False and config["disable_root"] is True
    if data_device:
        assert config["mounts"] == [
            [data_device, "/var/lib/docker/volumes", "ext4", "defaults,nofail,discard,noatime", "0", "2"]
        ]
    else:
        assert "mounts" not in config


@needs_terraform
def test_the_cloud_init_module_refuses_a_private_key(terraform: Run, tmp_path: Path) -> None:
    """The mistake it guards against: pasting the private half of a key made just now."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    work = tmp_path / "cloud-init"
    shutil.copytree(CLOUD_INIT, work)
    (work / "test.auto.tfvars.json").write_text(json.dumps({"ssh_authorized_keys": [key.read_text()]}))
    terraform("init", "-backend=false", cwd=work)
    refused = terraform("plan", cwd=work, check=False)
    assert refused.returncode != 0
    assert "never a private key" in refused.stderr


def test_cloud_inits_schema_check_refuses_a_broken_document(
    cloud_init_schema: Callable[[Path], subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """The check the module's output passes is one that can fail: an unknown user key is an error."""
    path = tmp_path / "broken.yaml"
    path.write_text("#cloud-config\nusers:\n  - name: deploy\n    ssh_keys_typo: [x]\n")
    checked = cloud_init_schema(path)
    assert checked.returncode != 0
    assert "users.0" in checked.stdout + checked.stderr


def _checkov(folder: Path) -> list[dict[str, Any]]:
    """checkov's reports on a folder, offline (no policy download, no version check)."""
    if not CHECKOV.exists():
        pytest.fail(
            f"checkov is not installed at {CHECKOV}: run scripts/test.sh, or `python3 -m venv {TOOLS}/checkov && "
            f"{TOOLS}/checkov/bin/pip install -r requirements-checkov.txt`"
        )
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    result = subprocess.run(
        [str(CHECKOV), "-d", str(folder), "--framework", "terraform", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    parsed = json.loads(result.stdout)
    reports = parsed if isinstance(parsed, list) else [parsed]
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    return reports


def _check_ids(reports: list[dict[str, Any]], outcome: str) -> set[str]:
    return {c["check_id"] for r in reports for c in r["results"][f"{outcome}_checks"]}


def test_checkov_finds_no_failure_and_every_skip_says_why_and_is_still_needed(tmp_path: Path) -> None:
    reports = _checkov(TERRAFORM_DIR)
    failed = [
        f"{c['check_id']} {c['check_name']} at {c['resource']}" for r in reports for c in r["results"]["failed_checks"]
    ]
    assert failed == []
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    assert [c["check_id"] for c in skipped if not (c["check_result"].get("suppress_comment") or "").strip()] == []
    # it read the module: the droplets' SSH keys and the firewall were checked
    assert {"CKV_DIO_2", "CKV_DIO_4"} <= _check_ids(reports, "passed") | _check_ids(reports, "skipped")

    # without the skip comments, exactly the skipped checks fail: none is stale, none hides another
    unskipped = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, unskipped, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    for path in unskipped.rglob("*.tf"):
        path.write_text(re.sub(r"^\s*#checkov:skip=.*\n", "", path.read_text(), flags=re.MULTILINE))
    assert _check_ids(_checkov(unskipped), "failed") == {c["check_id"] for c in skipped}
