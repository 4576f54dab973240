"""Superset in Debian's chromium (headless, driven by selenium): logging in, and opening a dashboard until every
chart drew its data. Shared by the integration test of the bi image, the end-to-end test on the platform and
bench/bi_dashboards.py."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.browser_namespace import browser_namespace
from tests.integration.conftest import free_port

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1600,1200",
)  # fmt: skip
# What Superset shows instead of a chart when its query failed, returned nothing or its scripts did not load.
ERROR_TEXTS = (
    "Unexpected error", "No results were returned", "Data error", "permission denied", "Traceback", "ChunkLoadError",
)  # fmt: skip
# Net log events of name lookups (a DNS socket's UDP_CONNECT, SOCKET_CONNECT...): they fail in the namespace by design.
NAME_LOOKUP = ("DNS_", "HOST_RESOLVER", "UDP_", "SOCKET_CONNECT")
# Screenshots of what the browser saw; outside build/, which belongs to `deploy.py plan` (it refuses foreign files).
ARTIFACTS = Path(os.environ.get("SAWMILL_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


class LoginFailed(Exception):
    """The browser did not get through Superset's login; the message says what it saw."""


@contextlib.contextmanager
def logged_in_browser(url: str, password: str, *flags: str) -> Iterator[Any]:
    """Debian's chromium, headless, in a fresh profile (nothing cached) and a network namespace of its own (see
    browser_namespace: the host's container churn cannot abort its loads), logged in through Superset's login page.

    A login that fails is tried once more in a fresh browser, with a warning that says what the first one saw: its
    page, console and the network errors of its net log. Three times in CI a browser saw every script of the login
    page fail (ERR_FAILED), which no run here did (README: Tests); a login undone by the login page's own event-log
    beacon (back on the login page, its form drawn) was Superset's, fixed in superset_config.py. A resource the
    platform itself does not serve (fetched again with curl over HTTP/2) fails the test at once, and so does a
    second failed login."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.exists():
            pytest.fail(f"{binary} is missing: apt-get install -y chromium chromium-driver (scripts/test.sh does)")
    first = ""
    for _ in range(2):
        with _browser(url, *flags) as (driver, netlog):
            try:
                _log_in(driver, url, password)
            except LoginFailed as failure:
                seen = f"{failure}; network errors: {net_errors(netlog)}"
                if first:
                    pytest.fail(f"the login failed in two fresh browsers. First: {first}. Second: {seen}")
                first = seen
                warnings.warn(f"the login failed; trying once more in a fresh browser. It saw: {seen}", stacklevel=3)
                continue
            yield driver
            return


@contextlib.contextmanager
def _browser(url: str, *flags: str) -> Iterator[tuple[Any, Path]]:
    """A driven chromium in its own namespace and profile, and the path of its net log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="sawmill-bi-chromium-"))
    driver_port, site_port = free_port(), urllib.parse.urlsplit(url).port or 443
    netlog = profile / "netlog.json"
    try:
        with browser_namespace(inward=(driver_port,), outward=(site_port,)) as namespace:
            driver_in_namespace = profile / "chromedriver"
            driver_in_namespace.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {CHROMEDRIVER} "$@"\n')
            driver_in_namespace.chmod(0o700)
            options = webdriver.ChromeOptions()
            options.binary_location = str(CHROMIUM)
            for flag in (*CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile / 'data'}", f"--log-net-log={netlog}"):
                options.add_argument(flag)
            options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for failure messages
            driver = webdriver.Chrome(service=Service(str(driver_in_namespace), port=driver_port), options=options)
            try:
                driver.set_page_load_timeout(60)
                yield driver, netlog
            finally:
                driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _log_in(driver: Any, url: str, password: str) -> None:
    """As a person does: the form's fields, Enter, then away from the login page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    user = _login_form(driver, f"{url}/login/")
    user.send_keys("admin")
    field = driver.find_element(By.CSS_SELECTOR, "input[type='password']")
    field.send_keys(password, Keys.ENTER)
    _left_login(driver)
    settled(driver)


def _login_form(driver: Any, url: str, timeout: float = 60) -> Any:
    """The login page's user name field, once its scripts drew the form."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fields := driver.find_elements(By.CSS_SELECTOR, "input[name='username'], input#username"):
            return fields[0]
        time.sleep(0.2)
    seen = _page_text(driver, "login")
    _served_by_the_platform(seen)
    raise LoginFailed(f"no login form at {url} within {timeout} s; the page said: {seen}")


def _left_login(driver: Any, timeout: float = 60) -> None:
    """Waits for the login to lead away from the login page."""
    deadline = time.monotonic() + timeout
    while "/login" in driver.current_url:
        if time.monotonic() > deadline:
            seen = _page_text(driver, "logged-in")
            raise LoginFailed(f"still on the login page {timeout} s after logging in: {seen}")
        time.sleep(0.2)


def settled(driver: Any, quiet: float = 1.0, timeout: float = 30) -> None:
    """Waits until the page shown stopped loading things (no new resource for `quiet` seconds; at most `timeout`
    seconds, then goes on), as after logging in: a dashboard opened next would otherwise wait behind this page's own
    API calls in Superset's threads."""
    count, since = -1, time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        now = driver.execute_script(
            "return document.readyState === 'complete' ? performance.getEntriesByType('resource').length : -1"
        )
        if now != count:
            count, since = now, time.monotonic()
        elif count >= 0 and time.monotonic() - since >= quiet:
            return
        time.sleep(0.2)


def _served_by_the_platform(seen: str) -> None:
    """Fails the test if a resource the browser could not load is not served to curl over HTTP/2 either: then the
    platform is at fault, not the browser, and a second browser would only hide it."""
    for failed in sorted(set(re.findall(r"(https://\S+) - Failed to load resource", seen)))[:5]:
        parts = urllib.parse.urlsplit(failed)
        port = parts.port or 443
        fetched = subprocess.run(
            ["curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30",
             "--resolve", f"{parts.hostname}:{port}:127.0.0.1", failed],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if fetched.stdout != "200":
            pytest.fail(f"{failed} failed in the browser and answers curl with {fetched.stdout or fetched.stderr}")


def net_errors(netlog: Path) -> str:
    """The network errors in a chromium net log (read while it is written: one event per line), counted by event
    and error, e.g. "HTTP2_STREAM_ERROR ERR_HTTP2_SERVER_REFUSED_STREAM x7". Name lookups are left out: the
    namespace has no DNS server, and the localhost names never need one."""
    try:
        lines = netlog.read_text().splitlines()
        constants = json.loads(lines[0].removeprefix('{"constants":').removesuffix(","))
    except (OSError, IndexError, ValueError) as error:
        return f"(no net log: {error})"
    types = {number: name for name, number in constants["logEventTypes"].items()}
    errors = {number: name for name, number in constants["netError"].items()}
    counted: collections.Counter[str] = collections.Counter()
    for line in lines[2:]:
        with contextlib.suppress(ValueError):
            event = json.loads(line.rstrip(","))
            kind = types.get(event["type"], str(event["type"]))
            if (code := (event.get("params") or {}).get("net_error")) and not kind.startswith(NAME_LOOKUP):
                counted[f"{kind} {errors.get(code, code)}"] += 1
    return ", ".join(f"{name} x{n}" for name, n in counted.most_common(12)) or "none"


def save_screenshot(driver: Any, name: str) -> Path:
    """What the browser shows once the charts' drawing animations ended, kept for a person to look at."""
    time.sleep(2)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _page_text(driver: Any, name: str) -> str:
    """The page's title, visible text and console errors (a screenshot beside it), for a failure message that
    says what was seen."""
    with contextlib.suppress(Exception):
        save_screenshot(driver, f"failed-{name}")
    try:
        text = driver.execute_script("return document.title + ' | ' + (document.body ? document.body.innerText : '')")
    except Exception as error:  # the browser itself may be what failed
        return f"(the page could not be read: {error})"
    errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    shown = "; console errors: " + " | ".join(errors)[:1500] if errors else ""
    return (" ".join(str(text).split())[:2000] or "(an empty page)") + shown


# Runs in the page until every chart drew its data (or an error panel shows), then answers with the page's own
# clock: milliseconds since this document's navigation began.
_WATCH_CHARTS = """
const [charts, errors, timeoutMs, done] = arguments;
const check = () => {
    const text = document.body ? document.body.innerText : "";
    const error = errors.find((e) => text.includes(e));
    if (error) return done({error});
    const holders = [...document.querySelectorAll(".dashboard-chart")];
    const drawn = holders.filter((h) => !h.querySelector(".loading, [aria-label='Loading']")
        && h.querySelector("canvas, svg, table tbody tr, .header-line"));
    if (holders.length === charts && drawn.length === charts) return done({ms: performance.now()});
    if (performance.now() > timeoutMs) return done({drawn: drawn.length, holders: holders.length});
    setTimeout(check, 50);
};
check();
"""


def open_dashboard(driver: Any, url: str, slug: str, charts: int, timeout: float = 90) -> float:
    """Opens a dashboard and waits until every chart drew its data; returns the seconds from the navigation's start
    to then, by the page's own clock. The watch runs in the page every 50 ms: a driver polling from outside waits
    for the page's busy main thread on every command, which added up to a second to each figure. An error panel
    fails the test at once."""
    from selenium.common.exceptions import WebDriverException

    driver.get(f"{url}/superset/dashboard/{slug}/")
    driver.set_script_timeout(timeout + 10)
    try:
        seen = driver.execute_async_script(_WATCH_CHARTS, charts, list(ERROR_TEXTS), timeout * 1000)
    except WebDriverException as error:  # e.g. the page went elsewhere (a login) and took the watch with it
        pytest.fail(f"dashboard {slug}: the watch in the page ended: {error.msg}; {_page_text(driver, slug)}")
    if "error" in seen:
        pytest.fail(f"dashboard {slug}: {seen['error']!r} on the page: {_page_text(driver, slug)}")
    if "ms" not in seen:
        pytest.fail(
            f"dashboard {slug}: {seen['drawn']} of {charts} charts drew data within {timeout} s"
            f" ({seen['holders']} on the page): {_page_text(driver, slug)}"
        )
    return seen["ms"] / 1000
