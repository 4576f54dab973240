"""Terraform run offline on this machine: the provider-free cloud-init module applied for real. Shared by the
checks of terraform/ and by the test that boots a host with the user data it renders (tests/nodes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "terraform"
CLOUD_INIT = TERRAFORM_DIR / "modules" / "cloud-init"

TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(
    TERRAFORM is None,
    reason=(
        "NOT RUN, terraform is not installed: terraform fmt, the cloud-init module's init/validate/apply with "
        "its cloud-init schema check, and its user data booted on a simulated host. Install Terraform >= 1.5 "
        "(HashiCorp's release zip: no registry reached here has it) and put `terraform` on PATH."
    ),
)

Run = Callable[..., subprocess.CompletedProcess[str]]


def terraform_runner(work: Path) -> Run:
    """Runs terraform offline: no version check, no user CLI config, its data directory under `work`."""
    config = work / "terraformrc"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("")
    env = {
        **os.environ,
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_DATA_DIR": str(work / "tf-data"),
    }

    def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert TERRAFORM is not None
        result = subprocess.run(
            [TERRAFORM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if check:
            assert result.returncode == 0, f"terraform {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    return run


def apply_cloud_init(terraform: Run, work: Path, variables: dict[str, Any]) -> str:
    """init, validate and apply a copy of the module (its state stays under `work`); the rendered user data."""
    module = work / "cloud-init"
    shutil.copytree(CLOUD_INIT, module)
    (module / "test.auto.tfvars.json").write_text(json.dumps(variables))
    terraform("init", "-backend=false", cwd=module)
    terraform("validate", cwd=module)
    terraform("apply", "-auto-approve", cwd=module)
    assert (module / "terraform.tfstate").exists()
    return terraform("output", "-raw", "user_data", cwd=module).stdout
