"""Authentication maps a credential to a Postgres role; GRANTs and row-level security do the rest."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient

from db_connect.app import create_app
from db_connect.settings import Settings
from tests.integration.conftest import DB_CONNECT_API_KEY, DB_CONNECT_JWT_SECRET, DbConnectWarehouse

ROOT = Path(__file__).resolve().parents[2]
SETUP_SQL = """
CREATE TABLE consumption.accounts (id integer PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL);
INSERT INTO consumption.accounts VALUES (1, 'alice', 10), (2, 'bob', 20), (3, 'alice', 30);
ALTER TABLE consumption.accounts ENABLE ROW LEVEL SECURITY;
CREATE ROLE alice NOLOGIN;
GRANT alice TO db_connect;
GRANT USAGE ON SCHEMA consumption TO alice;
GRANT SELECT ON consumption.accounts TO alice, api_reader, api_anon;
CREATE POLICY own_rows ON consumption.accounts TO alice USING (owner = current_user);
CREATE POLICY everything ON consumption.accounts TO api_reader USING (true);
CREATE POLICY nothing ON consumption.accounts TO api_anon USING (false);
CREATE ROLE stranger NOLOGIN;
CREATE ROLE readers_group NOLOGIN;
GRANT readers_group TO api_reader;
GRANT USAGE ON SCHEMA consumption TO readers_group;
GRANT SELECT ON consumption.accounts TO readers_group;
CREATE POLICY everything_for_the_group ON consumption.accounts TO readers_group USING (true);
"""


def bearer(claims: dict, secret: str = DB_CONNECT_JWT_SECRET) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


@pytest.fixture(scope="module")
def warehouse(db_connect_warehouse: DbConnectWarehouse) -> Iterator[DbConnectWarehouse]:
    db_connect_warehouse.execute(SETUP_SQL)
    yield db_connect_warehouse
    db_connect_warehouse.execute(
        "DROP TABLE consumption.accounts; DROP OWNED BY alice, stranger, readers_group;"
        " DROP ROLE alice, stranger, readers_group"
    )


@pytest.fixture(scope="module")
def client(warehouse: DbConnectWarehouse) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(**warehouse.environment()))) as test_client:
        yield test_client


def ids(response: object) -> list[int]:
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    return [row["id"] for row in response.json()]  # type: ignore[attr-defined]


def test_the_shared_key_runs_as_its_default_role(client: TestClient) -> None:
    assert ids(client.get("/consumption/accounts", headers={"X-API-Key": DB_CONNECT_API_KEY})) == [1, 2, 3]


def test_a_jwt_runs_as_its_role_claim_and_row_level_security_applies(client: TestClient) -> None:
    assert ids(client.get("/consumption/accounts", headers=bearer({"role": "alice"}))) == [1, 3]
    assert ids(client.get("/consumption/accounts?id=eq.2", headers=bearer({"role": "alice"}))) == []


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        (bearer({"role": "alice", "exp": int(time.time()) - 60}), 401, "jwt_expired"),
        (bearer({"role": "alice"}, secret="another-secret-another-secret-0000"), 401, "invalid_jwt"),
        (bearer({"sub": "alice"}), 401, "invalid_jwt"),
        ({"Authorization": "Bearer a.b.c"}, 401, "invalid_jwt"),
    ],
    ids=["expired", "wrong secret", "no role claim", "junk"],
)
def test_bad_tokens_are_refused(client: TestClient, headers: dict, status: int, code: str) -> None:
    response = client.get("/consumption/accounts", headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


@pytest.mark.parametrize(
    "role",
    [
        "none",  # set_config('role', 'none') is SET ROLE NONE: the authenticator itself
        "NONE",
        "public",
        "session_user",
        "current_user",
        "",
        "db_connect",  # the authenticator
        "readers_group",  # a group of a request role: the authenticator reaches it, but only through api_reader
        "stranger",  # not granted
        "postgres",  # the superuser
        "no_such_role",  # refused like the others: whether a role exists is no caller's business
        ["api_reader"],
    ],
)
def test_a_jwt_role_other_than_a_request_role_is_refused_in_postgrest_shape(client: TestClient, role: object) -> None:
    response = client.get("/consumption/accounts", headers=bearer({"role": role}))
    assert response.status_code == 403, response.text
    assert response.json() == {
        "code": "role_not_allowed",
        "message": "The credential names no role this API may use",
        "details": None,
        "hint": "A request runs as a role granted to the API's login role (GRANT role TO db_connect)",
    }


def test_jwt_algorithm_none_is_refused(client: TestClient) -> None:
    unsigned = jwt.encode({"role": "api_reader"}, key=None, algorithm="none")
    assert client.get("/consumption/accounts", headers={"Authorization": f"Bearer {unsigned}"}).status_code == 401


def test_without_credentials_requests_are_refused_by_default(client: TestClient) -> None:
    assert client.get("/consumption/accounts").status_code == 401


def test_an_anonymous_role_when_configured_serves_requests_without_credentials(warehouse: DbConnectWarehouse) -> None:
    with TestClient(create_app(Settings(**warehouse.environment(), anonymous_role="api_anon"))) as client:
        assert ids(client.get("/consumption/accounts")) == []  # its policy shows nothing
        response = client.post("/consumption/accounts", json={"id": 9, "owner": "x", "balance": 1})
        assert response.status_code == 401, "an anonymous caller without the grant is asked to authenticate"


def cli(warehouse: DbConnectWarehouse, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | warehouse.environment()
    return subprocess.run(
        [sys.executable, "-m", "db_connect", "keys", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def eventually_status(client: TestClient, headers: dict[str, str], status: int) -> int:
    deadline = time.monotonic() + 10
    while (got := client.get("/consumption/accounts", headers=headers).status_code) != status:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return got


def test_keys_created_listed_and_revoked_from_the_command_line(
    client: TestClient, warehouse: DbConnectWarehouse
) -> None:
    created = cli(warehouse, "create", "--role", "alice", "--name", "alice-laptop")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("sk_") and len(key) > 40
    assert warehouse.execute("SELECT count(*) FROM db_connect.api_keys WHERE key_sha256 = %s", (key,)) == [(0,)]

    assert eventually_status(client, {"X-API-Key": key}, 200) == 200
    assert ids(client.get("/consumption/accounts", headers={"X-API-Key": key})) == [1, 3]

    listed = cli(warehouse, "list")
    assert "alice-laptop" in listed.stdout and "alice" in listed.stdout and key not in listed.stdout
    assert cli(warehouse, "create", "--role", "alice", "--name", "alice-laptop").returncode == 1
    assert cli(warehouse, "create", "--role", "nobody", "--name", "x").returncode == 1
    refused = cli(warehouse, "create", "--role", "readers_group", "--name", "x")  # reachable, but not a request role
    assert refused.returncode == 1 and "not a request role" in refused.stderr

    revoked = cli(warehouse, "revoke", "alice-laptop")
    assert revoked.returncode == 0, revoked.stderr
    assert eventually_status(client, {"X-API-Key": key}, 401) == 401
    assert cli(warehouse, "list").stdout.splitlines()[1].split()[-1] != "-", "the revocation time is listed"
    assert cli(warehouse, "revoke", "alice-laptop").returncode == 1
