"""Keeps the schema cache, the key store and the request roles fresh without ever blocking a request.

A dedicated connection LISTENs on channel `db_connect`: any notification reloads both (the event
trigger that init installs sends one after every DDL statement; the keys CLI after every change), and
so does the schedule, in case a notification was missed while disconnected. Requests keep reading the
previous cache until the new one is swapped in.
"""

import asyncio
import logging

import psycopg

from db_connect.auth import RequestRoles
from db_connect.catalog import Catalog
from db_connect.keys import KeyStore
from db_connect.settings import Settings

logger = logging.getLogger(__name__)

CHANNEL = "db_connect"
RETRY_S = 2.0


class SchemaRefresher:
    def __init__(self, settings: Settings, catalog: Catalog, keys: KeyStore, roles: RequestRoles) -> None:
        self.settings = settings
        self.catalog = catalog
        self.keys = keys
        self.roles = roles
        self.loaded = asyncio.Event()
        self.failing = False  # the last attempt to connect or reload failed
        self.reloads = 0

    async def reload(self, conn: psycopg.AsyncConnection) -> None:
        await self.catalog.reload(conn)
        await self.keys.reload(conn)
        await self.roles.reload(conn)
        self.reloads += 1
        self.failing = False
        self.loaded.set()

    async def run_forever(self) -> None:
        """Reconnect on failure; reload on every notification and every SCHEMA_REFRESH_S."""
        while True:
            try:
                conninfo = {**self.settings.conninfo, "application_name": "db_connect schema cache"}
                async with await psycopg.AsyncConnection.connect(**conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await self.reload(conn)
                    while True:
                        async for _ in conn.notifies(timeout=self.settings.schema_refresh_s, stop_after=1):
                            pass  # one notification, or the timeout: reload either way
                        await self.reload(conn)
            except psycopg.Error as exc:
                self.failing = True
                logger.warning("schema cache: %s; retrying in %s s", exc.__class__.__name__, RETRY_S)
                await asyncio.sleep(RETRY_S)
