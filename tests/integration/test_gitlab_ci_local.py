"""`.gitlab-ci.yml` run by gitlab-ci-local (no GitLab is reachable from here): which jobs a pipeline on the
default branch, on another branch and on a merge request would run, and the test job run for real with the shell
executor.

The real test job runs `scripts/test.sh`, the whole suite, which would run this test again; here its TEST_COMMAND
is set to a quick subset (ruff and one unit test file). That the default is the README's command is checked in
tests/unit/test_gitlab_ci.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import TOOLS

ROOT = Path(__file__).resolve().parents[2]
GITLAB_CI_LOCAL = TOOLS / "gitlab-ci-local" / "node_modules" / ".bin" / "gitlab-ci-local"
VERSION = "4.60.0"  # the last release that runs on Node 20 (4.75 needs Node 22)

Run = Callable[..., subprocess.CompletedProcess[str]]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository holding this working tree's files (tracked and new, not ignored), on branch main."""
    if shutil.which("rsync") is None:
        pytest.fail("rsync is not installed: gitlab-ci-local's shell executor needs it (`apt-get install rsync`)")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    repo = tmp_path_factory.mktemp("pipeline")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "the working tree")
    return repo


@pytest.fixture(scope="module")
def gitlab_ci_local(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    if not GITLAB_CI_LOCAL.exists():
        pytest.fail(
            f"gitlab-ci-local is not installed at {GITLAB_CI_LOCAL}: run scripts/test.sh, or "
            f"`npm install --prefix {TOOLS}/gitlab-ci-local gitlab-ci-local@{VERSION}` (needs Node 20)"
        )
    home = tmp_path_factory.mktemp("gitlab-ci-local-home")

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(GITLAB_CI_LOCAL), "--home", str(home), "--no-color", *args],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    version = run("--version").stdout.strip()
    assert version == VERSION, f"gitlab-ci-local {version}, not the pinned {VERSION}"
    return run


def _jobs(gitlab_ci_local: Run, *args: str) -> dict[str, str]:
    """Each job's `when` for a pipeline; "never" means the pipeline leaves it out."""
    listed = gitlab_ci_local("--list-json", *args)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    # a warning may precede the JSON on stdout
    start = listed.stdout.index("\n[") + 1 if not listed.stdout.startswith("[") else 0
    jobs: list[dict[str, Any]] = json.loads(listed.stdout[start:])
    return {job["name"]: job["when"] for job in jobs}


def test_a_push_to_the_default_branch_tests_deploys_and_offers_terraform_apply(gitlab_ci_local: Run) -> None:
    jobs = _jobs(gitlab_ci_local, "--variable", "CI_DEFAULT_BRANCH=main", "--variable", "CI_COMMIT_BRANCH=main")
    assert jobs == {"test": "on_success", "plan": "never", "deploy": "on_success", "terraform-apply": "manual"}


def test_a_push_to_another_branch_only_tests(gitlab_ci_local: Run) -> None:
    jobs = _jobs(gitlab_ci_local, "--variable", "CI_DEFAULT_BRANCH=main", "--variable", "CI_COMMIT_BRANCH=feature")
    assert jobs == {"test": "on_success", "plan": "never", "deploy": "never", "terraform-apply": "never"}


def test_a_merge_request_tests_and_plans_but_does_not_deploy(gitlab_ci_local: Run) -> None:
    """GitLab sets no CI_COMMIT_BRANCH in a merge request pipeline, only the merge request's variables."""
    jobs = _jobs(
        gitlab_ci_local,
        "--variable",
        "CI_DEFAULT_BRANCH=main",
        "--variable",
        "CI_PIPELINE_SOURCE=merge_request_event",
        "--variable",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME=feature",
        "--unset-variable",
        "CI_COMMIT_BRANCH",
    )
    assert jobs == {"test": "on_success", "plan": "on_success", "deploy": "never", "terraform-apply": "never"}


def test_the_test_job_runs_with_the_shell_executor(gitlab_ci_local: Run) -> None:
    venv = Path(sys.executable).parent
    command = f"{venv}/ruff check . && {venv}/python -m pytest -q -p no:cacheprovider tests/unit/test_gitlab_ci.py"
    ran = gitlab_ci_local("--force-shell-executor", "--variable", f"TEST_COMMAND={command}", "test", timeout=300)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output
    assert "All checks passed!" in output
    assert "passed" in output and "PASS" in output and "test" in output


def test_a_failing_test_command_fails_the_job(gitlab_ci_local: Run) -> None:
    ran = gitlab_ci_local("--force-shell-executor", "--variable", "TEST_COMMAND=false", "test", timeout=120)
    assert ran.returncode != 0
    assert "FAIL" in ran.stdout + ran.stderr
