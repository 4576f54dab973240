"""Against a remote swarm (DOCKER_HOST=ssh://...), `up` checks routes where nginx is, not on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stack import cli, verify
from stack.config import load_settings
from stack.swarm import EngineError, RemoteEngine


def test_routes_are_checked_on_the_manager_that_an_ssh_docker_host_names(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert verify.entrance_address(load_settings()) == "127.0.0.1"
    monkeypatch.setenv("DOCKER_HOST", "ssh://root@203.0.113.5:2222")
    assert verify.entrance_address(load_settings()) == "203.0.113.5"
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.9:2376")  # not necessarily where nginx runs: say so instead
    assert verify.entrance_address(load_settings()) == "127.0.0.1"


def test_a_configured_entrance_address_wins(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "ssh://root@203.0.113.5")
    monkeypatch.setenv("SAWMILL_ENTRANCE_ADDRESS", "203.0.113.9")
    assert verify.entrance_address(load_settings()) == "203.0.113.9"


def test_host_option_points_every_docker_call_at_that_engine(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")  # main() sets it; monkeypatch puts it back
    seen: list[str | None] = []
    monkeypatch.setattr(cli, "_lock_status", lambda *_: seen.append(os.environ.get("DOCKER_HOST")) or 0)
    assert cli.main(["--host", "ssh://root@203.0.113.5", "lock", "status"]) == 0
    assert seen == ["ssh://root@203.0.113.5"]


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` on PATH that answers as an engine would, and writes what it was given to `<tmp>/calls`."""
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir()
    script.write_text(
        f"""#!/bin/sh
echo "$*" >> {tmp_path}/calls
case "$*" in
  *" save "*|save*) printf 'layers of %s' "$*" ;;
  *" load "*) cat > {tmp_path}/loaded
    [ -z "$LOAD_FAILS" ] || {{ echo "write: no space left on device" >&2; exit 1; }} ;;
  *"service ls"*) printf 'sawmill/db_connect:1@sha256:abc\\nsawmill/postgres:2\\n' ;;
esac
"""
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    return tmp_path


def test_images_go_from_one_engine_to_another_in_one_stream(fake_docker: Path) -> None:
    RemoteEngine("ssh://deploy@10.0.0.6").load_from(["sawmill/a:1", "sawmill/b:2"], "ssh://deploy@10.0.0.5")
    assert (fake_docker / "loaded").read_text() == "layers of --host ssh://deploy@10.0.0.5 save sawmill/a:1 sawmill/b:2"
    assert "--host ssh://deploy@10.0.0.6 load --quiet" in (fake_docker / "calls").read_text()


def test_a_failed_load_says_where_and_why(fake_docker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOAD_FAILS", "1")
    with pytest.raises(EngineError, match=r"loading on ssh://deploy@10\.0\.0\.6 failed: write: no space left"):
        RemoteEngine("ssh://deploy@10.0.0.6").load_from(["sawmill/a:1"], None)


def test_the_images_services_run_are_read_without_the_digest_swarm_pins(fake_docker: Path) -> None:
    assert RemoteEngine("ssh://deploy@10.0.0.5").service_images("sawmill_") == {
        "sawmill/db_connect:1",
        "sawmill/postgres:2",
    }
    assert "service ls --filter name=sawmill_" in (fake_docker / "calls").read_text()
