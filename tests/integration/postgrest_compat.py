"""What the PostgREST client suites share: the schema they read and write, and db_connect served over HTTP.

Both clients (postgrest-py, postgrest-js) run the same documented calls against the same rows, so a
difference between them is a difference in the clients, not in what they were pointed at.
"""

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import jwt

from tests.integration.conftest import DB_CONNECT_API_KEY, DB_CONNECT_JWT_SECRET, DbConnectWarehouse, serve_db_connect

SETUP_SQL = """
CREATE SCHEMA quality;
GRANT USAGE ON SCHEMA quality TO api_reader, api_writer;
CREATE TABLE quality.checks (id integer PRIMARY KEY, name text NOT NULL);
INSERT INTO quality.checks VALUES (1, 'row counts');
CREATE TABLE consumption.authors (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE consumption.books (
    id integer PRIMARY KEY,
    title text NOT NULL,
    author_id integer REFERENCES consumption.authors (id),
    pages integer,
    tags text[] NOT NULL DEFAULT '{}',
    period int4range,
    meta jsonb,
    summary text
);
INSERT INTO consumption.authors VALUES (1, 'Le Guin'), (2, 'Calvino'), (3, 'Nobody');
INSERT INTO consumption.books VALUES
    (1, 'The Dispossessed', 1, 387, '{scifi,politics}', '[1970,1975)', '{"lang": "en", "ed": {"year": 1974}}',
     'An anarchist physicist travels between twin planets'),
    (2, 'Invisible Cities', 2, 165, '{fable}', '[1970,1973)', '{"lang": "it", "ed": {"year": 1972}}',
     'Marco Polo describes imagined cities to Kublai Khan'),
    (3, 'The Lathe of Heaven', 1, 184, '{scifi}', '[1969,1972)', '{"lang": "en", "ed": {"year": 1971}}',
     'A man whose dreams change reality'),
    (4, 'Untitled', NULL, NULL, '{}', NULL, NULL, NULL);
CREATE TABLE consumption.drafts (id integer PRIMARY KEY, title text, status text NOT NULL DEFAULT 'new');
CREATE TABLE consumption.reviews (
    id integer PRIMARY KEY, book_id integer NOT NULL REFERENCES consumption.books (id), stars integer
);
CREATE FUNCTION consumption.book_count(min_pages integer) RETURNS bigint LANGUAGE sql STABLE
    AS 'SELECT count(*) FROM consumption.books WHERE pages >= min_pages';
CREATE FUNCTION consumption.books_by(author text) RETURNS SETOF consumption.books LANGUAGE sql STABLE
    AS 'SELECT b.* FROM consumption.books b JOIN consumption.authors a ON a.id = b.author_id WHERE a.name = author';
GRANT SELECT ON consumption.authors, consumption.books, consumption.drafts, consumption.reviews, quality.checks
    TO api_reader, api_writer;
GRANT INSERT, UPDATE, DELETE ON consumption.drafts, consumption.reviews TO api_writer;
ANALYZE consumption.books;
"""
TEARDOWN_SQL = """
DROP SCHEMA quality CASCADE;
DROP TABLE consumption.reviews, consumption.drafts, consumption.books, consumption.authors CASCADE;
DROP FUNCTION IF EXISTS consumption.book_count, consumption.books_by;
"""


@dataclass(frozen=True)
class Served:
    """db_connect answering on `url`, and credentials: the platform key (api_reader) and a writer's JWT."""

    url: str
    reader_key: str
    writer_token: str


@contextmanager
def served(warehouse: DbConnectWarehouse) -> Iterator[Served]:
    """SETUP_SQL's rows behind a real uvicorn, as the image runs it; everything dropped afterwards."""
    warehouse.execute(SETUP_SQL)
    server: subprocess.Popen[str] | None = None
    try:
        server, base = serve_db_connect(warehouse)
        token = jwt.encode({"role": "api_writer"}, DB_CONNECT_JWT_SECRET, algorithm="HS256")
        yield Served(base, DB_CONNECT_API_KEY, token)
    finally:
        if server is not None:
            server.terminate()
            server.communicate(timeout=10)
        warehouse.execute(TEARDOWN_SQL)
