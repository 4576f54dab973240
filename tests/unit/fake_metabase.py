"""An in-process fake of the part of Metabase's REST API the setup client uses, on 127.0.0.1.

It implements only behaviours read in Metabase's own source or docs, each with where it was read. It proves the
client's logic against those behaviours, not compatibility with a live Metabase (which cannot run here).
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# metabase/metabase src/metabase/models/database.clj (`protected-password`): "The string to replace passwords with
# when serializing Databases."
PROTECTED_PASSWORD = "**MetabasePass**"


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
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

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
        return self._databases(method, path, body)

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
