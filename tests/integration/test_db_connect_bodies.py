"""Request bodies through a real uvicorn server and real sockets: slow uploads, refused bodies.

A body is read whole before the request takes a pooled connection, so slow senders cannot starve reads
or the health check; a refused body is still read to its end (within bounds) before the answer, so a
proxy streaming it (nginx, `proxy_request_buffering off`) gets the API's answer, not a reset connection.
"""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import jwt
import pytest
import uvicorn

from db_connect.app import create_app
from db_connect.settings import Settings
from tests.integration.conftest import DB_CONNECT_API_KEY, DB_CONNECT_JWT_SECRET, DbConnectWarehouse, free_port

SETUP_SQL = """
CREATE TABLE consumption.uploads (id integer PRIMARY KEY, name text NOT NULL);
GRANT SELECT, INSERT ON consumption.uploads TO api_writer;
GRANT SELECT ON consumption.uploads TO api_reader;
"""
POOL_SIZE = 3
SLOW_UPLOADS = 2 * POOL_SIZE
JSON_LIMIT = 16 * 1024
WRITER = jwt.encode({"role": "api_writer"}, DB_CONNECT_JWT_SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def warehouse(db_connect_warehouse: DbConnectWarehouse) -> Iterator[DbConnectWarehouse]:
    db_connect_warehouse.execute(SETUP_SQL)
    yield db_connect_warehouse
    db_connect_warehouse.execute("DROP TABLE consumption.uploads")


@contextmanager
def served(settings: Settings) -> Iterator[tuple[str, int]]:
    """db_connect under a real uvicorn (httptools, as the image runs it) on 127.0.0.1, until the block ends."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", http="httptools")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started or httpx.get(f"http://127.0.0.1:{port}/health").status_code != 200:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not become healthy"
            time.sleep(0.05)
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def api(warehouse: DbConnectWarehouse) -> Iterator[tuple[str, int]]:
    settings = Settings(**warehouse.environment(), pool_max_size=POOL_SIZE, max_json_body_bytes=JSON_LIMIT)
    with served(settings) as address:
        yield address


def request_head(method: str, path: str, content_type: str, connection: str = "keep-alive") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {WRITER}\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: {connection}\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def response_of(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one response with a Content-Length (all of the API's own answers have one)."""
    received = b""
    while b"\r\n\r\n" not in received:
        data = sock.recv(65536)
        assert data, f"the connection closed before a response: {received!r}"
        received += data
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        data = sock.recv(65536)
        assert data, "the connection closed in the middle of a response"
        body += data
    return int(head.split()[1]), body


CSV_UPLOAD = ("text/csv", "id,name\n{id},first\n", "{id},row\n", "")
JSON_UPLOAD = ("application/json", '[{{"id": {id}, "name": "first"}}', ', {{"id": {id}, "name": "row"}}', "]")


@pytest.mark.parametrize("upload_format", [CSV_UPLOAD, JSON_UPLOAD], ids=["csv", "json"])
def test_slow_uploads_beyond_the_pool_size_leave_reads_and_health_served(
    api: tuple[str, int], warehouse: DbConnectWarehouse, upload_format: tuple[str, str, str, str]
) -> None:
    """Twice as many uploads as pooled connections trickle in rows; every read and health check meanwhile answers
    200 within a second (it waited 5 s for a connection, then 503, when a CSV upload held one while its body came)."""
    content_type, first, row, last = upload_format
    warehouse.execute("TRUNCATE consumption.uploads")
    host, port = api
    uploads = [socket.create_connection((host, port), timeout=30) for _ in range(SLOW_UPLOADS)]
    latencies: list[float] = []
    try:
        for number, upload in enumerate(uploads):
            upload.sendall(request_head("POST", "/consumption/uploads", content_type))
            upload.sendall(chunk(first.format(id=number).encode()))
        time.sleep(0.5)  # every upload has begun, and, before, held its connection
        with httpx.Client(base_url=f"http://{host}:{port}", headers={"X-API-Key": DB_CONNECT_API_KEY}) as reader:
            for round_ in range(4):
                for path in ("/consumption/uploads", "/health"):
                    started = time.monotonic()
                    assert reader.get(path, timeout=10).status_code == 200
                    latencies.append(time.monotonic() - started)
                for number, upload in enumerate(uploads):  # a row now and then: the uploads are still going
                    upload.sendall(chunk(row.format(id=100 * (round_ + 1) + number).encode()))
                time.sleep(0.25)
        for upload in uploads:
            upload.sendall((chunk(last.encode()) if last else b"") + b"0\r\n\r\n")
        assert [response_of(upload)[0] for upload in uploads] == [201] * SLOW_UPLOADS
    finally:
        for upload in uploads:
            upload.close()
    print(f"GET latency during {SLOW_UPLOADS} slow uploads (pool {POOL_SIZE}): max {max(latencies) * 1000:.0f} ms")
    assert max(latencies) < 1.0
    assert warehouse.execute("SELECT count(*) FROM consumption.uploads") == [(SLOW_UPLOADS * 5,)]


@pytest.mark.parametrize(
    ("content_type", "opening", "status", "code"),
    [
        ("application/json", b'[{"id": 1, "name": "', 413, "body_too_large"),
        ("text/csv", b"id,name", 400, "invalid_body"),  # a header line that never ends
    ],
    ids=["json over the limit", "csv header line too long"],
)
def test_a_refused_body_is_read_to_its_end_before_the_answer(
    api: tuple[str, int], content_type: str, opening: bytes, status: int, code: str
) -> None:
    """nginx streams the body on (`proxy_request_buffering off`) and asks `Connection: close`: were the connection
    closed with the body unread, its next write would meet a reset, and its client would get nginx's 503."""
    with socket.create_connection(api, timeout=10) as sock:
        sock.sendall(request_head("POST", "/consumption/uploads", content_type, "close") + chunk(opening))
        for _ in range(2 * 1024 * 1024 // 8192):  # 2 MiB: past the JSON limit and the longest CSV header line
            sock.sendall(chunk(b"x" * 8192))
            time.sleep(0.0005)  # as a proxy relays it: the answer is decided long before the end
        sock.sendall(b"0\r\n\r\n")
        answered, body = response_of(sock)
    assert answered == status
    error = httpx.Response(status, content=body).json()
    assert set(error) == {"code", "message", "details", "hint"} and error["code"] == code


def test_a_refused_body_leaves_a_kept_alive_connection_usable(api: tuple[str, int]) -> None:
    with socket.create_connection(api, timeout=10) as sock:
        sock.sendall(request_head("POST", "/consumption/uploads", "application/json") + chunk(b"[" * (JSON_LIMIT + 1)))
        sock.sendall(b"0\r\n\r\n")
        assert response_of(sock)[0] == 413
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: api\r\n\r\n")
        assert response_of(sock)[0] == 200


def test_json_bodies_beyond_the_process_budget_wait_their_turn_with_503_and_the_others_go_on(
    warehouse: DbConnectWarehouse,
) -> None:
    """A JSON body is parsed whole (~13 times its size in memory): a few large ones at once could get a replica
    killed for memory. Two bodies of 12 KiB fit a 32 KiB budget; a third, meanwhile, is told to retry."""
    warehouse.execute("TRUNCATE consumption.uploads")
    settings = Settings(
        **warehouse.environment(), max_json_body_bytes=JSON_LIMIT, json_bodies_in_flight_bytes=2 * JSON_LIMIT
    )
    opening = '[{{"id": {id}, "name": "' + "x" * 12_000
    with served(settings) as address:
        holding = [socket.create_connection(address, timeout=10) for _ in range(2)]
        try:
            for number, upload in enumerate(holding):
                upload.sendall(request_head("POST", "/consumption/uploads", "application/json"))
                upload.sendall(chunk(opening.format(id=number).encode()))
            time.sleep(0.3)  # both bodies are being read, holding their share
            with socket.create_connection(address, timeout=10) as third:
                third.sendall(request_head("POST", "/consumption/uploads", "application/json", "close"))
                third.sendall(chunk(opening.format(id=2).encode()) + chunk(b'"}]') + b"0\r\n\r\n")
                status, body = response_of(third)
            assert status == 503
            assert httpx.Response(503, content=body).json()["code"] == "too_many_uploads"
            for upload in holding:
                upload.sendall(chunk(b'"}]') + b"0\r\n\r\n")
            assert [response_of(upload)[0] for upload in holding] == [201, 201]
        finally:
            for upload in holding:
                upload.close()
        retried = httpx.post(
            f"http://{address[0]}:{address[1]}/consumption/uploads",
            json=[{"id": 2, "name": "x" * 12_000}],
            headers={"Authorization": f"Bearer {WRITER}"},
        )
        assert retried.status_code == 201, "the budget is given back when a request ends"
    assert warehouse.execute("SELECT count(*) FROM consumption.uploads") == [(3,)]


def test_a_budget_smaller_than_one_body_is_a_configuration_error(warehouse: DbConnectWarehouse) -> None:
    with pytest.raises(ValueError, match=r"JSON_BODIES_IN_FLIGHT_BYTES .* must be at least MAX_JSON_BODY_BYTES"):
        Settings(**warehouse.environment(), max_json_body_bytes=JSON_LIMIT, json_bodies_in_flight_bytes=JSON_LIMIT - 1)
