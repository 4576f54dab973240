"""The command line refuses what it cannot do before it touches anything, and says what to do instead."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from stack import cli, plan, teardown
from stack.config import ConfigError, load_settings
from tests.unit.fake_swarm import FakeSwarm


def touching_nothing(*_: object, **__: object) -> None:
    raise AssertionError("nothing may be removed")


def test_down_of_named_components_with_purge_is_refused_before_anything_is_removed(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(teardown, "down", touching_nothing)
    monkeypatch.setattr(teardown, "purge", touching_nothing)
    assert cli.main(["down", "postgres", "--purge"]) == 2
    assert "--purge removes the whole platform" in capsys.readouterr().err


def test_a_component_taken_out_of_the_config_can_still_be_taken_down(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    removed: list[list[str]] = []
    monkeypatch.setattr(cli, "connect", FakeSwarm)
    monkeypatch.setattr(teardown, "down", lambda _swarm, _settings, selected, **_: removed.append(selected) or [])
    monkeypatch.setenv("SAWMILL_COMPONENTS", "postgres,db_connect")
    assert cli.main(["down", "kafka"]) == 0
    assert removed == [["kafka"]]


def test_down_volumes_on_several_nodes_without_the_hosts_list_is_refused_before_anything_is_removed(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    swarm = FakeSwarm()
    swarm.add_nodes(2)
    monkeypatch.setattr(cli, "connect", lambda: swarm)
    monkeypatch.setattr(teardown, "down", touching_nothing)
    monkeypatch.setattr(teardown, "purge", touching_nothing)
    for flag in ("--volumes", "--purge"):
        assert cli.main(["down", flag]) == 2
        assert "this swarm has 3 nodes" in capsys.readouterr().err
    assert swarm.calls == []


def test_the_purge_help_says_it_deletes_the_data(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["down", "--help"])
    assert "data volumes too" in capsys.readouterr().out


def test_a_build_dir_holding_other_files_is_refused_before_rendering_deletes_any(isolated_env: Path) -> None:
    (isolated_env / "db_connect").mkdir()
    (isolated_env / "db_connect" / "app.py").write_text("precious")
    (isolated_env / "README.md").write_text("precious")
    with pytest.raises(ConfigError, match=r"build_dir \(env SAWMILL_BUILD_DIR\): .* holds files Sawmill did not write"):
        plan.make_plan(load_settings(build_dir=isolated_env))
    assert (isolated_env / "db_connect" / "app.py").read_text() == "precious"


def test_a_build_dir_that_is_a_file_or_cannot_be_made_is_named(isolated_env: Path) -> None:
    (isolated_env / "a-file").write_text("")
    with pytest.raises(ConfigError, match=r"build_dir .*is a file"):
        plan.make_plan(load_settings(build_dir=isolated_env / "a-file"))
    with pytest.raises(ConfigError, match=r"build_dir .*cannot create"):
        plan.make_plan(load_settings(build_dir=isolated_env / "a-file" / "below"))


def test_a_build_dir_sawmill_wrote_is_rendered_again(isolated_env: Path) -> None:
    first = plan.make_plan(load_settings())
    plan.write_plan(first)
    (isolated_env / "build" / "ca.crt").write_text("a CA")
    plan.write_plan(plan.make_plan(load_settings()))
    assert (isolated_env / "build" / "webserver" / "nginx.conf").is_file()


def test_status_json_into_a_closed_pipe_ends_quietly(isolated_env: Path) -> None:
    """`deploy.py status --json | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    root = str(Path(__file__).resolve().parents[2])
    script = (
        f"import sys, time; sys.path.insert(0, {root!r})\n"
        "from stack import cli\nfrom tests.unit.fake_swarm import FakeSwarm\n"
        "cli.connect = FakeSwarm\ntime.sleep(0.5)\nraise SystemExit(cli.main(['status', '--json']))\n"
    )
    reader = "true"  # gone before anything is written
    done = subprocess.run(
        f"{sys.executable} -c {shlex.quote(script)} | {reader}; echo ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        cwd=isolated_env,
    )
    assert "BrokenPipeError" not in done.stderr
    assert done.stdout.strip() == "0"


def test_a_secret_is_printed_with_a_newline(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    swarm = FakeSwarm(images={"unused"})
    swarm.secret_values["sawmill_db_connect_api_key"] = b"abc"
    monkeypatch.setattr(cli, "connect", lambda: swarm)
    monkeypatch.setattr(cli.images, "ensure", lambda *_: None)
    assert cli.main(["secrets", "show", "db_connect_api_key"]) == 0
    assert capsys.readouterr().out == "abc\n"


def test_ctrl_c_during_up_releases_the_lock_and_says_how_to_finish(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    swarm = FakeSwarm()
    monkeypatch.setattr(cli, "connect", lambda: swarm)

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.apply, "apply", interrupted)
    assert cli.main(["up"]) == 130
    said = capsys.readouterr().err
    assert "Traceback" not in said and "interrupted" in said and "`deploy.py up` again" in said
    assert not swarm.configs({"sawmill.lock": "1"}), "the deploy lock is left behind"
