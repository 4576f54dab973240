"""API keys kept in the warehouse: only a sha256 of each key is stored, with the role it maps to.

The table lives in schema db_connect, which no API role can read; the authenticator loads the active
keys into memory and reloads them on `NOTIFY db_connect, 'reload keys'` (sent by the CLI).
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

KEYS_DDL = """
CREATE TABLE IF NOT EXISTS db_connect.api_keys (
    name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.@-]{1,100}$'),
    key_sha256 text NOT NULL UNIQUE,
    role text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
)
"""
ACTIVE_KEYS = "SELECT key_sha256, role FROM db_connect.api_keys WHERE revoked_at IS NULL"
NOTIFY_KEYS = "NOTIFY db_connect, 'reload keys'"
# The roles a request may run as: those granted to the authenticator (the session's login role) directly.
REQUEST_ROLES = """
SELECT r.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
WHERE m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user)
"""
KEY_PREFIX = "sk_"


@dataclass(frozen=True)
class KeyInfo:
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyNotFound(LookupError):
    pass


def create_key(conn: psycopg.Connection, name: str, role: str) -> str:
    """Store a new key for a request role and return it: the only time it is ever seen."""
    conn.execute(KEYS_DDL)
    if (role,) not in conn.execute(REQUEST_ROLES).fetchall():
        raise KeyNotFound(f"{role!r} is not a request role (GRANT {role} TO {conn.info.user}, or pick another)")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO db_connect.api_keys (name, key_sha256, role) VALUES (%s, %s, %s)", (name, digest(key), role)
    )
    conn.execute(NOTIFY_KEYS)
    return key


def list_keys(conn: psycopg.Connection) -> list[KeyInfo]:
    conn.execute(KEYS_DDL)
    rows = conn.execute("SELECT name, role, created_at, revoked_at FROM db_connect.api_keys ORDER BY created_at")
    return [KeyInfo(*row) for row in rows]


def revoke_key(conn: psycopg.Connection, name: str) -> None:
    conn.execute(KEYS_DDL)
    cursor = conn.execute(
        "UPDATE db_connect.api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL", (name,)
    )
    if cursor.rowcount == 0:
        raise KeyNotFound(f"no active key named {name!r}")
    conn.execute(NOTIFY_KEYS)


class KeyStore:
    """sha256 → role for the active keys; swapped whole on reload, read without locks."""

    def __init__(self) -> None:
        self._roles: dict[str, str] = {}

    async def reload(self, conn: psycopg.AsyncConnection) -> None:
        try:
            cursor = await conn.execute(ACTIVE_KEYS)
        except psycopg.errors.UndefinedTable:
            self._roles = {}  # no key created yet: only the shared key and JWTs work
            return
        self._roles = dict(await cursor.fetchall())

    def role_for(self, key: str) -> str | None:
        return self._roles.get(digest(key))
