"""An in-process fake of the part of Metabase's REST API the setup client uses, on 127.0.0.1.

It implements only behaviours read in Metabase's own source or docs, each with where it was read. It proves the
client's logic against those behaviours, not compatibility with a live Metabase (which cannot run here).
"""

from __future__ import annotations

import itertools
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# metabase/metabase src/metabase/models/database.clj (`protected-password`): "The string to replace passwords with
# when serializing Databases."
PROTECTED_PASSWORD = "**MetabasePass**"

# The collections, cards and dashboards API below was read in metabase/metabase's source as stored here: late
# 2025, after the v0.56 line (the `*_rest` namespaces), not at the v0.56.9 tag itself. Commits read:
# collections_rest/api.clj 00f7311ce8e2, queries_rest/api/card.clj 00f456610872, dashboards_rest/api.clj
# 0085ec32cfbc; the dashcards PUT also in the earlier src/metabase/dashboards/api.clj (00f84ab8adde), which agrees.
# Request bodies are malli schemas there; a closed map refuses keys it does not name (400), and so does the fake.


def _keys(names: str) -> frozenset[str]:
    """A schema's keys, as the source lists them, separated by spaces."""
    return frozenset(names.split())


# src/metabase/collections_rest/api.clj `valid-model-param-values`: what `?models=` may name on an items listing
ITEM_MODELS = _keys("card dataset document metric collection dashboard pulse snippet no_models timeline table")
# src/metabase/queries_rest/api/card.clj `CardCreateSchema` (closed): the required keys, then the optional ones
CARD_REQUIRED = frozenset({"name", "dataset_query", "display", "visualization_settings"})
CARD_OPTIONAL = _keys(
    "type entity_id parameters parameter_mappings description collection_id collection_position result_metadata"
    " cache_ttl dashboard_id dashboard_tab_id size source_card_id"
)
# same file, `CardUpdateSchema` (closed, every key optional)
CARD_UPDATE = _keys(
    "name parameters parameter_mappings dataset_query type display description visualization_settings archived"
    " enable_embedding embedding_type embedding_params collection_id collection_position result_metadata cache_ttl"
    " collection_preview dashboard_id dashboard_tab_id"
)
# src/metabase/dashboards_rest/api.clj: the POST "/" body (closed; name required)
DASHBOARD_CREATE = _keys("name parameters description cache_ttl collection_id collection_position")
# same file, `DashUpdates` (closed, every key optional) and `UpdatedDashboardCard` (closed; id, size_x, size_y,
# row and col required; "id can be negative, it indicates a new card and BE should create them")
DASHBOARD_UPDATE = _keys(
    "name description caveats points_of_interest show_in_getting_started enable_embedding embedding_type"
    " embedding_params parameters position width archived auto_apply_filters collection_id collection_position"
    " cache_ttl dashcards tabs"
)
DASHCARD_REQUIRED = frozenset({"id", "size_x", "size_y", "row", "col"})
DASHCARD_OPTIONAL = _keys(
    "card_id action_id dashboard_tab_id parameter_mappings visualization_settings inline_parameters series"
)


def _invalid(**errors: str) -> tuple[int, Any]:
    """A request body its schema refuses: 400 with the errors by key (the shape of Metabase's malli errors)."""
    return 400, {"errors": errors}


def _non_blank(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _closed(body: Any, required: frozenset[str], optional: frozenset[str]) -> tuple[int, Any] | None:
    """The 400 a closed map schema answers for `body`, or None when it passes."""
    if not isinstance(body, dict):
        return _invalid(body="value must be a map")
    missing = {key: "missing required key" for key in sorted(required - set(body))}
    extra = {key: "disallowed key" for key in sorted(set(body) - required - optional)}
    return _invalid(**missing, **extra) if missing or extra else None


@dataclass
class FakeMetabase:
    initializing_checks: int = 2  # /api/health answers 503 this many times before it is ready
    admin_password: str | None = None  # None: a fresh Metabase with no user yet
    setup_token: str | None = "a1b2c3-setup-token"
    users: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    databases: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    synced: list[int] = field(default_factory=list)
    collections: dict[int, dict[str, Any]] = field(default_factory=dict)
    cards: dict[int, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[int, dict[str, Any]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    # one id sequence per table, as the application database has
    _collection_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _card_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _dashboard_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _dashcard_ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def handle(self, method: str, path: str, body: Any, session: str | None) -> tuple[int, Any]:
        self.requests.append((method, path))
        # src/metabase/server/routes.clj: GET /api/health is {:status 503, :body {:status "initializing",
        # :progress ...}} until init completes, then {:status 200, :body {:status "ok"}}; every other /api/ route
        # answers 503 "Metabase is still initializing. Please sit tight..." meanwhile.
        if self.initializing_checks > 0:
            if path == "/api/health":
                self.initializing_checks -= 1
                return 503, {"status": "initializing", "progress": 0.5}
            return 503, "Metabase is still initializing. Please sit tight..."
        if path == "/api/health":
            return 200, {"status": "ok"}
        if (method, path) == ("GET", "/api/session/properties"):
            # public settings, readable without a session; the setup token is offered until the first user exists
            # (ENVIRONMENT.md: setup-token, has-user-setup; src/metabase/setup_rest/api.clj clears it on setup)
            return 200, {"setup-token": self.setup_token, "has-user-setup": bool(self.users)}
        if (method, path) == ("POST", "/api/setup"):
            return self._setup(body)
        if (method, path) == ("POST", "/api/session"):
            # POST /api/session {username, password} -> {:id <session key>} (the docs' "Login."); a wrong password
            # is 401
            if self.users.get(body.get("username")) != body.get("password"):
                return 401, {"errors": {"password": "did not match stored password"}}
            return 200, {"id": self._session(body["username"])}
        # src/metabase/api/response.clj `response-unauthentic`: {:status 401, :body "Unauthenticated"} for a request
        # without a valid X-Metabase-Session
        if session not in self.sessions:
            return 401, "Unauthenticated"
        route, _, query = path.partition("?")
        parts = route.strip("/").split("/")[1:]
        if parts[0] == "collection":
            return self._collections(method, parts[1:], urllib.parse.parse_qs(query), body)
        if parts[0] == "card":
            return self._cards(method, parts[1:], body)
        if parts[0] == "dashboard":
            return self._dashboards(method, parts[1:], body)
        return self._databases(method, route, body)

    def _setup(self, body: dict[str, Any]) -> tuple[int, Any]:
        # src/metabase/setup_rest/api.clj: once a user exists, 403 "The /api/setup route can only be used to create
        # the first user, however a user currently exists."; the token must match the instance's setup token
        # (SetupToken schema, 400 otherwise); success returns {:id <session key>} and the token is cleared.
        if self.users:
            return (
                403,
                "The /api/setup route can only be used to create the first user, however a user currently exists.",
            )
        if body.get("token") != self.setup_token or not self.setup_token:
            return 400, {"errors": {"token": "Token does not match the setup token."}}
        if not body.get("prefs", {}).get("site_name"):
            return 400, {"errors": {"prefs": "site_name: value must be a non-blank string."}}
        user = body["user"]
        self.users[user["email"]] = user["password"]
        self.setup_token = None
        return 200, {"id": self._session(user["email"])}

    def _databases(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if (method, path) == ("GET", "/api/database"):
            # test/metabase/api/database_test.clj (`get-all`): GET /api/database answers {:data [...], :total n};
            # secret details come back as PROTECTED_PASSWORD (src/metabase/models/database.clj)
            data = [self._redacted(d) for d in self.databases.values()]
            return 200, {"data": data, "total": len(data)}
        if (method, path) == ("POST", "/api/database"):
            database_id = next(self._ids)
            self.databases[database_id] = {"id": database_id, **body}
            return 200, self._redacted(self.databases[database_id])
        if len(parts) == 3 and parts[:2] == ["api", "database"] and method == "PUT":
            database = self.databases.get(int(parts[2]))
            if database is None:
                return 404, "Not found."
            details = dict(body.get("details", {}))
            if details.get("password") == PROTECTED_PASSWORD:  # the redacted value keeps the stored password
                details["password"] = database["details"].get("password")
            database.update({**body, "details": details})
            return 200, self._redacted(database)
        if len(parts) == 4 and parts[3] == "sync_schema" and method == "POST":
            self.synced.append(int(parts[2]))
            return 200, {"status": "ok"}
        return 404, "API endpoint does not exist."

    def _collections(self, method: str, parts: list[str], query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method == "POST" and not parts:
            # src/metabase/collections_rest/api.clj POST "/": name must be a non-blank string (so must description,
            # when given); no parent_id: a child of the root collection, location "/"; answers the new collection
            if error := _closed(
                body, frozenset({"name"}), frozenset({"description", "parent_id", "namespace", "authority_level"})
            ):
                return error
            for key in ("name", "description"):
                if key in body and not _non_blank(body[key]):
                    return _invalid(**{key: "value must be a non-blank string."})
            collection_id = next(self._collection_ids)
            self.collections[collection_id] = {
                "id": collection_id,
                "name": body["name"],
                "description": body.get("description"),
                "location": "/",
            }
            return 200, self.collections[collection_id]
        if method == "GET" and len(parts) == 2 and parts[1] == "items":
            # same file, GET "/root/items" and GET "/:id/items": the collection's children as
            # {:total, :data, :models, :limit, :offset}; each row has :id, :name and :model ("card" for a saved
            # question, "dashboard", "collection"); `?models=` (repeatable) keeps only those models, none: all;
            # rows sorted by lower-cased name, then id; an unknown collection is 404 (api/read-check)
            models = set(query.get("models", [])) or {"card", "dashboard", "collection"}
            if not models <= ITEM_MODELS:
                return _invalid(models=f"should be one of {sorted(ITEM_MODELS)}")
            parent = None if parts[0] == "root" else int(parts[0])
            if parent is not None and parent not in self.collections:
                return 404, "Not found."
            rows = [
                {"id": c["id"], "name": c["name"], "model": "collection"}
                for c in self.collections.values()
                if parent is None  # every collection here is a child of the root
            ]
            rows += [
                {"id": c["id"], "name": c["name"], "model": "card"}
                for c in self.cards.values()
                if c.get("collection_id") == parent
            ]
            rows += [
                {"id": d["id"], "name": d["name"], "model": "dashboard"}
                for d in self.dashboards.values()
                if d.get("collection_id") == parent
            ]
            data = sorted((r for r in rows if r["model"] in models), key=lambda r: (r["name"].lower(), r["id"]))
            return 200, {"total": len(data), "data": data, "models": sorted(models), "limit": None, "offset": None}
        return 404, "API endpoint does not exist."

    def _cards(self, method: str, parts: list[str], body: Any) -> tuple[int, Any]:
        if method == "POST" and not parts:
            # src/metabase/queries_rest/api/card.clj POST "/": CardCreateSchema; answers the new card with its id
            if error := _closed(body, CARD_REQUIRED, CARD_OPTIONAL) or self._card_values(body):
                return error
            card_id = next(self._card_ids)
            self.cards[card_id] = {"id": card_id, "type": "question", **body}
            return 200, self.cards[card_id]
        if method == "PUT" and len(parts) == 1:
            # same file, PUT "/:id": CardUpdateSchema, the keys given replace the card's; a missing card is 404
            card = self.cards.get(int(parts[0]))
            if card is None:
                return 404, "Not found."
            if error := _closed(body, frozenset(), CARD_UPDATE) or self._card_values(body):
                return error
            card.update(body)
            return 200, card
        return 404, "API endpoint does not exist."

    @staticmethod
    def _card_values(body: dict[str, Any]) -> tuple[int, Any] | None:
        # CardCreateSchema: name and display non-blank strings, visualization_settings a map. dataset_query as
        # legacy MBQL (`::lib-be.schema/maybe-legacy-query`), whose native form is src/metabase/legacy_mbql/
        # schema.cljc `::Query`: {:database <positive id>, :type :native, :native {:query ...}} and no :query
        # (`::CheckKeysForQueryType`).
        for key in ("name", "display"):
            if key in body and not _non_blank(body[key]):
                return _invalid(**{key: "value must be a non-blank string."})
        if "visualization_settings" in body and not isinstance(body["visualization_settings"], dict):
            return _invalid(visualization_settings="value must be a map")
        query = body.get("dataset_query")
        if query is not None:
            native = query.get("native") if isinstance(query, dict) else None
            if (
                not isinstance(native, dict)
                or query.get("type") != "native"
                or "query" in query
                or not isinstance(query.get("database"), int)
                or query["database"] < 1
                or not native.get("query")
            ):
                return _invalid(dataset_query="not a valid native query (this fake knows no other kind)")
        return None

    def _dashboards(self, method: str, parts: list[str], body: Any) -> tuple[int, Any]:
        if method == "POST" and not parts:
            # src/metabase/dashboards_rest/api.clj POST "/": name a non-blank string; answers the new dashboard,
            # hydrated (hydrate-dashboard-details: :dashcards, :tabs, ...)
            if error := _closed(body, frozenset({"name"}), DASHBOARD_CREATE - {"name"}):
                return error
            if not _non_blank(body["name"]):
                return _invalid(name="value must be a non-blank string.")
            dashboard_id = next(self._dashboard_ids)
            self.dashboards[dashboard_id] = {"id": dashboard_id, **body, "dashcards": [], "tabs": []}
            return 200, self.dashboards[dashboard_id]
        dashboard = self.dashboards.get(int(parts[0])) if len(parts) == 1 and parts[0].isdigit() else None
        if dashboard is None:
            return 404, "Not found." if len(parts) == 1 else "API endpoint does not exist."
        if method == "GET":
            # same file, GET "/:id": the dashboard with its :dashcards (each with :id, :card_id, :row, :col,
            # :size_x, :size_y)
            return 200, dashboard
        if method == "PUT":
            return self._update_dashboard(dashboard, body)
        return 404, "API endpoint does not exist."

    def _update_dashboard(self, dashboard: dict[str, Any], body: Any) -> tuple[int, Any]:
        # src/metabase/dashboards_rest/api.clj PUT "/:id" (`update-dashboard!`, `do-update-dashcards!`): DashUpdates;
        # when :dashcards is given, `u/row-diff` of the current dashcards against the sent ones by :id gives
        # to-create (a negative id: a new dashcard, given a real id), to-update and to-delete (a current dashcard
        # left out of the list); dashcard ids must be unique (`ms/maps-with-unique-key`); a card a dashcard newly
        # names must be readable (`check-new-references` -> api/read-check: 404 when it does not exist).
        if error := _closed(body, frozenset(), DASHBOARD_UPDATE):
            return error
        dashcards = body.get("dashcards")
        if dashcards is not None:
            for dashcard in dashcards:
                if error := _closed(dashcard, DASHCARD_REQUIRED, DASHCARD_OPTIONAL):
                    return error
                if dashcard["size_x"] < 1 or dashcard["size_y"] < 1 or dashcard["row"] < 0 or dashcard["col"] < 0:
                    return _invalid(dashcards="sizes must be positive, row and col zero or more")
                if dashcard.get("card_id") is not None and dashcard["card_id"] not in self.cards:
                    return 404, "Not found."
            if len({d["id"] for d in dashcards}) != len(dashcards):
                return _invalid(dashcards="value must be a sequence of maps with unique id")
            current = {d["id"]: d for d in dashboard["dashcards"]}
            if any(d["id"] > 0 and d["id"] not in current for d in dashcards):
                # what row-diff does with a positive id the dashboard does not have was not read: not faked
                return 501, "not faked: a positive dashcard id the dashboard does not have"
            dashboard["dashcards"] = [
                {**d, "id": d["id"] if d["id"] > 0 else next(self._dashcard_ids), "dashboard_id": dashboard["id"]}
                for d in dashcards
            ]
        dashboard.update({key: value for key, value in body.items() if key not in ("dashcards", "tabs")})
        return 200, dashboard

    def _session(self, email: str) -> str:
        key = f"session-{next(self._ids)}"
        self.sessions[key] = email
        return key

    @staticmethod
    def _redacted(database: dict[str, Any]) -> dict[str, Any]:
        details = dict(database.get("details", {}))
        if "password" in details:
            details["password"] = PROTECTED_PASSWORD
        return {**database, "details": details}


class Served:
    """The fake behind a real HTTP server on 127.0.0.1, in a thread, for the duration of a `with` block."""

    def __init__(self, fake: FakeMetabase) -> None:
        self.fake = fake
        fake_ref = fake

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, payload = fake_ref.handle(self.command, self.path, body, self.headers.get("X-Metabase-Session"))
                raw = json.dumps(payload).encode() if not isinstance(payload, str) else payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(payload, str) else "text/plain")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Served:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
