"""The holes a hostile probe of db_connect found, checked where users meet them: through nginx on a real platform.

The integration tests pin each fix on db_connect alone; here the request also crosses nginx (TLS, chunked
bodies streamed on with `proxy_request_buffering off`) and both replicas, as a client's would.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from python_on_whales import docker

from stack import http
from tests.e2e.conftest import HTTPS_PORT, Platform
from tests.e2e.test_db_connect import keys_cli

API_HOST = "api.localhost"
TABLE = "consumption.e2e_uploads"
PATH = "/consumption/e2e_uploads"
SLOW_UPLOADS = 30  # more than both replicas' pools together (2 x 10 connections)


@pytest.fixture(scope="module")
def writer(platform: Platform) -> Iterator[str]:
    """A writer key, and a table it may fill."""
    platform.psql(f"CREATE TABLE IF NOT EXISTS {TABLE} (id integer PRIMARY KEY, name text NOT NULL)")
    key = keys_cli(platform, "create", "--role", "api_writer", "--name", "e2e-holes").strip()
    # Each replica learns the table and the key from a NOTIFY on its own; requests take turns between the
    # replicas, so ten answers in a row mean both serve them.
    deadline, served = time.monotonic() + 20, 0
    while served < 10:
        assert time.monotonic() < deadline, f"{TABLE} was not served with the new key by both replicas within 20 s"
        ok = platform.get(API_HOST, PATH, headers={"X-API-Key": key}).status == 200
        served = served + 1 if ok else 0
        time.sleep(0 if ok else 0.2)
    yield key
    keys_cli(platform, "revoke", "e2e-holes")
    platform.psql(f"DROP TABLE {TABLE}")


def tls_socket(platform: Platform) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=platform.cafile)
    return context.wrap_socket(
        socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=30), server_hostname=API_HOST
    )


def chunked_head(path: str, key: str, content_type: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {API_HOST}\r\nX-API-Key: {key}\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def answer(sock: ssl.SSLSocket) -> tuple[int, bytes]:
    """Status and body of the one response on a `Connection: close` socket (read to its end)."""
    received = b""
    while data := sock.recv(65536):
        received += data
    head, _, body = received.partition(b"\r\n\r\n")
    assert head, "nginx closed the connection without an answer"
    return int(head.split()[1]), body


def post(platform: Platform, key: str, body: bytes, content_type: str = "text/csv") -> http.Response:
    headers = {"X-API-Key": key, "Content-Type": content_type}
    return platform.get(API_HOST, PATH, method="POST", body=body, headers=headers, timeout=300)


def api_tasks() -> set[str]:
    """The db_connect tasks Swarm keeps running: a task killed as unhealthy is replaced by a new ID."""
    services = [s for s in docker.service.list() if s.spec.name.endswith("_db_connect_api")]
    return {t.id for s in services for t in docker.service.ps(s) if t.desired_state == "running"}


@pytest.mark.parametrize(
    ("content_type", "opening", "size", "status", "code"),
    [
        ("application/json", b'[{"id": 1, "name": "', 9 * 1024 * 1024, 413, "body_too_large"),
        ("text/csv", b"id,name", 2 * 1024 * 1024, 400, "invalid_body"),  # a header line that never ends
    ],
    ids=["9 MiB chunked JSON", "CSV header line of 2 MiB"],
)
def test_a_refused_chunked_body_gets_the_apis_answer_not_nginxs_503(
    platform: Platform, writer: str, content_type: str, opening: bytes, size: int, status: int, code: str
) -> None:
    with tls_socket(platform) as sock:
        sock.sendall(chunked_head(PATH, writer, content_type) + chunk(opening))
        for _ in range(size // 65536):
            sock.sendall(chunk(b"x" * 65536))
        sock.sendall(b"0\r\n\r\n")
        answered, body = answer(sock)
    assert answered == status, body[:300]
    assert json.loads(body)["code"] == code


def test_slow_uploads_beyond_both_pools_leave_reads_served_and_no_replica_killed(
    platform: Platform, writer: str
) -> None:
    """Each upload trickles a row every second for ~15 s; reads every 0.1 s meanwhile all answer 200."""
    platform.psql(f"TRUNCATE {TABLE}")
    tasks_before = api_tasks()
    uploads = [tls_socket(platform) for _ in range(SLOW_UPLOADS)]
    failed_reads, reads = [], 0
    try:
        for number, upload in enumerate(uploads):
            upload.sendall(chunked_head(PATH, writer, "text/csv"))
            upload.sendall(chunk(f"id,name\n{number},first\n".encode()))
        for second in range(1, 16):
            next_rows = time.monotonic() + 1
            while time.monotonic() < next_rows:
                reads += 1
                status = (
                    platform.get(API_HOST, "/health").status
                    if reads % 5 == 0
                    else platform.api(PATH + "?limit=1").status
                )
                if status != 200:
                    failed_reads.append(status)
                time.sleep(0.1)
            for number, upload in enumerate(uploads):
                upload.sendall(chunk(f"{1000 * second + number},row\n".encode()))
        for upload in uploads:
            upload.sendall(b"0\r\n\r\n")
        statuses = [answer(upload)[0] for upload in uploads]
    finally:
        for upload in uploads:
            upload.close()
    print(f"{reads} reads and health checks during {SLOW_UPLOADS} slow uploads: {len(failed_reads)} failed")
    assert failed_reads == []
    assert statuses == [201] * SLOW_UPLOADS
    assert platform.psql(f"SELECT count(*) FROM {TABLE}").strip() == str(SLOW_UPLOADS * 16)
    assert api_tasks() == tasks_before, "Swarm replaced a db_connect task during the uploads"


def test_rows_after_a_lone_backslash_dot_are_refused_whole_with_bare_cr_line_endings(
    platform: Platform, writer: str
) -> None:
    platform.psql(f"TRUNCATE {TABLE}")
    refused = post(platform, writer, b"id,name\r1,a\r\\.\r2,b\r")
    assert (refused.status, json.loads(refused.body)["code"]) == (400, "invalid_body"), refused.body
    assert platform.psql(f"SELECT count(*) FROM {TABLE}").strip() == "0", "nothing of a refused body is written"


def test_a_view_in_consumption_is_read_only_to_a_writer_key(platform: Platform, writer: str) -> None:
    """consumption.* views over curated tables are auto-updatable; the ETL owns that data, not the API's writers."""
    platform.psql(
        "CREATE TABLE IF NOT EXISTS curated.e2e_owned (id integer PRIMARY KEY, name text);"
        "CREATE OR REPLACE VIEW consumption.e2e_owned AS SELECT id, name FROM curated.e2e_owned"
    )
    try:
        path = "/consumption/e2e_owned"
        deadline = time.monotonic() + 20
        while platform.get(API_HOST, path, headers={"X-API-Key": writer}).status != 200:
            assert time.monotonic() < deadline, "the view was not served within 20 s"
            time.sleep(0.2)
        refused = platform.get(
            API_HOST,
            path,
            method="POST",
            body=b'{"id": 1, "name": "forged"}',
            headers={"X-API-Key": writer, "Content-Type": "application/json"},
        )
        assert refused.status == 403, refused.body[:300]
        assert json.loads(refused.body)["code"] == "42501"
        assert platform.psql("SELECT count(*) FROM curated.e2e_owned").strip() == "0"
    finally:
        platform.psql("DROP VIEW consumption.e2e_owned; DROP TABLE curated.e2e_owned")


def test_many_large_json_bodies_at_once_are_turned_away_with_503_not_by_a_killed_replica(
    platform: Platform, writer: str
) -> None:
    """Twelve JSON inserts of ~8 MiB at once, ~100 MB each once parsed (measured), against 512 MB per replica:
    each replica takes what its body budget allows and tells the rest to retry; none is killed for memory."""
    platform.psql(f"TRUNCATE {TABLE}")
    tasks_before = api_tasks()
    rows = 260_000  # ~7.7 MiB of JSON with the longest ids, under the 8 MiB per body

    def insert(upload: int) -> http.Response:
        body = json.dumps([{"id": upload * 1_000_000 + i, "name": "x"} for i in range(rows)]).encode()
        assert len(body) < 8 * 1024 * 1024
        return post(platform, writer, body, "application/json")

    with ThreadPoolExecutor(12) as uploads:
        answers = list(uploads.map(insert, range(12)))
    statuses = sorted(a.status for a in answers)
    print(f"12 JSON inserts of ~8 MiB at once: {statuses}")
    assert set(statuses) <= {201, 503} and 201 in statuses, statuses
    assert all(a.headers.get("retry-after") for a in answers if a.status == 503)
    assert platform.psql(f"SELECT count(*) FROM {TABLE}").strip() == str(statuses.count(201) * rows)
    assert api_tasks() == tasks_before, "Swarm replaced a db_connect task (killed for memory?)"


@pytest.mark.parametrize("role", ["none", "public", "session_user", "db_connect", "postgres"])
def test_a_jwt_may_only_name_a_request_role(platform: Platform, role: str) -> None:
    """`role: none` once ran the request as the authenticator itself (SET ROLE NONE)."""
    secret = platform.deploy("secrets", "show", "db_connect_jwt_secret").stdout.strip()
    token = jwt.encode({"role": role}, secret, algorithm="HS256")
    refused = platform.get(API_HOST, PATH, headers={"Authorization": f"Bearer {token}"})
    assert refused.status == 403, refused.body[:300]
    assert json.loads(refused.body)["code"] == "role_not_allowed"
