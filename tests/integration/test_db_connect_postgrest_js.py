"""postgrest-js, Supabase's JavaScript client, run under Node against db_connect on a real Postgres.

postgrest_js_calls.mjs makes the documented calls once, in order (writes included), and reports what the
client returned and the HTTP status and headers it saw; each test here checks one call against what
PostgREST's docs specify. The package is installed with npm, pinned, into a cache outside the repository.
"""

import csv
import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import DbConnectWarehouse
from tests.integration.postgrest_compat import served

POSTGREST_JS = "@supabase/postgrest-js@2.109.0"  # the newest release that supports Node 20
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sawmill" / POSTGREST_JS.replace("/", "_")
CALLS = Path(__file__).with_name("postgrest_js_calls.mjs")

Results = dict[str, dict[str, Any]]


def node_major() -> int:
    if shutil.which("node") is None:
        return 0
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout
    return int(version.strip().lstrip("v").split(".")[0])


def installed() -> Path:
    """The package's ES module entry, installed once per machine with npm's own registry settings."""
    entry = CACHE / "node_modules" / "@supabase" / "postgrest-js" / "dist" / "index.mjs"
    if not entry.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-save", "--no-package-lock", "--prefix", str(CACHE), POSTGREST_JS],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return entry


@pytest.fixture(scope="module")
def results(db_connect_warehouse: DbConnectWarehouse) -> Results:
    # a failure, not a skip: these machines have Node 20; Debian's nodejs (18) would be named here as too old
    assert node_major() >= 20, "postgrest-js 2.109 needs Node 20 or later on PATH"
    entry = installed()
    with served(db_connect_warehouse) as api:
        env = os.environ | {
            "POSTGREST_JS": entry.as_uri(),
            "API_URL": api.url,
            "READER_KEY": api.reader_key,
            "WRITER_TOKEN": api.writer_token,
        }
        done = subprocess.run(["node", str(CALLS)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ids(result: dict[str, Any]) -> list[int]:
    assert result["error"] is None, result
    return [row["id"] for row in result["data"]]


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ("eq", [4]),
        ("neq", [2]),
        ("gt", [1]),
        ("gte", [1, 3]),
        ("lt", [2, 3]),
        ("lte", [2]),
        ("like", [2]),
        ("ilike", [1, 3]),
        ("likeAnyOf", [2, 4]),
        ("is", [4]),
        ("in", [1, 3]),
        ("match", [3]),
        ("or", [2, 4]),
        ("not", [1, 2, 3]),
        ("containsArray", [1, 3]),
        ("containedBy", [1, 3, 4]),
        ("overlapsArray", [1, 2]),
        ("containsRange", [1, 2, 3]),
        ("overlapsRange", [1]),
        ("rangeGt", [1, 2]),
        ("rangeLt", [3]),
        ("rangeAdjacent", [1]),
        ("containsJson", [1, 3]),
        ("jsonPathFilter", [3]),
        ("fts", [2]),
        ("plfts", [1]),
        ("phfts", [3]),
        ("wfts", [2]),
        ("orderNullsFirst", [4, 1, 3, 2]),
        ("range", [2, 3]),
    ],
)
def test_filters_order_and_range_select_the_rows_postgrest_would(
    results: Results, call: str, expected: list[int]
) -> None:
    assert ids(results[call]) == expected
    assert results[call]["status"] == 200


def test_select_answers_json_with_content_range(results: Results) -> None:
    result = results["select"]
    assert result["data"] == [{"id": 1, "title": "The Dispossessed"}, {"id": 2, "title": "Invisible Cities"}]
    assert result["response"]["headers"]["content-range"] == "0-1/*"
    assert result["response"]["headers"]["content-type"].startswith("application/json")


def test_json_paths_in_select(results: Results) -> None:
    assert results["jsonPathSelect"]["data"] == [{"id": 1, "language": "en", "year": 1974}]


@pytest.mark.parametrize("call", ["countExact", "countPlanned", "countEstimated"])
def test_counts_and_206_for_a_partial_page(results: Results, call: str) -> None:
    result = results[call]
    assert (result["count"], result["status"], ids(result)) == (4, 206, [1, 2])
    assert result["response"]["headers"]["content-range"] == "0-1/4"


def test_head_counts_without_a_body(results: Results) -> None:
    result = results["head"]
    assert (result["count"], result["data"], result["response"]["method"]) == (4, None, "HEAD")


def test_single_and_maybe_single(results: Results) -> None:
    single = results["single"]
    assert single["data"] == {"id": 3, "title": "The Lathe of Heaven"}
    assert single["response"]["headers"]["content-type"].startswith("application/vnd.pgrst.object+json")
    many = results["singleOfMany"]
    assert (many["status"], many["error"]["code"]) == (406, "PGRST116")
    assert (results["maybeSingleOfNone"]["data"], results["maybeSingleOfNone"]["error"]) == (None, None)


def test_csv(results: Results) -> None:
    result = results["csv"]
    assert result["response"]["headers"]["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(result["data"])))
    assert rows[:2] == [["id", "title", "pages"], ["1", "The Dispossessed", "387"]]


def test_strip_nulls(results: Results) -> None:
    assert results["stripNulls"]["data"] == [{"id": 4}]


def test_embedding_with_referenced_table_order_limit_and_inner(results: Results) -> None:
    assert results["embedding"]["data"] == [
        {"name": "Le Guin", "books": [{"title": "The Lathe of Heaven"}]},
        {"name": "Calvino", "books": [{"title": "Invisible Cities"}]},
        {"name": "Nobody", "books": []},
    ]
    assert results["embeddingInner"]["data"] == [{"name": "Calvino", "books": [{"title": "Invisible Cities"}]}]


def test_writes_answer_as_postgrest_does(results: Results) -> None:
    assert (results["insert"]["status"], results["insert"]["data"]) == (
        201,
        [{"id": 1, "title": "first", "status": "new"}],
    )
    assert results["bulkInsert"]["data"] == [
        {"id": 2, "title": "two", "status": "new"},
        {"id": 3, "title": None, "status": "new"},
    ]
    assert results["upsert"]["data"] == [{"id": 1, "title": "again", "status": "new"}]
    assert (results["upsertIgnore"]["status"], results["upsertIgnore"]["data"]) == (201, [])
    assert (results["update"]["status"], results["update"]["data"]) == (
        200,
        [{"id": 1, "title": "again", "status": "done"}],
    )
    assert (results["delete"]["status"], ids(results["delete"])) == (200, [2])
    assert (results["deleteMinimal"]["status"], results["deleteMinimal"]["data"]) == (204, None)
    assert results["afterWrites"]["data"] == [{"id": 1, "title": "again", "status": "done"}]


def test_default_to_null_false_gives_a_missing_key_its_default(results: Results) -> None:
    assert results["missingDefault"]["data"] == [{"id": 7, "status": "set"}, {"id": 8, "status": "new"}]


def test_an_insert_returns_its_row_with_embedded_resources(results: Results) -> None:
    assert results["insertEmbedding"]["data"] == {
        "stars": 3,
        "books": {"title": "The Dispossessed", "authors": {"name": "Le Guin"}},
    }


def test_single_on_writes_is_one_object_or_a_406_that_writes_nothing(results: Results) -> None:
    assert (results["insertSingle"]["status"], results["insertSingle"]["data"]) == (201, {"id": 4, "title": "four"})
    assert (results["insertSingleOfTwo"]["status"], results["insertSingleOfTwo"]["error"]["code"]) == (406, "PGRST116")
    assert results["deleteSingle"]["data"] == {"id": 4}
    assert 5 not in ids(results["afterWrites"]), "the refused insert was rolled back"


def test_max_affected_refuses_and_rolls_back(results: Results) -> None:
    assert (results["maxAffected"]["status"], results["maxAffected"]["error"]["code"]) == (400, "PGRST124")


def test_an_update_without_a_filter_is_refused(results: Results) -> None:
    """Deliberately unlike PostgREST, which would change every row."""
    assert (results["updateWithoutFilter"]["status"], results["updateWithoutFilter"]["error"]["code"]) == (
        400,
        "filter_required",
    )


def test_profiles_select_the_schema(results: Results) -> None:
    assert results["profile"]["data"] == [{"id": 1, "name": "row counts"}]
    assert (results["unexposedProfile"]["status"], results["unexposedProfile"]["error"]["code"]) == (406, "PGRST106")


def test_rpc(results: Results) -> None:
    assert (results["rpcPost"]["data"], results["rpcPost"]["response"]["method"]) == (2, "POST")
    assert (results["rpcGet"]["data"], results["rpcGet"]["response"]["method"]) == (3, "GET")
    assert results["rpcRows"]["data"] == [{"id": 3, "title": "The Lathe of Heaven"}]
    assert (results["rpcUnknown"]["status"], results["rpcUnknown"]["error"]["code"]) == (404, "PGRST202")


def test_errors_carry_postgrests_four_keys(results: Results) -> None:
    error = results["unknownColumn"]["error"]
    assert results["unknownColumn"]["status"] == 400
    assert set(error) == {"code", "message", "details", "hint"} and "nope" in error["message"]
