"""db_connect through nginx on a real platform: roles from the init job, keys CLI, schema NOTIFY, OpenAPI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from stack import http
from tests.e2e.conftest import Platform


def request(platform: Platform, method: str, path: str, key: str, body: object = None) -> http.Response:
    data = json.dumps(body).encode() if body is not None else None
    all_headers = {"X-API-Key": key, "Content-Type": "application/json"}
    return platform.get("api.localhost", path, method=method, body=data, headers=all_headers)


def keys_cli(platform: Platform, *args: str) -> str:
    return platform.deploy("api-keys", *args).stdout


def eventually(check: Callable[[], bool], timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return result


def test_a_new_table_is_served_after_its_ddl_and_writes_need_a_writer_key(platform: Platform) -> None:
    platform.psql(
        "CREATE TABLE IF NOT EXISTS consumption.e2e_orders (id integer PRIMARY KEY, item text NOT NULL);"
        "TRUNCATE consumption.e2e_orders; INSERT INTO consumption.e2e_orders VALUES (1, 'apple'), (2, 'pear')"
    )
    # The init job's event trigger NOTIFYs db_connect; its default privileges let api_reader read.
    assert eventually(lambda: platform.api("/consumption/e2e_orders?order=id").status == 200)
    rows = json.loads(platform.api("/consumption/e2e_orders?item=eq.pear").body)
    assert rows == [{"id": 2, "item": "pear"}]

    spec = json.loads(platform.api("/openapi.json").body)
    assert "/consumption/e2e_orders" in spec["paths"], "the OpenAPI 3 document follows the schema cache"

    refused = request(platform, "POST", "/consumption/e2e_orders", platform.api_key, {"id": 3, "item": "fig"})
    assert refused.status == 403, "the platform key maps to api_reader"

    writer = keys_cli(platform, "create", "--role", "api_writer", "--name", "e2e-writer").strip()
    try:
        created = eventually(
            lambda: (
                request(platform, "POST", "/consumption/e2e_orders", writer, [{"id": 3, "item": "fig"}]).status
                in (201, 409)
            )
        )
        assert created
        assert platform.psql("SELECT item FROM consumption.e2e_orders WHERE id = 3").strip() == "fig"
        csv = platform.get(
            "api.localhost", "/consumption/e2e_orders?order=id", headers={"X-API-Key": writer, "Accept": "text/csv"}
        )
        assert csv.body.decode().splitlines() == ['"id","item"', '"1","apple"', '"2","pear"', '"3","fig"']
        assert "e2e-writer" in keys_cli(platform, "list")
    finally:
        keys_cli(platform, "revoke", "e2e-writer")
    assert eventually(lambda: platform.api("/consumption/e2e_orders").status == 200)
    assert eventually(lambda: request(platform, "GET", "/consumption/e2e_orders", writer).status == 401)


def test_long_query_strings_pass_and_what_nginx_refuses_on_the_api_host_is_json(platform: Platform) -> None:
    fits = platform.api("/?pad=" + "x" * 40_000)  # filters and in-lists: nginx's 8 KiB default would refuse it
    assert fits.status == 200, fits.body[:200]
    too_long = platform.api("/?pad=" + "x" * 70_000)
    assert too_long.status == 414
    assert json.loads(too_long.body)["code"] == "uri_too_long"
