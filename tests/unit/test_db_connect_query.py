"""db_connect's query-string parser and SQL builder: names are checked and quoted, values always bound."""

import pytest
from psycopg import sql

from db_connect.catalog import Catalog, Column, Relation
from db_connect.errors import ApiError
from db_connect.plan import plan_query
from db_connect.query_params import Condition, Group, OrderTerm, Query, decode_cursor, encode_cursor, parse_query
from db_connect.statements import Statement, count_statement, delete_statement, page_statement
from db_connect.templates import Slot, shape_of, statements

READINGS = Relation(
    "consumption",
    "readings",
    "table",
    (Column("id", "integer", not_null=True), Column("meter", "text"), Column('we"ird', "text")),
    ("id",),
)


def page(relation: Relation, query: Query) -> Statement:
    """The page statement for a query, planned against a cache holding only this relation."""
    catalog = Catalog(("consumption",))
    catalog.replace({(relation.schema, relation.name): relation})
    return page_statement(plan_query(catalog, relation, query), query.cursor)


def parse(query: str) -> Query:
    pairs = [tuple(part.split("=", 1)) for part in query.split("&") if part]
    return parse_query(pairs, 100, 1000)  # type: ignore[arg-type]


def render(statement: sql.Composable) -> str:
    return statement.as_string()


def test_filters_logic_groups_and_order_parse_into_a_plain_description() -> None:
    query = parse('meter=not.in.(a,"b,c")&or=(id.lt.3,and(meter.is.null,id.gte.9))&order=meter.desc.nullslast,id')
    assert query.where == Group(
        "and",
        (
            Condition("meter", "in", '{"a","b,c"}', negated=True),
            Group(
                "or",
                (
                    Condition("id", "lt", "3"),
                    Group("and", (Condition("meter", "is", "null"), Condition("id", "gte", "9"))),
                ),
            ),
        ),
    )
    assert query.order == (OrderTerm("meter", True, "last"), OrderTerm("id"))


@pytest.mark.parametrize(
    "query",
    [
        "id=between.1",
        "id=eq",
        "or=(id.eq.1",
        "or=(id.eq.1))",
        "order=id.up",
        "limit=0",
        "limit=1001",
        "select=",
        "id=in.1",
        "select=id::text;drop table x",
        "select=id::Text",
    ],
)
def test_malformed_queries_are_client_errors(query: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse(query)
    assert caught.value.status == 400


def test_deep_nesting_is_refused_before_it_costs_anything() -> None:
    nested = "or=" + "(or" * 20 + "(id.eq.1" + ")" * 21
    with pytest.raises(ApiError):
        parse(nested)


def test_values_are_bound_and_identifiers_quoted() -> None:
    statement = page(READINGS, parse("meter=eq.x' OR 1=1 --&we\"ird=like.*a*&limit=5"))
    text = render(statement.query)
    assert "x'" not in text and "OR 1=1" not in text
    assert '"t"."we""ird"::text LIKE %s' in text
    assert statement.params == ["x' OR 1=1 --", "%a%", 5, 0]


def test_pages_are_ordered_by_the_client_then_by_the_primary_key() -> None:
    text = render(page(READINGS, parse("order=meter.desc")).query)
    assert 'ORDER BY "t"."meter" DESC, "t"."id" ASC LIMIT %s OFFSET %s' in text


def test_unknown_columns_are_refused_wherever_they_appear() -> None:
    for query in ("select=nope", "nope=eq.1", "order=nope", "or=(nope.eq.1)"):
        with pytest.raises(ApiError) as caught:
            page(READINGS, parse(query))
        assert "has no column 'nope'" in caught.value.body.message


def test_a_cursor_round_trips_and_rejects_a_different_ordering() -> None:
    token = encode_cursor(["42"])
    assert decode_cursor(token) == ("42",)
    with pytest.raises(ApiError) as caught:
        page(READINGS, parse(f"cursor={token}&order=id.desc,id"))
    assert caught.value.body.message == "Invalid parameter 'cursor': does not match this ordering"
    statement = page(READINGS, parse(f"cursor={token}&limit=10"))
    assert '("t"."id" > %s)' in render(statement.query)
    assert statement.params == ["42", 10, 0]


def test_a_cursor_cannot_be_combined_with_an_offset() -> None:
    with pytest.raises(ApiError) as caught:
        parse(f"cursor={encode_cursor(['42'])}&offset=5")
    assert "cannot be combined with offset" in caught.value.body.message


# --- templates: SQL composed once per query shape ----------------------------------------------------


def test_a_shape_keeps_names_operators_and_keywords_and_slots_every_value() -> None:
    shape, values = shape_of(parse("meter=in.(a,b)&id=gt.5&or=(meter.is.null,id.eq.1)&limit=7&offset=2"))
    assert values == ['{"a","b"}', "5", "1", 7, 2]
    assert shape.where.items[0] == Condition("meter", "in", Slot(0)), "a list is one value, an array"
    assert shape.where.items[2] == Group("or", (Condition("meter", "is", "null"), Condition("id", "eq", Slot(2))))
    assert (shape.limit, shape.offset) == (Slot(3), Slot(4))


def test_queries_that_differ_only_in_values_share_one_composed_text() -> None:
    relation = Relation("consumption", "readings", "table", READINGS.columns, ("id",))
    catalog = Catalog(("consumption",))
    catalog.replace({("consumption", "readings"): relation})
    built: list[object] = []

    def build(shape: object) -> list:
        built.append(shape)
        plan = plan_query(catalog, relation, shape)  # type: ignore[arg-type]
        return [page_statement(plan, None), count_statement(plan, cap=99)]

    first = statements(relation, parse("meter=eq.a&id=in.(1,2)&limit=3"), "page", build)
    second = statements(relation, parse("meter=eq.b&id=in.(8,9)&limit=4"), "page", build)
    third = statements(relation, parse("meter=eq.b&id=in.(8,9,10)&limit=4"), "page", build)
    assert len(built) == 1, "a longer list is the same shape: one array value"
    assert first[0].query == second[0].query == third[0].query
    assert second[0].params == ["b", '{"8","9"}', 4, 0] and second[1].params == ["b", '{"8","9"}', 100]
    direct = page(relation, parse("meter=eq.b&id=in.(8,9,10)&limit=4"))
    assert (third[0].query, third[0].params) == (render(direct.query), direct.params)


def test_delete_without_a_filter_is_refused() -> None:
    with pytest.raises(ApiError) as caught:
        delete_statement(READINGS, parse("select=id"), returned=None)
    assert caught.value.body.code == "filter_required"
