"""Schema inference and widening: one column per field for life, widened along the type lattice."""

from __future__ import annotations

import pytest

from parse_sources import schema
from parse_sources.schema import (
    BIGINT,
    BOOLEAN,
    DATE,
    DOUBLE,
    INTEGER,
    JSONB,
    NUMERIC,
    TEXT,
    TIMESTAMPTZ,
    SchemaChange,
    Table,
    diff,
    infer_schema,
    infer_type,
    widen,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, BOOLEAN),
        (7, INTEGER),
        (2**31, BIGINT),
        (2**63, NUMERIC),
        (1.5, DOUBLE),
        ("2024-05-01", DATE),
        ("2024-05-01T10:00:00+02:00", TIMESTAMPTZ),
        ("2024-13-01", TEXT),
        ("hello", TEXT),
        ({"a": 1}, JSONB),
        ([1, 2], JSONB),
    ],
)
def test_each_json_value_gets_the_narrowest_type_that_holds_it(value: object, expected: str | None) -> None:
    assert infer_type(value) == expected


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        (INTEGER, BIGINT, BIGINT),
        (BIGINT, NUMERIC, NUMERIC),
        (INTEGER, DOUBLE, DOUBLE),
        (DOUBLE, BIGINT, DOUBLE),
        (NUMERIC, DOUBLE, NUMERIC),
        (DATE, TIMESTAMPTZ, TIMESTAMPTZ),
        (BOOLEAN, INTEGER, TEXT),
        (JSONB, TEXT, TEXT),
        (DOUBLE, TEXT, TEXT),
        (None, INTEGER, INTEGER),
        (INTEGER, None, INTEGER),
        ("uuid", TEXT, "uuid"),
    ],
)
def test_types_widen_to_the_narrowest_type_holding_both(current: str, incoming: str, expected: str) -> None:
    assert widen(current, incoming) == expected
    if current and incoming and current not in {"uuid"}:
        assert widen(incoming, current) == expected


def test_a_schema_holds_every_record_with_one_normalised_column_per_field() -> None:
    records = [
        {"id": 1, "Amount ($)": 10, "seen": None},
        {"id": 2**40, "amount-$": 2.5, "tags": ["a"]},
        {"id": 3, "9lives": "x"},
    ]
    assert infer_schema(records) == {
        "id": BIGINT,
        "amount": DOUBLE,
        "seen": TEXT,
        "tags": JSONB,
        "_9lives": TEXT,
    }


def test_a_schema_grows_from_a_tables_current_columns_without_narrowing_them() -> None:
    assert infer_schema([{"id": 1, "new": True}], start={"id": BIGINT, "name": TEXT}) == {
        "id": BIGINT,
        "name": TEXT,
        "new": BOOLEAN,
    }


def test_a_schema_change_lists_added_and_widened_columns_only() -> None:
    change = diff({"id": INTEGER, "name": TEXT}, {"id": BIGINT, "name": TEXT, "at": DATE})
    assert change == SchemaChange(added={"at": DATE}, widened={"id": BIGINT})
    assert not diff({"id": INTEGER}, {"id": INTEGER})


def test_alter_statements_add_and_widen_in_place() -> None:
    statements = schema.alter_table_sql(Table("raw", "t"), SchemaChange({"at": DATE}, {"id": BIGINT}))
    rendered = [s.as_string(None) for s in statements]
    assert rendered == [
        'ALTER TABLE "raw"."t" ADD COLUMN IF NOT EXISTS "at" date',
        'ALTER TABLE "raw"."t" ALTER COLUMN "id" TYPE bigint USING "id"::bigint',
    ]


def test_create_statement_quotes_every_identifier() -> None:
    statement = schema.create_table_sql(Table("raw", "t"), {"_key": TEXT, "n": INTEGER}, primary_key="_key")
    assert (
        statement.as_string(None)
        == 'CREATE TABLE IF NOT EXISTS "raw"."t" ("_key" text, "n" integer, PRIMARY KEY ("_key"))'
    )


def test_table_names_default_to_the_raw_schema_and_are_normalised() -> None:
    assert str(Table.parse("Events")) == "raw.events"
    assert str(Table.parse("curated.My-Table")) == "curated.my_table"
    assert str(Table.parse("raw.t").sibling("_dead_letters")) == "raw.t_dead_letters"


@pytest.mark.parametrize(
    ("value", "kind", "sent"),
    [({"a": 1}, JSONB, '{"a":1}'), (True, TEXT, "true"), (3, TEXT, "3"), ("x", TEXT, "x"), (4, BIGINT, 4),
     ([1], TEXT, "[1]"), (None, TEXT, None)],
)  # fmt: skip
def test_values_are_sent_in_the_form_their_column_takes(value: object, kind: str, sent: object) -> None:
    assert schema.to_column_value(value, kind) == sent
