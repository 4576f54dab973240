"""Local images are content-addressed: the same build context gives the same tag, a change a new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack import images


def test_context_digest_follows_the_files_a_build_sends(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    before = images.context_digest(tmp_path)
    (tmp_path / "stack.yml.j2").write_text("not part of the image")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert images.context_digest(tmp_path) == before
    (tmp_path / "app.py").write_text("print('hi')\n")
    assert images.context_digest(tmp_path) != before


def test_build_args_pass_the_hosts_pip_mirror_but_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.invalid/simple")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    args = images.build_args()
    assert args == {"BASE": images.BASE_IMAGE, "PIP_INDEX_URL": "https://mirror.invalid/simple"}
