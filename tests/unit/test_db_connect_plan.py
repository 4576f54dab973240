"""The plan stage: a request resolved against the schema cache into a plain value, before any SQL."""

import pytest
from starlette.datastructures import Headers

from db_connect.catalog import Catalog, Column, ForeignKey, Function, Relation
from db_connect.errors import ApiError
from db_connect.plan import (
    EmbedPlan,
    Output,
    Plan,
    RelatedOrder,
    negotiate,
    plan_call,
    plan_query,
    plan_request,
)
from db_connect.query_params import OrderTerm, Query, parse_query
from db_connect.routes import Target
from db_connect.statements import page_statement


def table(name: str, *columns: str, key: tuple[str, ...] = ("id",)) -> Relation:
    return Relation("app", name, "table", tuple(Column(c, "integer") for c in columns), key)


AUTHORS = table("authors", "id", "name")
BOOKS = table("books", "id", "author_id", "editor_id", "title")
TAGS = table("tags", "id", "label")
BOOK_TAGS = table("book_tags", "book_id", "tag_id", key=("book_id", "tag_id"))
WRITTEN_BY = ForeignKey("books_author_fk", ("app", "books"), ("author_id",), ("app", "authors"), ("id",))
EDITED_BY = ForeignKey("books_editor_fk", ("app", "books"), ("editor_id",), ("app", "authors"), ("id",))
KEYS = (
    WRITTEN_BY,
    ForeignKey("book_tags_book_fk", ("app", "book_tags"), ("book_id",), ("app", "books"), ("id",)),
    ForeignKey("book_tags_tag_fk", ("app", "book_tags"), ("tag_id",), ("app", "tags"), ("id",)),
)
COUNT = Function("app", "count_books", 1, (("min", "integer"), ("max", "integer")), 1, False, "bigint", "s", None)
TOUCH = Function("app", "touch", 2, (("id", "integer"),), 0, False, "void", "v", None)


def catalog(*foreign_keys: ForeignKey) -> Catalog:
    cache = Catalog(("app",))
    relations = {(r.schema, r.name): r for r in (AUTHORS, BOOKS, TAGS, BOOK_TAGS)}
    cache.replace(relations, foreign_keys or KEYS, {("app", "count_books"): [COUNT], ("app", "touch"): [TOUCH]})
    return cache


def parse(text: str) -> Query:
    return parse_query([tuple(p.split("=", 1)) for p in text.split("&")], 100, 1000)  # type: ignore[misc]


NO_QUERY = {
    "select": None,
    "where": parse("limit=1").where,
    "order": (),
    "limit": 100,
    "offset": 0,
    "cursor": None,
    "on_conflict": None,
}  # a call's query string without select, filters or order


def test_a_read_plan_names_columns_relationships_and_the_embedded_query() -> None:
    plan = plan_query(catalog(), BOOKS, parse("select=title,by:authors(name)&by.name=eq.Le Guin&by.limit=1"))
    assert plan.outputs[0] == Output("title", "title")
    embed = plan.outputs[1]
    assert isinstance(embed, EmbedPlan)
    assert (embed.name, embed.to_one, embed.inner) == ("by", True, False)
    assert embed.relationship.cardinality == "many-to-one"
    assert embed.relationship.join == (("author_id", "id"),)
    assert embed.read.outputs == (Output("name", "name"),)
    assert embed.read.limit == 1 and len(embed.read.where.items) == 1


@pytest.mark.parametrize(
    ("source", "select", "cardinality"),
    [(AUTHORS, "books(*)", "one-to-many"), (BOOKS, "tags(*)", "many-to-many"), (TAGS, "books(*)", "many-to-many")],
)
def test_each_cardinality_is_found_from_foreign_keys(source: Relation, select: str, cardinality: str) -> None:
    (embed,) = plan_query(catalog(), source, parse(f"select={select}")).embeds
    assert embed.relationship.cardinality == cardinality


def test_a_junction_is_a_table_whose_primary_key_holds_both_foreign_keys() -> None:
    (embed,) = plan_query(catalog(), BOOKS, parse("select=tags(*)")).embeds
    assert embed.relationship.junction is not None
    assert embed.relationship.junction.relation == ("app", "book_tags")


def test_two_foreign_keys_to_one_table_are_ambiguous_until_a_hint_names_one() -> None:
    cache = catalog(WRITTEN_BY, EDITED_BY)
    with pytest.raises(ApiError) as caught:
        plan_query(cache, BOOKS, parse("select=authors(*)"))
    assert (caught.value.status, caught.value.body.code) == (300, "PGRST201")
    assert len(caught.value.body.details or []) == 2
    for hint in ("books_editor_fk", "editor_id"):
        (embed,) = plan_query(cache, BOOKS, parse(f"select=authors!{hint}(*)")).embeds
        assert embed.relationship.constraint == "books_editor_fk"


def test_a_to_one_embed_can_order_the_rows() -> None:
    plan = plan_query(catalog(), BOOKS, parse("select=id,authors(name)&order=authors(name).desc"))
    (term,) = plan.order
    assert isinstance(term, RelatedOrder) and term.term == OrderTerm("name", descending=True)
    with pytest.raises(ApiError):
        plan_query(catalog(), AUTHORS, parse("select=id,books(id)&order=books(id)"))


def test_a_plan_becomes_one_statement_with_one_lateral_subquery_per_embed() -> None:
    plan = plan_query(catalog(), AUTHORS, parse("select=name,books(title,tags(label))&books.title=like.A*"))
    statement = page_statement(plan)
    text = statement.text()
    assert text.count("LEFT JOIN LATERAL") == 2 and text.count("json_agg") == 3
    assert statement.params == ["A%", 100, 0], "the embed's filter value is bound, not written into the text"


def test_a_call_picks_the_overload_its_argument_names_fit_and_its_transaction_mode() -> None:
    call = plan_call(catalog(), "app", "count_books", {"min": "1"}, Query(**NO_QUERY), "GET")
    assert call.function is COUNT and call.arguments == (("min", "integer", "1"),)
    assert call.read_only, "STABLE: read-only whatever the method"
    assert not plan_call(catalog(), "app", "touch", {"id": 1}, Query(**NO_QUERY), "POST").read_only


@pytest.mark.parametrize(
    ("name", "arguments", "method", "status", "code"),
    [
        ("count_books", {"min": 1, "nope": 2}, "POST", 404, "PGRST202"),
        ("count_books", {"max": 1}, "POST", 404, "PGRST202"),
        ("touch", {"id": 1}, "GET", 405, "PGRST101"),
        ("missing", {}, "POST", 404, "PGRST202"),
    ],
)
def test_a_call_that_fits_no_function_is_refused_before_sql(
    name: str, arguments: dict[str, object], method: str, status: int, code: str
) -> None:
    with pytest.raises(ApiError) as caught:
        plan_call(catalog(), "app", name, arguments, Query(**NO_QUERY), method)
    assert (caught.value.status, caught.value.body.code) == (status, code)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", ("application/json", False)),
        ("application/vnd.pgrst.object+json", ("application/vnd.pgrst.object+json", False)),
        ("application/vnd.pgrst.array+json;nulls=stripped", ("application/json", True)),
        ("text/csv", ("text/csv", False)),
        ("text/html, */*;q=0.8", ("application/json", False)),
    ],
)
def test_the_media_type_is_negotiated_from_accept(accept: str, expected: tuple[str, bool]) -> None:
    assert negotiate(Headers({"accept": accept} if accept else {})) == expected


def test_an_unavailable_media_type_is_406() -> None:
    with pytest.raises(ApiError) as caught:
        negotiate(Headers({"accept": "application/xml"}))
    assert (caught.value.status, caught.value.body.code) == (406, "PGRST107")


def test_a_request_plan_holds_the_media_type_and_the_transaction_mode() -> None:
    target = Target("app", BOOKS)
    single = Headers({"accept": "application/vnd.pgrst.object+json"})
    assert plan_request(target, "GET", single) == Plan(target, "application/vnd.pgrst.object+json", False, True)
    csv = Headers({"accept": "text/csv"})
    assert plan_request(target, "PATCH", csv) == Plan(target, "application/json", False, False), "rows written: JSON"


def test_views_carry_foreign_keys_through_renamed_columns_and_views_over_views() -> None:
    authors_view = Relation("app", "writers", "view", (Column("writer_no", "integer"), Column("name", "text")), ())
    books_view = Relation("app", "novels", "view", (Column("id", "integer"), Column("by", "integer")), ())
    cache = Catalog(("app",))
    view_columns = [
        (("app", "writers"), "writer_no", ("app", "authors"), "id"),
        (("app", "inner_novels"), "by", ("app", "books"), "author_id"),
        (("app", "novels"), "by", ("app", "inner_novels"), "by"),
    ]
    relations = {(r.schema, r.name): r for r in (AUTHORS, BOOKS, authors_view, books_view)}
    cache.replace(relations, (WRITTEN_BY,), None, view_columns)
    (embed,) = plan_query(cache, authors_view, parse("select=novels(id)")).embeds
    assert (embed.relationship.cardinality, embed.relationship.join) == ("one-to-many", (("writer_no", "by"),))
    with pytest.raises(ApiError) as caught:
        plan_query(cache, authors_view, parse("select=inner_novels(*)"))
    assert caught.value.body.code == "PGRST200", "a view that is not exposed is no side of a relationship"
