"""Metabase's setup client (bi/metabase/setup.py) against the fake in fake_metabase.py, over real HTTP on 127.0.0.1.

These prove the client's logic against behaviours cited from Metabase's source, not that it works with a live
Metabase (none can run here).
"""

from __future__ import annotations

import pytest

from bi.metabase import setup
from tests.unit.fake_metabase import PROTECTED_PASSWORD, FakeMetabase, Served

SECRETS = {"bi_admin_password": "admin-pw-1", "bi_db_password": "db-pw-1"}
ENVIRON = {"SAWMILL_SETUP_TIMEOUT": "20", "SAWMILL_WAREHOUSE_HOST": "sawmill_postgres_server"}


def run(fake: FakeMetabase, secrets: dict[str, str] = SECRETS, **environ: str) -> None:
    with Served(fake) as served:
        setup.run({**ENVIRON, "SAWMILL_METABASE_URL": served.url, **environ}, secrets.__getitem__, lambda s: None)


def test_a_fresh_metabase_is_waited_for_set_up_once_and_given_the_warehouse() -> None:
    fake = FakeMetabase(initializing_checks=2)
    run(fake)
    assert fake.requests[:3] == [("GET", "/api/health")] * 3  # two 503s while initializing, then ready
    assert fake.users == {setup.ADMIN_EMAIL: "admin-pw-1"}
    assert fake.setup_token is None
    [warehouse] = fake.databases.values()
    assert (warehouse["name"], warehouse["engine"]) == ("warehouse", "postgres")
    assert warehouse["details"]["password"] == "db-pw-1"
    assert warehouse["details"]["host"] == "sawmill_postgres_server"
    assert fake.synced == [warehouse["id"]]


def test_a_second_run_logs_in_and_adds_no_second_data_source() -> None:
    fake = FakeMetabase()
    run(fake)
    run(fake)
    assert ("POST", "/api/setup") in fake.requests
    assert fake.requests.count(("POST", "/api/setup")) == 1  # the token is gone once a user exists
    assert fake.requests.count(("POST", "/api/session")) == 1
    assert [d["name"] for d in fake.databases.values()] == ["warehouse"]


def test_a_rotated_warehouse_password_replaces_the_stored_one_despite_the_redacted_get() -> None:
    fake = FakeMetabase()
    run(fake)
    run(fake, {**SECRETS, "bi_db_password": "db-pw-2"})
    [warehouse] = fake.databases.values()
    assert warehouse["details"]["password"] == "db-pw-2"
    assert PROTECTED_PASSWORD not in str(fake.databases)


def test_presto_is_added_only_where_the_platform_runs_it() -> None:
    fake = FakeMetabase()
    run(fake, SAWMILL_PRESTO_HOST="sawmill_presto_coordinator")
    assert sorted(d["name"] for d in fake.databases.values()) == ["presto", "warehouse"]
    presto = next(d for d in fake.databases.values() if d["name"] == "presto")
    assert presto["details"]["catalog"] == "warehouse"


def test_a_setup_raced_by_another_run_falls_back_to_logging_in() -> None:
    fake = FakeMetabase()
    fake.users[setup.ADMIN_EMAIL] = "admin-pw-1"  # made by another run after this one read the token
    fake.setup_token = "still-offered"
    original = fake.handle

    def has_user_setup_false(method: str, path: str, body: object, session: str | None) -> tuple[int, object]:
        status, payload = original(method, path, body, session)
        if path == "/api/session/properties":
            payload = {**payload, "has-user-setup": False}  # type: ignore[dict-item]
        return status, payload

    fake.handle = has_user_setup_false  # type: ignore[method-assign]
    run(fake)
    assert ("POST", "/api/setup") in fake.requests and ("POST", "/api/session") in fake.requests
    assert [d["name"] for d in fake.databases.values()] == ["warehouse"]


def test_a_wrong_admin_password_fails_with_what_to_do() -> None:
    fake = FakeMetabase()
    fake.users[setup.ADMIN_EMAIL] = "changed-by-hand"
    fake.setup_token = None
    with pytest.raises(setup.SetupError, match=r"401.*secrets show bi_admin_password"):
        run(fake)
    assert fake.databases == {}


def test_the_database_api_needs_the_session_the_client_got_at_log_in() -> None:
    fake = FakeMetabase(initializing_checks=0)
    with Served(fake) as served:
        assert setup.Client(served.url).call("GET", "/api/database") == setup.Response(401, "Unauthenticated")
    run(fake)  # would stop with "GET /api/database: 401" had it not sent its session
    database_calls = [r for r in fake.requests if r[1].startswith("/api/database")][1:]
    assert database_calls == [
        ("GET", "/api/database"),
        ("POST", "/api/database"),
        ("POST", "/api/database/2/sync_schema"),
    ]


def test_metabase_that_never_becomes_healthy_fails_within_the_timeout() -> None:
    fake = FakeMetabase(initializing_checks=10_000)
    with pytest.raises(setup.SetupError, match=r"not healthy within 3 s.*initializing"), Served(fake) as served:
        setup.Client(served.url).wait_healthy(3, sleep=lambda s: None)
