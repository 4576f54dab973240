"""The bi image (Superset) against a real Postgres: the setup job, the web server, its REST API and a real browser.

The image is the one the platform deploys (built through stack.images, cached by content digest), run with
`docker run --network host` against a throwaway Postgres cluster on 127.0.0.1 laid out as the platform's init
job lays it out: database `bi` owned by role `bi`, the warehouse with bi as an analyst. Secrets are files
mounted at /run/secrets, as Swarm mounts them. Superset itself never enters the dev virtualenv.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bi.metabase import cards
from bi.metabase import setup as metabase_setup
from parse_sources.quality.results import GRANTS_SQL, SCHEMA_SQL
from stack import components, images
from stack.config import load_settings
from stack.swarm import DockerSwarm
from tests.integration.bi_browser import logged_in_browser, open_dashboard, save_screenshot
from tests.integration.conftest import PostgresServer, free_port, run_init, running_postgres

DASHBOARDS = ("host-metrics", "flights")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Bi:
    image: str
    server: PostgresServer
    secrets_dir: Path
    url: str
    container: str
    first_setup_seconds: float = 0.0

    def env(self) -> dict[str, str]:
        return {
            "SAWMILL_DB_HOST": "127.0.0.1",
            "SAWMILL_DB_PORT": str(self.server.port),
            "SAWMILL_WAREHOUSE_HOST": "127.0.0.1",
            "SAWMILL_WAREHOUSE_PORT": str(self.server.port),
        }

    def docker_argv(self, *extra: str) -> list[str]:
        argv = ["docker", "run", "--network", "host", "-v", f"{self.secrets_dir}:/run/secrets:ro", *extra]
        for key, value in self.env().items():
            argv += ["-e", f"{key}={value}"]
        return argv

    def setup(self) -> subprocess.CompletedProcess[str]:
        """The init job, as the stack runs it (`setup`)."""
        argv = [
            *self.docker_argv("--rm", "--name", f"sawmill-bi-test-setup-{uuid.uuid4().hex[:6]}"),
            self.image,
            "setup",
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)

    def password(self, name: str) -> str:
        return (self.secrets_dir / name).read_text()


def write_secret(folder: Path, name: str, value: str) -> None:
    path = folder / name
    path.write_text(value)
    path.chmod(0o644)  # the image's user (uid 10002) reads it, as Swarm's secret mounts allow


def make_platform_database(server: PostgresServer, password: str) -> None:
    """What the platform's init job makes for bi, and the tables the dashboards read, with recent rows."""
    server.execute(f"CREATE ROLE bi LOGIN PASSWORD '{password}'")
    server.execute("CREATE DATABASE bi OWNER bi")
    result = run_init(server, SAWMILL_INIT_TIMEOUT="10", SAWMILL_WAREHOUSE_READERS="bi")
    assert result.returncode == 0, result.stderr
    with psycopg.connect(server.dsn("warehouse"), autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
        conn.execute(GRANTS_SQL)
        conn.execute(
            "CREATE TABLE raw.host_metrics (host text, ts timestamptz, cpu_user double precision,"
            " cpu_system double precision, cpu_iowait double precision, mem_available_kb bigint,"
            " procs_running bigint, context_switches double precision)"
        )
        conn.execute(
            "INSERT INTO raw.host_metrics SELECT h, now() - make_interval(secs => s * 5), 10 + s % 7, 3, 0.5,"
            " 4000000 - s * 100, 1 + s % 3, 900 FROM unnest(ARRAY['node-1', 'node-2']) h, generate_series(0, 100) s"
        )
        conn.execute(
            "CREATE TABLE curated.flights (flight_id text PRIMARY KEY, flight_date date, carrier text,"
            " flight_number bigint, origin text, destination text, scheduled_departure timestamptz,"
            " departure_delay_min bigint, distance_km bigint, passengers bigint, cancelled boolean)"
        )
        conn.execute(
            "INSERT INTO curated.flights SELECT 'F' || i, DATE '2024-05-01' + i % 5,"
            " (ARRAY['SW','NA','LB','KP'])[1 + i % 4], i, 'OSL', 'BGO',"
            " TIMESTAMPTZ '2024-05-01 06:00+00' + make_interval(hours => i), i % 40, 300, 100 + i, false"
            " FROM generate_series(1, 200) i"
        )
        conn.execute("CREATE VIEW consumption.host_metrics AS SELECT * FROM raw.host_metrics")  # as the sink does
        conn.execute("CREATE VIEW consumption.flights AS SELECT * FROM curated.flights")
        conn.execute(
            "INSERT INTO quality.results (run_id, table_name, dimension, check_name, measured, passed, detail)"
            " VALUES ('r1', 'consumption.flights', 'completeness', 'carrier not null', 0, true, 'ok'),"
            " ('r1', 'consumption.flights', 'validity', 'passengers in range', 2, false, '2 of 200 rows break it')"
        )


def wait_healthy(url: str, container: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with NO_PROXY.open(f"{url}/api/health", timeout=3) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        state = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", container], capture_output=True, text=True
        )
        if state.stdout.strip() != "true":
            logs = subprocess.run(["docker", "logs", "--tail", "40", container], capture_output=True, text=True)
            pytest.fail(f"superset exited: {logs.stdout[-2000:]}{logs.stderr[-2000:]}")
        time.sleep(2)
    pytest.fail(f"superset did not answer {url}/api/health within {timeout} s")


@contextlib.contextmanager
def running_bi(*web_args: str) -> Iterator[Bi]:
    """The bi image built, a throwaway Postgres laid out for it, the setup job run once, the web server healthy
    (`web_args`: more `docker run` options for it, e.g. the platform's workers and CPU limit)."""
    ref = images.ref(
        next(i for i in components.known()["bi"].images if i.context is not None and i.name == "bi"),
        load_settings(images="local"),
    )
    images.ensure(DockerSwarm(), [ref])
    assert ref.ref is not None
    secrets_dir = Path(tempfile.mkdtemp(prefix="sawmill-bi-secrets-"))
    secrets_dir.chmod(0o755)
    db_password = secrets.token_hex(16)
    for name, value in (("bi_db_password", db_password), ("bi_secret_key", secrets.token_hex(32)),
                        ("bi_admin_password", secrets.token_hex(12))):  # fmt: skip
        write_secret(secrets_dir, name, value)
    port = free_port()
    container = f"sawmill-bi-test-web-{uuid.uuid4().hex[:6]}"
    with running_postgres() as server:
        make_platform_database(server, db_password)
        state = Bi(ref.ref, server, secrets_dir, f"http://127.0.0.1:{port}", container)
        started = time.monotonic()
        first = state.setup()
        state.first_setup_seconds = time.monotonic() - started
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        argv = [*state.docker_argv("-d", "--name", container, "-e", f"SAWMILL_BIND=127.0.0.1:{port}", *web_args)]
        argv += [ref.ref, "serve"]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
        try:
            wait_healthy(state.url, container)
            yield state
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60)
            shutil.rmtree(secrets_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def bi() -> Iterator[Bi]:
    with running_bi() as state:
        yield state


class Api:
    """Superset's REST API as a logged-in admin (JWT, plus the session cookie and CSRF token writes need)."""

    def __init__(self, url: str, password: str) -> None:
        self.url = url
        self.cookies = urllib.request.HTTPCookieProcessor()
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), self.cookies)
        login = {"username": "admin", "password": password, "provider": "db", "refresh": False}
        self.token = self.call("POST", "/api/v1/security/login", login, csrf=False)["access_token"]
        self.csrf = self.call("GET", "/api/v1/security/csrf_token/")["result"]

    def call(self, method: str, path: str, body: Any = None, csrf: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Referer": self.url}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        if csrf and method != "GET":
            headers["X-CSRFToken"] = self.csrf
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return {"status": error.code, **json.loads(error.read() or b"{}")}

    def databases(self, name: str) -> list[dict[str, Any]]:
        found = self.call("GET", "/api/v1/database/?q=(page_size:100)")
        assert "result" in found, found
        return [d for d in found["result"] if d["database_name"] == name]

    def sql(self, database_id: int, statement: str) -> dict[str, Any]:
        body = {"database_id": database_id, "sql": statement, "runAsync": False, "schema": "consumption"}
        return self.call("POST", "/api/v1/sqllab/execute/", body)


@pytest.fixture(scope="module")
def api(bi: Bi) -> Api:
    return Api(bi.url, bi.password("bi_admin_password"))


def test_health_answers_at_the_path_both_engines_share(bi: Bi) -> None:
    with NO_PROXY.open(f"{bi.url}/api/health", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}


def test_pages_let_the_browser_load_nothing_from_outside_the_platform(bi: Bi) -> None:
    """Superset's own policy allows Google's fonts, a telemetry pixel and map tiles; the platform's allows itself."""
    with NO_PROXY.open(f"{bi.url}/login/", timeout=10) as response:
        policy = response.headers["Content-Security-Policy"]
    sources = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert sources["default-src"] == ["'self'"]
    allowed = {"'self'", "'none'", "'unsafe-inline'", "'strict-dynamic'", "blob:", "data:"}
    assert {s for v in sources.values() for s in v if not s.startswith("'nonce-")} <= allowed, policy


def test_the_login_pages_event_log_beacon_is_refused_without_a_cookie(bi: Bi) -> None:
    """The login page posts its event log as it is left, beside the login itself. Superset redirected it to the login
    page, setting an anonymous session cookie on the way; landing after the login's answer, that cookie undid the
    login. Now refused (401) with no cookie, with or without the login page's anonymous session."""
    with NO_PROXY.open(f"{bi.url}/login/", timeout=10) as page:
        anonymous = page.headers["Set-Cookie"].split(";")[0]
    for headers in ({}, {"Cookie": anonymous}):
        beacon = urllib.request.Request(
            f"{bi.url}/superset/log/?explode=events", data=b"events=[]", headers=headers, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            NO_PROXY.open(beacon, timeout=10)  # urllib follows a redirect: the old answer would not raise
        assert refused.value.code == 401
        assert "Set-Cookie" not in refused.value.headers, headers


def test_a_second_setup_run_creates_no_duplicate_data_source_or_dashboard(bi: Bi, api: Api) -> None:
    second = bi.setup()
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "user admin exists, password unchanged" in second.stdout
    assert "database warehouse: unchanged" in second.stdout
    for name in ("bi_db_password", "bi_secret_key", "bi_admin_password"):
        assert bi.password(name) not in second.stdout + second.stderr  # the job's log shows no secret either
    assert len(api.databases("warehouse")) == 1
    dashboards = api.call("GET", "/api/v1/dashboard/?q=(page_size:100)")
    assert "result" in dashboards, dashboards
    dashboards = dashboards["result"]
    assert sorted(d["slug"] for d in dashboards) == sorted(DASHBOARDS)
    charts = api.call("GET", "/api/v1/chart/?q=(page_size:100)")["result"]
    assert len(charts) == 10


def test_sql_lab_reads_the_warehouse_and_a_write_is_refused(bi: Bi, api: Api) -> None:
    warehouse = api.databases("warehouse")[0]["id"]
    result = api.sql(warehouse, "SELECT carrier, count(*) AS n FROM consumption.flights GROUP BY 1 ORDER BY 1")
    assert [row["carrier"] for row in result["data"]] == ["KP", "LB", "NA", "SW"]
    refused = api.sql(warehouse, "DELETE FROM consumption.flights")
    assert refused.get("status", 200) >= 400, refused
    assert api.sql(warehouse, "SELECT count(*) AS n FROM consumption.flights")["data"] == [{"n": 200}]


def test_postgres_lets_the_bi_role_read_consumption_and_quality_only(bi: Bi) -> None:
    dsn = bi.server.dsn("warehouse", user="bi", password=bi.password("bi_db_password"))
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM quality.latest").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM consumption.host_metrics").fetchone() == (202,)
        for layer in ("raw.host_metrics", "curated.flights"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT count(*) FROM {layer}")
            conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM consumption.flights")
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE consumption.scratch (a int)")


def test_metabases_translation_of_the_same_dashboards_reads_rows_as_the_bi_role(bi: Bi) -> None:
    """Metabase cannot run here: each card its setup job would create runs on the same tables, as the same role,
    and every column its chart settings name comes back."""
    dsn = bi.server.dsn("warehouse", user="bi", password=bi.password("bi_db_password"))
    translated = [
        card for board in cards.dashboards(metabase_setup.load_specs(metabase_setup.DASHBOARDS)) for card in board.cards
    ]
    assert len(translated) == 10
    with psycopg.connect(dsn) as conn:
        for card in translated:
            cursor = conn.execute(card.sql)
            assert cursor.fetchall(), f"{card.name}: no rows"
            columns = [column.name for column in cursor.description or ()]
            named = card.visualization_settings.get("graph.dimensions", []) + card.visualization_settings.get(
                "graph.metrics", []
            )
            assert set(named) <= set(columns), f"{card.name}: {named} not all in {columns}"


def test_a_rotated_password_reaches_the_data_source_and_the_admin(bi: Bi) -> None:
    new_db, new_admin = secrets.token_hex(16), secrets.token_hex(12)
    bi.server.execute(f"ALTER ROLE bi PASSWORD '{new_db}'")
    write_secret(bi.secrets_dir, "bi_db_password", new_db)
    write_secret(bi.secrets_dir, "bi_admin_password", new_admin)
    rerun = bi.setup()
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "user admin exists, password synced from the secret" in rerun.stdout
    assert "database warehouse: updated (address or password changed)" in rerun.stdout
    # Superset's own metadata connection reads the secret at start: Swarm restarts the service when its secret
    # changes, and so does this test.
    subprocess.run(["docker", "restart", bi.container], check=True, capture_output=True, timeout=120)
    wait_healthy(bi.url, bi.container)
    fresh = Api(bi.url, new_admin)
    warehouse = fresh.databases("warehouse")
    assert len(warehouse) == 1
    assert fresh.sql(warehouse[0]["id"], "SELECT count(*) AS n FROM consumption.flights")["data"] == [{"n": 200}]


def test_no_secret_reaches_the_container_spec_or_its_logs(bi: Bi) -> None:
    spec = subprocess.run(["docker", "inspect", bi.container], capture_output=True, text=True, check=True).stdout
    logs = subprocess.run(["docker", "logs", bi.container], capture_output=True, text=True, check=True)
    for name in ("bi_db_password", "bi_secret_key", "bi_admin_password"):
        value = bi.password(name)
        assert value not in spec
        assert value not in logs.stdout + logs.stderr


@pytest.fixture(scope="module")
def browser(bi: Bi) -> Iterator[Any]:
    with logged_in_browser(bi.url, bi.password("bi_admin_password")) as driver:
        yield driver


@pytest.mark.parametrize(("slug", "charts"), [("host-metrics", 5), ("flights", 5)])
def test_every_starter_dashboard_renders_data_in_a_real_browser(bi: Bi, browser: Any, slug: str, charts: int) -> None:
    seconds = open_dashboard(browser, bi.url, slug, charts)
    save_screenshot(browser, f"bi-{slug}")
    print(f"dashboard {slug}: every chart drawn after {seconds:.2f} s")
    logged = "SELECT count(*) FROM logs WHERE action = 'log' AND json::jsonb ->> 'event_name' = 'load_chart'"
    deadline = time.monotonic() + 30  # the page posts its event log in batches, a second or so after the charts
    while bi.server.execute(logged, dbname="bi")[0][0] == 0:
        assert time.monotonic() < deadline, "a logged-in browser's event log (load_chart) never reached Superset"
        time.sleep(1)


def test_the_live_dashboard_refreshes_itself_and_shows_new_rows(bi: Bi, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    open_dashboard(browser, bi.url, "host-metrics", 5)
    bi.server.execute(
        "INSERT INTO raw.host_metrics SELECT 'node-fresh', now(), 50, 5, 0, 3000000, 2, 1000",
        dbname="warehouse",
    )
    deadline = time.monotonic() + 60  # the dashboard refreshes every 10 s by itself: no reload here
    while time.monotonic() < deadline:
        if "node-fresh" in browser.find_element(By.TAG_NAME, "body").text:
            return
        time.sleep(1)
    pytest.fail("a row written after the dashboard opened did not appear within 60 s")
