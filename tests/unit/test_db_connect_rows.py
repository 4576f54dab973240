"""db_connect's page query: identifiers come from the catalogue and are always quoted; values are bound."""

from psycopg import sql

from db_connect.catalog import Column, Relation
from db_connect.rows import page_query


def relation(name: str, primary_key: tuple[str, ...]) -> Relation:
    return Relation("consumption", name, "table", (Column("id", "integer"),), primary_key)


def render(query: sql.Composable) -> str:
    return query.as_string()


def test_a_keyed_relation_is_paged_in_key_order_with_bound_limit_and_offset() -> None:
    text = render(page_query(relation("readings", ("meter", "id"))))
    assert 'FROM "consumption"."readings" ORDER BY "meter", "id" LIMIT %s OFFSET %s' in text
    assert 'json_agg(page.* ORDER BY "page"."meter", "page"."id")' in text


def test_a_relation_without_a_key_has_no_order() -> None:
    text = render(page_query(relation("usage_view", ())))
    assert "ORDER BY" not in text
    assert 'FROM "consumption"."usage_view" LIMIT %s OFFSET %s' in text


def test_quotes_in_names_cannot_end_the_identifier() -> None:
    text = render(page_query(relation('t"; DROP TABLE x; --', ('i"d',))))
    assert '"consumption"."t""; DROP TABLE x; --"' in text
    assert 'ORDER BY "i""d"' in text
