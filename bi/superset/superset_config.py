"""Superset's settings on the platform: every secret is read from a file under /run/secrets (Docker secrets),
never from the environment, so none appears in the service's spec, `docker inspect` or a rendered file."""

import os
from pathlib import Path

from flask import Blueprint, Flask, Request, Response, request, session
from sqlalchemy.engine import URL

SECRETS = Path(os.environ.get("SAWMILL_SECRETS_DIR", "/run/secrets"))


def _secret(name: str) -> str:
    """A Docker secret's value; a missing one stops Superset with the file it looked for."""
    path = SECRETS / name
    try:
        value = path.read_text().strip()
    except OSError as error:
        raise SystemExit(f"sawmill: cannot read secret {path}: {error.strerror}") from None
    if not value:
        raise SystemExit(f"sawmill: secret {path} is empty")
    return value


SECRET_KEY = _secret(os.environ.get("SAWMILL_SECRET_KEY_SECRET", "bi_secret_key"))
SQLALCHEMY_DATABASE_URI = URL.create(
    "postgresql+psycopg2",
    username=os.environ.get("SAWMILL_DB_USER", "bi"),
    password=_secret(os.environ.get("SAWMILL_DB_PASSWORD_SECRET", "bi_db_password")),
    host=os.environ.get("SAWMILL_DB_HOST", "postgres"),
    port=int(os.environ.get("SAWMILL_DB_PORT", "5432")),
    database=os.environ.get("SAWMILL_DB_NAME", "bi"),
).render_as_string(hide_password=False)
# At most 3 connections per gunicorn worker (and per setup run): the budget bi declares in bi/component.py. All 3
# are kept open: an overflow connection (opened and closed per request) cost a connect and a SCRAM login each
# time a dashboard's charts asked together (py-spy on a cold load).
SQLALCHEMY_ENGINE_OPTIONS = {"pool_size": 3, "max_overflow": 0, "pool_pre_ping": True}

# Behind the platform's nginx, which terminates TLS and sets X-Forwarded-*.
ENABLE_PROXY_FIX = True
PREFERRED_URL_SCHEME = "https"
# One process per worker, no Redis: the rate limiter keeps its counts in memory.
RATELIMIT_STORAGE_URI = "memory://"
# Results are never cached: the live dashboard must show what the stream wrote seconds ago.
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}


class _CompressedAssets:
    """Flask-Compress's cache (without one it compresses every response again, in Python, under the web service's
    1 CPU), kept for /static/ only: those are files of this image, so a path's bytes never change while it runs.
    Anything else is never stored, so an API answer is always compressed fresh. Bounded by the files the image
    holds (~26 MiB of JS before compression)."""

    def __init__(self) -> None:
        self._stored: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self._stored.get(key)

    def set(self, key: str, value: bytes) -> None:
        if ";/static/" in key:  # Flask-Compress's key: "<algorithm>;" + COMPRESS_CACHE_KEY's
            self._stored[key] = value


COMPRESS_CACHE_BACKEND = _CompressedAssets


def COMPRESS_CACHE_KEY(request: Request) -> str:  # a setting: Flask-Compress calls it per response
    return request.path


# Data sources are made by the setup job from the platform's config, not by hand; CSV upload stays off.
SQLLAB_TIMEOUT = 60
SUPERSET_WEBSERVER_TIMEOUT = 60

# Nothing leaves the platform from an analyst's browser: Superset's default policy lets pages load Google's and
# Adobe's fonts (AG Grid asks fonts.googleapis.com for Inter on every page), a telemetry pixel and map tiles.
# Here every source is the platform itself; the fonts fall back to the system's.
THEME_FONT_URL_ALLOWED_DOMAINS: list[str] = []
TALISMAN_CONFIG = {
    "content_security_policy": {
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'", "data:"],
        "script-src": ["'self'", "'strict-dynamic'"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,  # nginx redirects to https; Superset itself only ever sees the proxied request
    "session_cookie_secure": False,
}


def _anonymous_event_log() -> Response | None:
    """Refuses the event-log beacon of a person not logged in, before any hook touches the session. The login page
    sends one as it is left, i.e. while the login itself is being answered; Superset would redirect it to the login
    page, setting an anonymous session cookie on the way twice (the redirect's flash, the login page's CSRF token).
    When those answers land after the login's, the browser keeps the anonymous cookie and the person who just
    logged in is shown the login page again (seen here in about one login of twelve under load). The session is
    only read (Flask-Login keeps the user's id under `_user_id`): asking Flask-Login marks an anonymous one
    changed, which sets the cookie again."""
    if request.path == "/superset/log/" and "_user_id" not in session:
        return Response(status=401)
    return None


def FLASK_APP_MUTATOR(app: Flask) -> None:  # a setting: Superset calls it once with its app
    app.before_request_funcs.setdefault(None, []).insert(0, _anonymous_event_log)


def _health_blueprint() -> Blueprint:
    """`/api/health`, the path Metabase answers on: the platform checks either engine at the same path."""
    blueprint = Blueprint("sawmill_health", __name__)
    blueprint.add_url_rule("/api/health", "health", lambda: ({"status": "ok"}, 200))
    return blueprint


BLUEPRINTS = [_health_blueprint()]
