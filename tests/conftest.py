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
