"""Metabase's unattended setup through its REST API, run by the bi init job when bi.engine = "metabase".

health -> GET /api/session/properties -> POST /api/setup (first run) or POST /api/session (later runs) ->
GET /api/database -> POST (missing) or PUT (present: the password is always sent again, so a rotated one
reaches Metabase) -> POST /api/database/:id/sync_schema. Then the starter dashboards, read from Superset's own
files (bi/superset/dashboards/*.yaml, translated by cards.py): a collection, one native-SQL card per chart and
one dashboard per file, each found by name in that collection, so a re-run creates nothing and updates cards
and layouts in place. Standard library plus PyYAML, on Sawmill's Python image. Tested against an in-process
fake (tests/unit/test_bi_metabase.py), never against a live Metabase: see the README's BI section.
"""

from __future__ import annotations

import itertools
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

import yaml

from bi.metabase import cards

SECRETS = Path(os.environ.get("SAWMILL_SECRETS_DIR", "/run/secrets"))
# Superset's starter dashboards, the one copy of them (the image puts them at the same place beside this file)
DASHBOARDS = Path(__file__).resolve().parents[1] / "superset" / "dashboards"
ADMIN_EMAIL = "admin@sawmill.invalid"
SITE_NAME = "Sawmill"
COLLECTION = "Sawmill starter dashboards"
Found = dict[tuple[str, str], int]  # a collection's cards and dashboards: (model, name) -> id
MANAGED = "Loaded by Sawmill's bi setup job from bi/superset/dashboards/*.yaml; every run replaces changes made here."


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

    def expect(self, method: str, path: str, body: Any = None) -> Any:
        """The body of a call that must succeed; else a SetupError naming the call and Metabase's answer."""
        response = self.call(method, path, body)
        if not 200 <= response.status < 300:
            raise SetupError(f"{method} {path}: {response.status} {response.body}")
        return response.body

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
        found = [d for d in self.expect("GET", "/api/database")["data"] if d["name"] == source.name]
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
            self.expect("PUT", f"/api/database/{database_id}", body)
            log(f"database {source.name}: details sent again (password current)")
        self.expect("POST", f"/api/database/{database_id}/sync_schema")
        return database_id

    def ensure_collection(self, name: str) -> int:
        """The collection at the root holding the starter dashboards, found by name, made on the first run."""
        items = self.expect("GET", "/api/collection/root/items?models=collection")["data"]
        found = [item for item in items if item["model"] == "collection" and item["name"] == name]
        if found:
            return int(found[0]["id"])
        collection_id = int(self.expect("POST", "/api/collection", {"name": name, "description": MANAGED})["id"])
        log(f"collection {name!r}: created")
        return collection_id

    def items(self, collection_id: int) -> Found:
        """The cards and dashboards in the collection, by (model, name); the first of two alike wins."""
        path = f"/api/collection/{collection_id}/items?models=card&models=dashboard"
        found: Found = {}
        for item in self.expect("GET", path)["data"]:
            found.setdefault((item["model"], item["name"]), int(item["id"]))
        return found

    def ensure_card(self, card: cards.Card, database_id: int, collection_id: int, found: Found) -> int:
        """The card by name: created once, then sent again whole on every run, so a changed chart lands."""
        body = {
            "name": card.name,
            "display": card.display,
            "visualization_settings": card.visualization_settings,
            "dataset_query": {"database": database_id, "type": "native", "native": {"query": card.sql}},
            "collection_id": collection_id,
        }
        card_id = found.get(("card", card.name))
        if card_id is None:
            card_id = int(self.expect("POST", "/api/card", body)["id"])
            log(f"card {card.name!r}: created")
        else:
            self.expect("PUT", f"/api/card/{card_id}", body)
        return card_id

    def ensure_dashboard(
        self, dashboard: cards.Dashboard, card_ids: dict[str, int], collection_id: int, found: Found
    ) -> int:
        """The dashboard by name, its dashcards set to the spec's layout. A card already on it keeps its dashcard
        (same id); new ones go in with negative ids; any other dashcard is removed, as Metabase does with a
        dashcard left out of the list."""
        dashboard_id = found.get(("dashboard", dashboard.title))
        if dashboard_id is None:
            body = {"name": dashboard.title, "description": MANAGED, "collection_id": collection_id}
            dashboard_id = int(self.expect("POST", "/api/dashboard", body)["id"])
            log(f"dashboard {dashboard.title!r}: created")
        current = self.expect("GET", f"/api/dashboard/{dashboard_id}")["dashcards"]
        kept = {dashcard["card_id"]: dashcard["id"] for dashcard in current if dashcard.get("card_id")}
        new_ids = itertools.count(-1, -1)
        dashcards = []
        for place in dashboard.layout:
            card_id = card_ids[place.card]
            dashcards.append(
                {
                    "id": kept[card_id] if card_id in kept else next(new_ids),
                    "card_id": card_id,
                    "row": place.row,
                    "col": place.col,
                    "size_x": place.size_x,
                    "size_y": place.size_y,
                }
            )
        self.expect("PUT", f"/api/dashboard/{dashboard_id}", {"description": MANAGED, "dashcards": dashcards})
        return dashboard_id

    def load_dashboards(self, dashboards: list[cards.Dashboard], database_ids: dict[str, int]) -> dict[str, int]:
        """Every dashboard with its cards in the starter collection; their ids by title."""
        collection_id = self.ensure_collection(COLLECTION)
        found = self.items(collection_id)
        loaded = {}
        for dashboard in dashboards:
            if dashboard.database not in database_ids:
                raise SetupError(f"dashboard {dashboard.title!r} reads data source {dashboard.database!r}, not set up")
            card_ids = {
                card.name: self.ensure_card(card, database_ids[dashboard.database], collection_id, found)
                for card in dashboard.cards
            }
            loaded[dashboard.title] = self.ensure_dashboard(dashboard, card_ids, collection_id, found)
        return loaded


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


def load_specs(folder: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yaml"))]


def dashboard_url(site: str, dashboard_id: int, refresh_seconds: int) -> str:
    """Where to open a dashboard. Metabase keeps auto-refresh in the URL, not in the dashboard
    (docs/dashboards/introduction.md, "Configuring a dashboard through its URL": `#refresh=60`)."""
    url = f"{site.rstrip('/')}/dashboard/{dashboard_id}"
    return f"{url}#refresh={refresh_seconds}" if refresh_seconds else url


def read_secret(name: str) -> str:
    value = (SECRETS / name).read_text().strip()
    if not value:
        raise SetupError(f"secret {SECRETS / name} is empty")
    return value


def run(
    environ: dict[str, str], secret: Callable[[str], str] = read_secret, sleep: Callable[[float], None] = time.sleep
) -> None:
    folder = Path(environ.get("SAWMILL_DASHBOARDS", DASHBOARDS))
    try:  # before Metabase is touched: a spec that cannot be translated changes nothing
        dashboards = cards.dashboards(load_specs(folder))
    except cards.ChartError as error:
        raise SetupError(f"{folder}: {error}") from None
    client = Client(environ.get("SAWMILL_METABASE_URL", "http://127.0.0.1:8088"))
    client.wait_healthy(float(environ.get("SAWMILL_SETUP_TIMEOUT", "600")), sleep)
    client.log_in(ADMIN_EMAIL, secret("bi_admin_password"))
    database_ids = {source.name: client.ensure_database(source) for source in data_sources(environ, secret)}
    site = environ.get("SAWMILL_SITE_URL", client.url)
    loaded = client.load_dashboards(dashboards, database_ids)
    for dashboard in dashboards:
        refresh = dashboard.refresh_seconds
        if refresh:  # a live dashboard: the platform's setting (bi.refresh_seconds) decides how often, 0 never
            refresh = int(environ.get("SAWMILL_REFRESH_SECONDS", refresh))
        url = dashboard_url(site, loaded[dashboard.title], refresh)
        log(f"dashboard {dashboard.title!r}: {len(dashboard.cards)} cards, {url}")
    log("done")


if __name__ == "__main__":
    try:
        run(dict(os.environ))
    except SetupError as error:
        print(f"sawmill-metabase-setup: error: {error}", file=sys.stderr)
        sys.exit(1)
