"""Airflow on the platform: a DAG triggered through Airflow's REST API via nginx lands rows in `consumption`,
and the quality DAG it schedules stores its results in `quality`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e
HOST = "schedule.localhost"


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 3) -> Any:
    """Poll `probe` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


def call(platform: Platform, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload = None if body is None else json.dumps(body).encode()
    response = platform.get(HOST, path, method=method, body=payload, headers=headers, timeout=30)
    return response.status, json.loads(response.body or b"null")


@pytest.fixture(scope="module")
def token(platform: Platform) -> str:
    password = platform.deploy("secrets", "show", "airflow_admin_password").stdout.strip()
    status, body = call(platform, "POST", "/auth/token", body={"username": "admin", "password": password})
    assert status == 201, body
    return body["access_token"]


def test_the_api_server_answers_through_nginx_and_refuses_a_wrong_password(platform: Platform) -> None:
    assert platform.get(HOST, "/api/v2/monitor/health").status == 200
    status, _ = call(platform, "POST", "/auth/token", body={"username": "admin", "password": "wrong"})
    assert status == 401


def test_a_triggered_example_run_lands_in_consumption_and_its_quality_results_are_stored(
    platform: Platform, token: str
) -> None:
    wait_for(
        "the dag-processor parsed example_flights",
        lambda: call(platform, "GET", "/api/v2/dags/example_flights", token)[0] == 200,
        180,
    )
    status, run = call(
        platform,
        "POST",
        "/api/v2/dags/example_flights/dagRuns",
        token,
        {"logical_date": "2024-05-01T00:00:00Z", "dag_run_id": "e2e-2024-05-01"},
    )
    assert status == 200, run

    def finished() -> str | None:
        state = call(platform, "GET", "/api/v2/dags/example_flights/dagRuns/e2e-2024-05-01", token)[1]["state"]
        return state if state in ("success", "failed") else None

    assert wait_for("example_flights run finished", finished, 300) == "success"
    assert platform.psql("SELECT count(*) FROM consumption.flights WHERE flight_date = '2024-05-01'").strip() == "499"

    def quality_stored() -> str:
        found = platform.psql("SELECT count(DISTINCT dimension) FROM quality.results WHERE table_name = 'flights'")
        return found.strip() if found.strip() == "6" else ""

    wait_for("data_quality results in quality.results", quality_stored, 300)
    assert platform.psql("SELECT bool_and(passed) FROM quality.latest").strip() == "t"
    latest = platform.api("/quality/latest?table_name=eq.flights&select=dimension,passed")
    assert latest.status == 200, latest.body
    assert {row["dimension"] for row in json.loads(latest.body)} >= {"completeness", "uniqueness"}


def test_the_presto_dag_stores_prestos_summary_of_the_metrics_topic_in_consumption(
    platform: Platform, token: str
) -> None:
    wait_for(
        "the dag-processor parsed presto_host_metrics (defined where Presto runs)",
        lambda: call(platform, "GET", "/api/v2/dags/presto_host_metrics", token)[0] == 200,
        180,
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status, run = call(
        platform,
        "POST",
        "/api/v2/dags/presto_host_metrics/dagRuns",
        token,
        {"logical_date": now, "dag_run_id": "e2e-presto"},
    )
    assert status == 200, run

    def finished() -> str | None:
        state = call(platform, "GET", "/api/v2/dags/presto_host_metrics/dagRuns/e2e-presto", token)[1]["state"]
        return state if state in ("success", "failed") else None

    assert wait_for("presto_host_metrics run finished", finished, 300) == "success"
    # the metrics demo keeps sending samples: the run summarized minutes up to the one it was triggered in
    summary = platform.psql(
        "SELECT bool_and(samples > 0), bool_and(cpu_busy_pct BETWEEN 0 AND 100),"
        f" max(minute) >= timestamp '{now}' - interval '2 minutes' FROM consumption.host_metrics_by_minute"
    )
    assert summary.strip() == "t|t|t"
