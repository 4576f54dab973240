"""BI on the real platform: Superset at bi.localhost through nginx, in Debian's chromium, fed by the live stream.

The flights dashboard reads what the example ETL wrote: tests/e2e/test_airflow.py runs it first (modules run in
name order on the shared platform). Chromium is told to accept the platform's local CA certificate
(`--ignore-certificate-errors`); the certificate itself is checked against that CA by the first test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import HTTPS_PORT, Platform
from tests.integration.bi_browser import logged_in_browser, open_dashboard, save_screenshot

pytestmark = pytest.mark.e2e

HOST = "bi.localhost"
URL = f"https://{HOST}:{HTTPS_PORT}"
CHARTS = 5  # on each starter dashboard


class SupersetApi:
    """Superset's REST API as the admin, through nginx (stack.http: 127.0.0.1, the site named by SNI and Host)."""

    def __init__(self, platform: Platform, password: str) -> None:
        self.platform, self.token, self.cookie = platform, "", ""
        login = {"username": "admin", "password": password, "provider": "db", "refresh": False}
        self.token = self.call("POST", "/api/v1/security/login", login)["access_token"]
        self.csrf = self.call("GET", "/api/v1/security/csrf_token/")["result"]

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Referer": URL}
        if self.token:
            headers |= {"Authorization": f"Bearer {self.token}", "X-CSRFToken": getattr(self, "csrf", "")}
        if self.cookie:
            headers["Cookie"] = self.cookie
        data = None if body is None else json.dumps(body).encode()
        response = self.platform.get(HOST, path, method=method, body=data, headers=headers, timeout=120)
        if "set-cookie" in response.headers:  # the session the CSRF token belongs to
            self.cookie = response.headers["set-cookie"].split(";", 1)[0]
        return {"status": response.status, **json.loads(response.body or b"{}")}

    def databases(self, name: str) -> list[dict[str, Any]]:
        found = self.call("GET", "/api/v1/database/?q=(page_size:100)")
        return [d for d in found["result"] if d["database_name"] == name]

    def sql(self, database_id: int, statement: str) -> dict[str, Any]:
        body = {"database_id": database_id, "sql": statement, "runAsync": False, "schema": "consumption"}
        return self.call("POST", "/api/v1/sqllab/execute/", body)


@pytest.fixture(scope="module")
def admin_password(platform: Platform) -> str:
    return platform.deploy("secrets", "show", "bi_admin_password").stdout.strip()


@pytest.fixture(scope="module")
def browser(platform: Platform, admin_password: str) -> Iterator[Any]:
    with logged_in_browser(URL, admin_password, "--ignore-certificate-errors") as driver:
        yield driver


def test_bi_answers_through_nginx_with_the_platforms_certificate(platform: Platform) -> None:
    health = platform.get(HOST, "/api/health")  # verified against the local CA (build/ca.crt)
    assert (health.status, json.loads(health.body)) == (200, {"status": "ok"})
    assert HOST in platform.get("localhost", "/").body.decode(), "the landing page links to BI"
    policy = platform.get(HOST, "/login/").headers["content-security-policy"]
    assert "default-src 'self'" in policy and "https:" not in policy, "the browser is sent nowhere but the platform"


@pytest.mark.parametrize("slug", ["host-metrics", "flights"])
def test_every_starter_dashboard_renders_data_in_a_real_browser(platform: Platform, browser: Any, slug: str) -> None:
    if slug == "flights":
        flights = int(platform.psql("SELECT count(*) FROM curated.flights").strip() or 0)
        assert flights > 0, "curated.flights is empty: the example ETL (tests/e2e/test_airflow.py) runs first"
    seconds = open_dashboard(browser, URL, slug, CHARTS)
    save_screenshot(browser, f"e2e-bi-{slug}")
    print(f"dashboard {slug} through nginx: every chart drawn after {seconds:.2f} s")


def test_the_live_dashboard_follows_the_stream_without_a_reload(platform: Platform, browser: Any) -> None:
    """Rows the metrics demo sends through Kafka land after the test began; a row written now shows up by itself."""
    from selenium.webdriver.common.by import By

    began = platform.psql("SELECT now()").strip()
    deadline = time.monotonic() + 90
    while int(platform.psql(f"SELECT count(*) FROM raw.host_metrics WHERE ts > '{began}'").strip()) == 0:
        assert time.monotonic() < deadline, "the stream landed no row in raw.host_metrics within 90 s"
        time.sleep(2)
    open_dashboard(browser, URL, "host-metrics", CHARTS)
    columns = "_kafka_key, _kafka_partition, _kafka_offset, _kafka_timestamp, host, ts, cpu_user, mem_available_kb"
    values = "'e2e-fresh', 0, -1, now(), 'e2e-fresh', now(), 50, 3000000"  # as the sink writes a message's row
    platform.psql(f"INSERT INTO raw.host_metrics ({columns}) SELECT {values}")
    try:
        deadline = time.monotonic() + 60  # the dashboard refreshes itself every 10 s
        while "e2e-fresh" not in browser.find_element(By.TAG_NAME, "body").text:
            assert time.monotonic() < deadline, "a row written after the dashboard opened did not appear in 60 s"
            time.sleep(1)
    finally:
        platform.psql("DELETE FROM raw.host_metrics WHERE host = 'e2e-fresh'")


def test_the_warehouse_is_one_read_only_data_source_after_a_second_up(platform: Platform, admin_password: str) -> None:
    platform.deploy("up")
    api = SupersetApi(platform, admin_password)
    (warehouse,) = api.databases("warehouse")
    counted = api.sql(warehouse["id"], "SELECT count(*) AS n FROM consumption.host_metrics")  # the sink's view
    assert counted["data"][0]["n"] > 0, counted
    refused = api.sql(warehouse["id"], "DELETE FROM consumption.host_metrics")
    assert refused["status"] >= 400, refused
    raw = api.sql(warehouse["id"], "SELECT count(*) AS n FROM raw.host_metrics")
    assert "permission denied" in json.dumps(raw), f"raw is not bi's to read: {raw}"
    assert api.sql(warehouse["id"], "SELECT count(*) AS n FROM consumption.host_metrics")["data"][0]["n"] > 0


def test_presto_is_the_second_data_source_and_answers(platform: Platform, admin_password: str) -> None:
    api = SupersetApi(platform, admin_password)
    (presto,) = api.databases("presto")
    counted = api.sql(presto["id"], "SELECT count(*) AS n FROM raw.host_metrics")
    assert counted.get("data") and counted["data"][0]["n"] > 0, counted
