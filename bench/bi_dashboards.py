"""The starter dashboards' load time in a real browser, and what Superset holds when idle.

Runs the bi image (Superset) on a throwaway Postgres exactly as tests/integration/test_bi_superset.py does, with
the platform's gunicorn workers (`--workers`, default bi.workers's) and its CPU limit (1 CPU, bi/stack.yml.j2).
For each starter dashboard: cold = opened once in a fresh Chromium profile just logged in (nothing cached but
what the login page loaded), warm = opened again in one browser, the reference: p50 of --runs each, their ratio,
and the issue's target (cold <= 3 s). A figure is the page's own clock from the navigation's start until every
chart drew its data (tests/integration/bi_browser.open_dashboard), each open after the page before it stopped
loading; a cold one also says when its first byte and its last chart's data arrived. Also the first setup job's
duration (migrations, permissions, data sources, dashboards) and the web server's idle memory.

`--platform`: the same cold/warm figures through nginx, against the platform `deploy.py up` brought up (its
sawmill.toml; Superset at https://bi.<domain>, the admin password read with `deploy.py secrets show`), loaded
as it is by everything else it runs: what an analyst sees.

    .venv/bin/python bench/bi_dashboards.py [--runs 5] [--workers 1]
    .venv/bin/python bench/bi_dashboards.py --platform [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stack import components
from stack.config import load_settings
from tests.integration.bi_browser import logged_in_browser, open_dashboard, settled
from tests.integration.test_bi_superset import DASHBOARDS, running_bi

ROOT = Path(__file__).resolve().parents[1]
TARGET_COLD_S = 3.0
CHARTS = 5
PLATFORM_CPUS = "1.0"  # bi/stack.yml.j2's limit for Superset's web service
# The open dashboard's own clock (ms since its navigation began): the page's first byte, the last chart data answer.
LOAD_PARTS = """
const data = performance.getEntriesByType("resource").filter((r) => r.name.includes("/api/v1/chart/data"));
return {page: performance.getEntriesByType("navigation")[0].responseStart,
        data: Math.max(...data.map((r) => r.responseEnd))};
"""


def _default_workers() -> int:
    settings = components.known()["bi"].settings
    assert settings is not None
    return settings().workers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=_default_workers(), help="gunicorn workers (bi.workers)")
    parser.add_argument("--platform", action="store_true", help="through nginx, on the platform `up` deployed")
    args = parser.parse_args()
    if args.platform:
        url, password = _platform()
        dashboard_times(url, password, args.runs, "--ignore-certificate-errors")
        return 0
    with running_bi("-e", f"SAWMILL_WORKERS={args.workers}", "--cpus", PLATFORM_CPUS) as bi:
        print(f"first setup job (migrations, init, admin, data sources, dashboards): {bi.first_setup_seconds:.1f} s")
        dashboard_times(bi.url, bi.password("bi_admin_password"), args.runs)
        time.sleep(10)
        memory = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", bi.container],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"superset web server idle ({args.workers} worker(s), 4 threads each, {PLATFORM_CPUS} CPU): {memory}")
    return 0


def dashboard_times(url: str, password: str, runs: int, *flags: str) -> None:
    """Each starter dashboard's cold and warm p50, against the target, and where a cold load's time went."""
    with logged_in_browser(url, password, *flags) as browser:
        for slug in DASHBOARDS:
            cold, parts = [], []
            for _ in range(runs):
                with logged_in_browser(url, password, *flags) as fresh:
                    cold.append(open_dashboard(fresh, url, slug, CHARTS))
                    parts.append(fresh.execute_script(LOAD_PARTS))
            warm = []
            for _ in range(runs):
                settled(browser)  # the previous open's own last requests (its event log) are done
                warm.append(open_dashboard(browser, url, slug, CHARTS))
            cold_p50, warm_p50 = statistics.median(cold), statistics.median(warm)
            verdict = "met" if cold_p50 <= TARGET_COLD_S else "missed"
            page, data = (statistics.median(p[key] for p in parts) / 1000 for key in ("page", "data"))
            print(
                f"{slug}: cold p50 {cold_p50:.2f} s, warm p50 {warm_p50:.2f} s, cold/warm {cold_p50 / warm_p50:.2f}"
                f" (target cold <= {TARGET_COLD_S:.0f} s: {verdict}; load average {os.getloadavg()[0]:.1f})\n"
                f"  cold, p50 of each: the page's first byte {page:.2f} s, the last chart's data {data:.2f} s"
            )


def _platform() -> tuple[str, str]:
    """The deployed platform's BI address and admin password, as `deploy.py` gives them."""
    settings = load_settings()
    secret = subprocess.run([sys.executable, str(ROOT / "deploy.py"), "secrets", "show", "bi_admin_password"],
                            cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    port = "" if settings.https_port == 443 else f":{settings.https_port}"
    return f"https://bi.{settings.domain}{port}", secret.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
