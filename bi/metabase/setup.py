"""Metabase's unattended setup through its REST API, run by the bi init job when bi.engine = "metabase".

health -> GET /api/session/properties -> POST /api/setup (first run) or POST /api/session (later runs) ->
GET /api/database -> POST (missing) or PUT (present: the password is always sent again, so a rotated one
reaches Metabase) -> POST /api/database/:id/sync_schema. Idempotent: a data source is found by name, never
added twice. Standard library only, so it runs on Sawmill's Python image. Tested against an in-process fake
(tests/unit/test_bi_metabase.py), never against a live Metabase: see the README's BI section.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECRETS = Path(os.environ.get("SAWMILL_SECRETS_DIR", "/run/secrets"))
ADMIN_EMAIL = "admin@sawmill.invalid"
SITE_NAME = "Sawmill"


class SetupError(Exception):
    """A step Metabase refused, with what to do about it."""


@dataclass(frozen=True)
class Response:
    status: int
    body: Any


@dataclass(frozen=True)
class DataSource:
    name: str
    engine: str
    details: dict[str, Any]


def log(message: str) -> None:
    print(f"sawmill-metabase-setup: {message}", flush=True)


class Client:
    """Metabase's REST API; the session, once had, goes in the X-Metabase-Session header."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session: str | None = None
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None) -> Response:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.session:
            headers["X-Metabase-Session"] = self.session
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return Response(response.status, _decode(response.read()))
        except urllib.error.HTTPError as error:
            return Response(error.code, _decode(error.read()))

    def wait_healthy(self, timeout: float, sleep: Callable[[float], None] = time.sleep) -> None:
        """Metabase answers 503 while it initializes (migrations can take minutes on a first start)."""
        deadline = time.monotonic() + timeout
        last: Response | str = "no answer"
        while time.monotonic() < deadline:
            try:
                last = self.call("GET", "/api/health")
                if last.status == 200:
                    return
            except OSError as error:  # not listening yet
                last = str(error)
            sleep(2)
        raise SetupError(f"Metabase at {self.url} was not healthy within {timeout:.0f} s (last: {last})")

    def log_in(self, email: str, password: str) -> str:
        """Creates the admin on a fresh Metabase (its setup token is only offered until then), else logs in."""
        properties = self.call("GET", "/api/session/properties")
        if properties.status != 200:
            raise SetupError(f"GET /api/session/properties: {properties.status} {properties.body}")
        token = properties.body.get("setup-token")
        if not properties.body.get("has-user-setup") and token:
            setup = self.call(
                "POST",
                "/api/setup",
                {
                    "token": token,
                    "user": {"email": email, "password": password, "first_name": "Sawmill", "last_name": "Admin"},
                    "prefs": {"site_name": SITE_NAME},
                },
            )
            if setup.status == 200:
                log(f"created the admin user {email}")
                self.session = setup.body["id"]
                return self.session
            if setup.status != 403:  # 403: another run made the first user meanwhile; log in as it
                raise SetupError(f"POST /api/setup: {setup.status} {setup.body}")
        session = self.call("POST", "/api/session", {"username": email, "password": password})
        if session.status != 200:
            raise SetupError(
                f"POST /api/session as {email}: {session.status} {session.body}; if the admin password was changed"
                " in Metabase by hand, set it back to `deploy.py secrets show bi_admin_password`"
            )
        log(f"logged in as {email}")
        self.session = session.body["id"]
        return self.session

    def ensure_database(self, source: DataSource) -> int:
        """The data source by name: added once, its details (with the password) sent again on every run."""
        listed = self.call("GET", "/api/database")
        if listed.status != 200:
            raise SetupError(f"GET /api/database: {listed.status} {listed.body}")
        found = [d for d in listed.body["data"] if d["name"] == source.name]
        body = {"name": source.name, "engine": source.engine, "details": source.details}
        if not found:
            created = self.call("POST", "/api/database", body)
            if created.status != 200:
                raise SetupError(f"POST /api/database {source.name}: {created.status} {created.body}")
            database_id = int(created.body["id"])
            log(f"database {source.name}: created")
        else:
            # GET shows the password redacted, so it cannot be compared: send it again (a rotated one lands).
            database_id = int(found[0]["id"])
            updated = self.call("PUT", f"/api/database/{database_id}", body)
            if updated.status != 200:
                raise SetupError(f"PUT /api/database/{database_id}: {updated.status} {updated.body}")
            log(f"database {source.name}: details sent again (password current)")
        synced = self.call("POST", f"/api/database/{database_id}/sync_schema")
        if synced.status != 200:
            raise SetupError(f"POST /api/database/{database_id}/sync_schema: {synced.status} {synced.body}")
        return database_id


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def data_sources(environ: dict[str, str], secret: Callable[[str], str]) -> list[DataSource]:
    """The warehouse as the bi role (read-only), and Presto when the platform runs it."""
    sources = [
        DataSource(
            "warehouse",
            "postgres",
            {
                "host": environ.get("SAWMILL_WAREHOUSE_HOST", "postgres"),
                "port": int(environ.get("SAWMILL_WAREHOUSE_PORT", "5432")),
                "dbname": environ.get("SAWMILL_WAREHOUSE_DB", "warehouse"),
                "user": environ.get("SAWMILL_WAREHOUSE_USER", "bi"),
                "password": secret("bi_db_password"),
                "schema-filters-type": "inclusion",
                "schema-filters-patterns": "consumption,quality",
            },
        )
    ]
    if environ.get("SAWMILL_PRESTO_HOST"):
        sources.append(
            DataSource(
                "presto",
                "presto-jdbc",
                {
                    "host": environ["SAWMILL_PRESTO_HOST"],
                    "port": int(environ.get("SAWMILL_PRESTO_PORT", "8080")),
                    "catalog": "warehouse",
                    "user": "bi",
                    "ssl": False,
                },
            )
        )
    return sources


def read_secret(name: str) -> str:
    value = (SECRETS / name).read_text().strip()
    if not value:
        raise SetupError(f"secret {SECRETS / name} is empty")
    return value


def run(
    environ: dict[str, str], secret: Callable[[str], str] = read_secret, sleep: Callable[[float], None] = time.sleep
) -> None:
    client = Client(environ.get("SAWMILL_METABASE_URL", "http://127.0.0.1:8088"))
    client.wait_healthy(float(environ.get("SAWMILL_SETUP_TIMEOUT", "600")), sleep)
    client.log_in(ADMIN_EMAIL, secret("bi_admin_password"))
    for source in data_sources(environ, secret):
        client.ensure_database(source)
    log("done")


if __name__ == "__main__":
    try:
        run(dict(os.environ))
    except SetupError as error:
        print(f"sawmill-metabase-setup: error: {error}", file=sys.stderr)
        sys.exit(1)
