"""Connections to Postgres for stream jobs: libpq settings from the environment, the password from a secret file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg


def connect(dsn: str = "") -> psycopg.Connection[Any]:
    """An autocommit connection (callers open transactions explicitly); PGPASSWORD_FILE names a Docker secret."""
    extra: dict[str, Any] = {"application_name": "parse_sources"}
    password_file = os.environ.get("PGPASSWORD_FILE")
    if password_file and not os.environ.get("PGPASSWORD"):
        extra["password"] = Path(password_file).read_text().strip()
    return psycopg.connect(dsn, autocommit=True, **extra)
