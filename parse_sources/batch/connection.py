"""Connections to the warehouse from libpq settings, the same way by hand, in Airflow tasks and in tests."""

from __future__ import annotations

import os

import psycopg


def connect(dsn: str = "") -> psycopg.Connection:
    """Connect with `dsn` and the PG* environment; PGPASSWORD_FILE (a Docker secret) fills in the password.

    libpq has no *_FILE variable, and a secret must not travel through the environment of child processes.
    """
    password_file = os.environ.get("PGPASSWORD_FILE")
    extra = {}
    if password_file and "PGPASSWORD" not in os.environ:
        with open(password_file) as handle:
            extra["password"] = handle.read().strip()
    return psycopg.connect(dsn, **extra)
