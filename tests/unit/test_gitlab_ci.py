"""`.gitlab-ci.yml`: valid against GitLab's CI schema (the copy check-jsonschema vendors), and the production jobs
keep their promises: the deploy key and known hosts come from file variables, never from `ssh-keyscan`; deploys
never overlap; terraform apply runs only when someone presses the button."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / ".gitlab-ci.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def _schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.gitlab-ci", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _pipeline() -> dict[str, Any]:
    return yaml.safe_load(PIPELINE.read_text())


def test_the_pipeline_is_valid_against_gitlabs_ci_schema() -> None:
    checked = _schema_check(PIPELINE)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_schema_check_refuses_a_broken_pipeline(tmp_path: Path) -> None:
    broken = tmp_path / ".gitlab-ci.yml"
    broken.write_text(PIPELINE.read_text().replace("when: manual", "when: sometimes", 1))
    assert _schema_check(broken).returncode != 0


def test_the_test_job_runs_the_readmes_test_command() -> None:
    pipeline = _pipeline()
    assert pipeline["variables"]["TEST_COMMAND"] == "scripts/test.sh"
    assert "scripts/test.sh    # run every test" in (ROOT / "README.md").read_text()
    assert pipeline["test"]["script"] == ['eval "$TEST_COMMAND"']


def test_production_jobs_take_the_key_and_known_hosts_from_file_variables_and_never_scan_host_keys() -> None:
    pipeline = _pipeline()
    lines = [
        line
        for job in pipeline.values()
        if isinstance(job, dict)
        for part in ("before_script", "script", "after_script")
        for line in job.get(part, [])
    ]
    assert lines and not [line for line in lines if "ssh-keyscan" in line]
    setup = "\n".join(pipeline[".production"]["before_script"])
    assert 'install -m 600 "$DEPLOY_SSH_KEY"' in setup
    assert 'install -m 600 "$DEPLOY_KNOWN_HOSTS" "$HOME/.ssh/known_hosts"' in setup
    assert "StrictHostKeyChecking yes" in setup
    for job in ("plan", "deploy"):
        assert pipeline[job]["extends"] == ".production"
    assert pipeline[".production"]["variables"]["DOCKER_HOST"] == "$DEPLOY_DOCKER_HOST"


def test_plan_and_deploy_run_deploy_py_against_the_production_environment() -> None:
    pipeline = _pipeline()
    assert ".venv/bin/python deploy.py plan" in pipeline["plan"]["script"]
    assert pipeline["plan"]["environment"] == {"name": "production", "action": "prepare"}
    [up] = [line for line in pipeline["deploy"]["script"] if "deploy.py up" in line]
    assert '--hosts "$DEPLOY_HOSTS"' in up  # a swarm of several nodes gets the built images on each
    assert pipeline["deploy"]["environment"]["name"] == "production"


def test_two_deploys_never_overlap_and_terraform_apply_is_manual() -> None:
    pipeline = _pipeline()
    assert pipeline["deploy"]["resource_group"] == "production"
    apply = pipeline["terraform-apply"]
    assert apply["resource_group"]
    assert [rule["when"] for rule in apply["rules"]] == ["manual"]
    assert "terraform apply -input=false hosts.tfplan" in apply["script"]
