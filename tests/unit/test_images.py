"""Local images are content-addressed: the same build context gives the same tag, a change a new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack import images
from stack.component import Image
from stack.config import Settings


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


def test_an_image_built_on_another_is_built_after_it_and_retagged_when_it_changes(tmp_path: Path) -> None:
    for folder in ("python", "app"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    python = Image("python", tmp_path / "python")
    app = Image("app", tmp_path / "app", parent=python)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    before = images.ref(app, settings)
    assert before.parent is not None and before.base == before.parent.ref
    assert [r.name for r in images.with_parents([before, images.ref(python, settings)])] == ["python", "app"]

    (tmp_path / "python" / "sawmill-pip-install").write_text("#!/bin/sh\n")
    after = images.ref(app, settings)
    assert after.ref != before.ref, "a new parent gives its children new tags, so Swarm rolls them too"
