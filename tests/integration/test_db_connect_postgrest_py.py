"""postgrest-py, Supabase's Python client, used as its docs show, against db_connect on a real Postgres.

Every call checks the body the client hands back and the status and headers PostgREST's docs specify
(recorded from the client's own HTTP session). Where db_connect deliberately differs, the test says so.
"""

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from postgrest import APIError, SyncPostgrestClient
from postgrest.types import CountMethod

from tests.integration.conftest import DbConnectWarehouse
from tests.integration.postgrest_compat import Served, served


@pytest.fixture(scope="module")
def api(db_connect_warehouse: DbConnectWarehouse) -> Iterator[Served]:
    with served(db_connect_warehouse) as running:
        yield running


class Recorded:
    """The last HTTP response a client received, for status and headers."""

    response: httpx.Response

    def __call__(self, response: httpx.Response) -> None:
        self.response = response


@pytest.fixture
def last() -> Recorded:
    return Recorded()


def client(api: Served, last: Recorded, token: str, schema: str = "consumption") -> SyncPostgrestClient:
    postgrest = SyncPostgrestClient(api.url, schema=schema, headers={"Authorization": f"Bearer {token}"})
    postgrest.session.event_hooks["response"].append(last)
    return postgrest


@pytest.fixture
def reader(api: Served, last: Recorded) -> SyncPostgrestClient:
    return client(api, last, api.reader_key)


@pytest.fixture
def writer(api: Served, last: Recorded, db_connect_warehouse: DbConnectWarehouse) -> Iterator[SyncPostgrestClient]:
    db_connect_warehouse.execute("TRUNCATE consumption.drafts")
    yield client(api, last, api.writer_token)


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [row["id"] for row in rows]


def test_select_names_the_columns_and_answers_json(reader: SyncPostgrestClient, last: Recorded) -> None:
    rows = reader.from_("books").select("id,title").order("id").limit(2).execute().data
    assert rows == [{"id": 1, "title": "The Dispossessed"}, {"id": 2, "title": "Invisible Cities"}]
    assert last.response.status_code == 200
    assert last.response.headers["content-type"].startswith("application/json")
    assert last.response.headers["content-range"] == "0-1/*"


Filter = Callable[[Any], Any]


@pytest.mark.parametrize(
    ("apply", "expected"),
    [
        (lambda q: q.eq("title", "Untitled"), [4]),
        (lambda q: q.neq("author_id", 1), [2]),
        (lambda q: q.gt("pages", 184), [1]),
        (lambda q: q.gte("pages", 184), [1, 3]),
        (lambda q: q.lt("pages", 185), [2, 3]),
        (lambda q: q.lte("pages", 165), [2]),
        (lambda q: q.like("title", "%Cities"), [2]),
        (lambda q: q.ilike("title", "the%"), [1, 3]),
        (lambda q: q.is_("author_id", "null"), [4]),
        (lambda q: q.in_("id", [1, 3]), [1, 3]),
        (lambda q: q.match({"author_id": 1, "pages": 184}), [3]),
        (lambda q: q.or_("pages.lt.170,title.eq.Untitled"), [2, 4]),
        (lambda q: q.not_.eq("author_id", 1), [2]),
        (lambda q: q.not_.is_("pages", "null"), [1, 2, 3]),
        (lambda q: q.contains("tags", ["scifi"]), [1, 3]),
        (lambda q: q.contained_by("tags", ["scifi", "politics"]), [1, 3, 4]),
        (lambda q: q.overlaps("tags", ["fable", "politics"]), [1, 2]),
        (lambda q: q.contains("period", "[1971,1972)"), [1, 2, 3]),
        (lambda q: q.overlaps("period", "[1974,1980)"), [1]),
        (lambda q: q.range_gt("period", (1960, 1970)), [1, 2]),
        (lambda q: q.range_lt("period", (1972, 1980)), [2, 3]),
        (lambda q: q.range_adjacent("period", (1974, 1980)), [1]),
        (lambda q: q.filter("meta->>lang", "eq", "it"), [2]),
        (lambda q: q.eq("meta->ed->>year", "1971"), [3]),
        (lambda q: q.contains("meta", {"lang": "en"}), [1, 3]),
        (lambda q: q.fts("summary", "cities & kublai"), [2]),
        (lambda q: q.plfts("summary", "twin planets"), [1]),
        (lambda q: q.phfts("summary", "dreams change"), [3]),
        (lambda q: q.wfts("summary", '"imagined cities" -anarchist'), [2]),
        (lambda q: q.text_search("summary", "physicist", options={"config": "english"}), [1]),
    ],
)
def test_every_filter_selects_the_rows_postgrest_would(
    reader: SyncPostgrestClient, last: Recorded, apply: Filter, expected: list[int]
) -> None:
    rows = apply(reader.from_("books").select("id")).order("id").execute().data
    assert ids(rows) == expected, last.response.request.url


def test_json_paths_in_select_are_named_by_their_last_key_or_alias(reader: SyncPostgrestClient) -> None:
    rows = reader.from_("books").select("id,language:meta->>lang,meta->ed->year").eq("id", 1).execute().data
    assert rows == [{"id": 1, "language": "en", "year": 1974}]


def test_casts_in_select(reader: SyncPostgrestClient) -> None:
    rows = reader.from_("books").select("id::text,length:pages::text,meta->ed->>year::int").eq("id", 1).execute().data
    assert rows == [{"id": "1", "length": "387", "year": 1974}]


def test_order_with_nulls_first_and_range_pages(reader: SyncPostgrestClient, last: Recorded) -> None:
    ordered = reader.from_("books").select("id").order("pages", desc=True, nullsfirst=True).execute().data
    assert ids(ordered) == [4, 1, 3, 2]
    page = reader.from_("books").select("id").order("id").range(1, 2).execute()
    assert ids(page.data) == [2, 3]
    assert last.response.headers["content-range"] == "1-2/*"


@pytest.mark.parametrize("method", [CountMethod.exact, CountMethod.planned, CountMethod.estimated])
def test_counts_fill_content_range_and_a_partial_page_is_206(
    reader: SyncPostgrestClient, last: Recorded, method: CountMethod
) -> None:
    response = reader.from_("books").select("id", count=method).order("id").range(0, 1).execute()
    assert response.count == 4
    assert ids(response.data) == [1, 2]
    assert (last.response.status_code, last.response.headers["content-range"]) == (206, "0-1/4")


def test_a_head_request_counts_without_a_body(reader: SyncPostgrestClient, last: Recorded) -> None:
    response = reader.from_("books").select("*", count=CountMethod.exact, head=True).execute()
    assert response.count == 4
    assert last.response.request.method == "HEAD" and last.response.content == b""


def test_single_answers_one_object_with_the_object_media_type(reader: SyncPostgrestClient, last: Recorded) -> None:
    row = reader.from_("books").select("id,title").eq("id", 3).single().execute().data
    assert row == {"id": 3, "title": "The Lathe of Heaven"}
    assert last.response.headers["content-type"].startswith("application/vnd.pgrst.object+json")


def test_single_on_several_rows_is_406_pgrst116(reader: SyncPostgrestClient, last: Recorded) -> None:
    with pytest.raises(APIError) as caught:
        reader.from_("books").select("id").eq("author_id", 1).single().execute()
    assert (caught.value.code, last.response.status_code) == ("PGRST116", 406)
    assert caught.value.details == "The result contains 2 rows"


def test_maybe_single_is_none_for_no_row(reader: SyncPostgrestClient) -> None:
    assert reader.from_("books").select("id").eq("id", 99).maybe_single().execute() is None
    one = reader.from_("books").select("id").eq("id", 2).maybe_single().execute()
    assert one is not None and one.data == {"id": 2}


def test_csv_answers_text_csv_with_a_header_line(reader: SyncPostgrestClient, last: Recorded) -> None:
    text = reader.from_("books").select("id,title,pages").order("id").csv().execute().data
    assert last.response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["id", "title", "pages"]
    assert rows[1] == ["1", "The Dispossessed", "387"]
    assert rows[4] == ["4", "Untitled", ""], "NULL is an empty field"


def test_strip_nulls_leaves_null_members_out(reader: SyncPostgrestClient) -> None:
    rows = reader.from_("books").select("id,pages,meta").eq("id", 4).strip_nulls().execute().data
    assert rows == [{"id": 4}]


def test_embedding_with_order_and_limit_on_the_embedded_table(reader: SyncPostgrestClient) -> None:
    rows = (
        reader.from_("authors")
        .select("name,books(title)")
        .order("id")
        .order("title", desc=True, foreign_table="books")
        .limit(1, foreign_table="books")
        .execute()
        .data
    )
    assert rows == [
        {"name": "Le Guin", "books": [{"title": "The Lathe of Heaven"}]},
        {"name": "Calvino", "books": [{"title": "Invisible Cities"}]},
        {"name": "Nobody", "books": []},
    ]
    parent = reader.from_("books").select("title,authors(name)").eq("id", 2).execute().data
    assert parent == [{"title": "Invisible Cities", "authors": {"name": "Calvino"}}]


def test_insert_returns_the_row_with_201(writer: SyncPostgrestClient, last: Recorded) -> None:
    rows = writer.from_("drafts").insert({"id": 1, "title": "first"}).execute().data
    assert rows == [{"id": 1, "title": "first", "status": "new"}]
    assert last.response.status_code == 201


def test_bulk_insert_sends_columns_and_a_missing_key_is_null(writer: SyncPostgrestClient, last: Recorded) -> None:
    rows = writer.from_("drafts").insert([{"id": 2, "title": "two"}, {"id": 3}]).execute().data
    assert "columns=" in str(last.response.request.url)
    assert rows == [
        {"id": 2, "title": "two", "status": "new"},
        {"id": 3, "title": None, "status": "new"},
    ], "a column not in columns= gets its default"


def test_upsert_merges_or_ignores_duplicates(writer: SyncPostgrestClient) -> None:
    writer.from_("drafts").insert({"id": 1, "title": "first"}).execute()
    merged = writer.from_("drafts").upsert({"id": 1, "title": "again"}).execute().data
    assert merged == [{"id": 1, "title": "again", "status": "new"}]
    ignored = writer.from_("drafts").upsert({"id": 1, "title": "no"}, ignore_duplicates=True).execute().data
    assert ignored == []
    on_title = writer.from_("drafts").upsert([{"id": 1, "status": "kept"}], on_conflict="id").execute().data
    assert on_title == [{"id": 1, "title": "again", "status": "kept"}]


def test_update_and_delete_return_the_rows_they_touched(writer: SyncPostgrestClient, last: Recorded) -> None:
    writer.from_("drafts").insert([{"id": 1, "title": "a"}, {"id": 2, "title": "b"}]).execute()
    updated = writer.from_("drafts").update({"status": "done"}).eq("id", 1).execute().data
    assert updated == [{"id": 1, "title": "a", "status": "done"}]
    assert last.response.status_code == 200
    deleted = writer.from_("drafts").delete().eq("id", 2).execute().data
    assert deleted == [{"id": 2, "title": "b", "status": "new"}]
    assert writer.from_("drafts").select("id").execute().data == [{"id": 1}]


def test_update_and_delete_without_a_filter_are_refused(writer: SyncPostgrestClient, last: Recorded) -> None:
    """Deliberately unlike PostgREST, which changes every row (a known complaint, its issue #1113)."""
    writer.from_("drafts").insert({"id": 1, "title": "a"}).execute()
    for call in (writer.from_("drafts").update({"status": "x"}), writer.from_("drafts").delete()):
        with pytest.raises(APIError) as caught:
            call.execute()
        assert (caught.value.code, last.response.status_code) == ("filter_required", 400)
    assert writer.from_("drafts").select("status").execute().data == [{"status": "new"}]


def test_max_affected_rolls_back_a_write_of_more_rows(writer: SyncPostgrestClient, last: Recorded) -> None:
    writer.from_("drafts").insert([{"id": 1, "title": "a"}, {"id": 2, "title": "b"}]).execute()
    with pytest.raises(APIError) as caught:
        writer.from_("drafts").update({"status": "done"}).gte("id", 0).max_affected(1).execute()
    assert (caught.value.code, last.response.status_code) == ("PGRST124", 400)
    assert writer.from_("drafts").select("status").eq("status", "done").execute().data == []
    one = writer.from_("drafts").delete().eq("id", 2).max_affected(1).execute().data
    assert ids(one) == [2]


def test_accept_profile_and_content_profile_select_the_schema(api: Served, last: Recorded) -> None:
    quality = client(api, last, api.reader_key).schema("quality")
    assert quality.from_("checks").select("*").execute().data == [{"id": 1, "name": "row counts"}]
    assert last.response.request.headers["accept-profile"] == "quality"
    with pytest.raises(APIError) as caught:
        client(api, last, api.writer_token, "quality").from_("checks").insert({"id": 2, "name": "x"}).execute()
    assert (caught.value.code, last.response.status_code) == ("42501", 403), "the writer has no grant there"
    assert "checks" in (caught.value.message or "")


def test_an_unexposed_schema_is_406_pgrst106(api: Served, last: Recorded) -> None:
    with pytest.raises(APIError) as caught:
        client(api, last, api.reader_key, "raw").from_("books").select("*").execute()
    assert (caught.value.code, last.response.status_code) == ("PGRST106", 406)


def test_rpc_by_post_and_by_get_with_filters_on_rows(reader: SyncPostgrestClient, last: Recorded) -> None:
    assert reader.rpc("book_count", {"min_pages": 180}).execute().data == 2
    assert last.response.request.method == "POST"
    assert reader.rpc("book_count", {"min_pages": 100}, get=True).execute().data == 3
    assert last.response.request.method == "GET"
    rows = reader.rpc("books_by", {"author": "Le Guin"}).select("id,title").lt("pages", 300).execute().data
    assert rows == [{"id": 3, "title": "The Lathe of Heaven"}]


def test_errors_reach_the_client_in_postgrest_shape(reader: SyncPostgrestClient, last: Recorded) -> None:
    with pytest.raises(APIError) as caught:
        reader.from_("books").select("nope").execute()
    assert last.response.status_code == 400
    assert "nope" in (caught.value.message or "") and caught.value.details is not None
    with pytest.raises(APIError) as missing:
        reader.rpc("no_such_function", {}).execute()
    assert (missing.value.code, last.response.status_code) == ("PGRST202", 404)


def test_single_on_a_write_returns_the_object_or_rolls_back(writer: SyncPostgrestClient, last: Recorded) -> None:
    row = writer.from_("drafts").insert({"id": 1, "title": "a"}).single().execute().data
    assert row == {"id": 1, "title": "a", "status": "new"}
    assert last.response.headers["content-type"].startswith("application/vnd.pgrst.object+json")
    with pytest.raises(APIError) as caught:
        writer.from_("drafts").insert([{"id": 2}, {"id": 3}]).single().execute()
    assert (caught.value.code, last.response.status_code) == ("PGRST116", 406)
    assert ids(writer.from_("drafts").select("id").execute().data) == [1], "neither row was written"
    writer.from_("drafts").insert({"id": 2}).execute()
    with pytest.raises(APIError):
        writer.from_("drafts").update({"status": "x"}).gte("id", 0).single().execute()
    assert writer.from_("drafts").select("status").eq("status", "x").execute().data == [], "rolled back"


def test_default_to_null_false_gives_a_missing_key_its_default(writer: SyncPostgrestClient, last: Recorded) -> None:
    rows = writer.from_("drafts").insert([{"id": 1, "status": "set"}, {"id": 2}], default_to_null=False).execute().data
    assert "missing=default" in last.response.request.headers["prefer"]
    assert rows == [{"id": 1, "title": None, "status": "set"}, {"id": 2, "title": None, "status": "new"}]


def test_written_rows_come_back_as_select_asks_embedding_included(writer: SyncPostgrestClient) -> None:
    inserted = writer.from_("reviews").insert({"id": 1, "book_id": 2, "stars": 5}).select("stars,books(title)")
    assert inserted.execute().data == [{"stars": 5, "books": {"title": "Invisible Cities"}}]
    updated = writer.from_("reviews").update({"stars": 4}).eq("id", 1).select("score:stars::text,books(id)")
    assert updated.execute().data == [{"score": "4", "books": {"id": 2}}]
    deleted = writer.from_("reviews").delete().eq("id", 1).select("id,books(authors(name))").execute().data
    assert deleted == [{"id": 1, "books": {"authors": {"name": "Calvino"}}}]
