"""Shared fixtures: settings built in isolation from the developer's own sawmill.toml and environment."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SAWMILL_* variables and an empty working directory, so only what a test sets counts."""
    import os

    for key in list(os.environ):
        if key.startswith("SAWMILL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pytest_report_header() -> str:
    """Say at the top of every run whether the terraform checks can run: no registry here has the binary."""
    import shutil

    if shutil.which("terraform"):
        return f"terraform: {shutil.which('terraform')}"
    return (
        "terraform: NOT INSTALLED — the checks that need it (tests/integration/test_terraform.py: fmt, and the "
        "cloud-init module's init/validate/apply + schema check; tests/nodes/test_user_data.py: its user data booted "
        "on a simulated host) are skipped; install Terraform >= 1.5 to run them"
    )
