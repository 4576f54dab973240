"""The pure parts of batch ETL: names, type inference and widening, JSON records as rows, the example data."""

from __future__ import annotations

import datetime as dt

import pytest

from parse_sources.batch import example, names, pgtypes
from parse_sources.batch.sources import HttpApi, tabulate, text_of


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("Flight Date", "flight_date"),
        ("flight_date", "flight_date"),
        ("FlightDate", "flight_date"),
        ("2nd leg", "c_2nd_leg"),
    ],
)
def test_header_styles_become_one_column_name(header: str, column: str) -> None:
    assert names.column(header) == column


def test_two_headers_with_one_name_are_refused_naming_both() -> None:
    with pytest.raises(names.InvalidName, match="'Fare' and 'fare' are both 'fare'"):
        names.columns(["id", "Fare", "fare"])


def test_a_header_without_letters_or_digits_is_refused() -> None:
    with pytest.raises(names.InvalidName, match="has no letters or digits"):
        names.column("--")


@pytest.mark.parametrize(
    ("bits", "expected"),
    [
        (0, None),
        (1, pgtypes.BIGINT),
        (1 | 2, pgtypes.DOUBLE),
        (4, pgtypes.BOOLEAN),
        (8 | 16, pgtypes.TIMESTAMPTZ),
        (8, pgtypes.DATE),
        (32, pgtypes.JSONB),
        (1 | 4, pgtypes.TEXT),  # numbers and booleans mixed: only text holds both
        (1 | 64, pgtypes.TEXT),
    ],
)
def test_a_columns_type_is_the_narrowest_that_holds_every_value(bits: int, expected: str | None) -> None:
    assert pgtypes.type_of_shapes(bits) == expected


@pytest.mark.parametrize(
    ("current", "needed", "after"),
    [
        (pgtypes.BIGINT, pgtypes.DOUBLE, pgtypes.DOUBLE),
        (pgtypes.DOUBLE, pgtypes.BIGINT, pgtypes.DOUBLE),
        (pgtypes.DATE, pgtypes.TIMESTAMPTZ, pgtypes.TIMESTAMPTZ),
        (pgtypes.BIGINT, pgtypes.TEXT, pgtypes.BIGINT),  # not a widening: the bad rows are quarantined instead
        (pgtypes.BOOLEAN, pgtypes.BIGINT, pgtypes.BOOLEAN),
        (pgtypes.TEXT, pgtypes.BIGINT, pgtypes.TEXT),
        (pgtypes.BIGINT, None, pgtypes.BIGINT),
    ],
)
def test_types_only_widen_along_their_chain(current: str, needed: str | None, after: str) -> None:
    assert pgtypes.widened(current, needed) == after


def test_json_records_become_rows_of_text_with_columns_in_order_of_appearance() -> None:
    columns, rows, rejected = tabulate([{"id": 1, "ok": True}, {"id": 2, "tags": ["a"], "ok": None}, "oops"])
    assert columns == ["id", "ok", "tags"]
    assert rows == [["1", "true", None], ["2", None, '["a"]']]
    assert [(r.record_number, r.reason) for r in rejected] == [(3, "record is a JSON str, not an object")]
    assert text_of(1.5) == "1.5"


def test_an_api_that_never_stops_paging_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    api = HttpApi("http://127.0.0.1:9/items", cursor_field="id", next_field=None, max_pages=3)
    calls: list[str] = []

    class Response:
        """Every page has a record and no end: only max_pages stops the reading."""

        def __init__(self, url: str) -> None:
            calls.append(url)

        def __enter__(self) -> Response:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def read(self) -> bytes:
            return b'{"data": [{"id": 1}]}'

    monkeypatch.setattr("urllib.request.urlopen", lambda request, timeout: Response(request.full_url))
    with pytest.raises(RuntimeError, match="more than 3 pages"):
        list(api.pages(None))
    assert calls[-1].endswith("page=3")


def test_the_example_day_is_deterministic_and_has_one_truncated_line() -> None:
    day = dt.date(2024, 5, 1)
    first, again = example.flights(day, rows=50), example.flights(day, rows=50)
    assert first == again
    assert first[0] == list(example.COLUMNS)
    assert [len(r) for r in first[1:]].count(len(example.COLUMNS)) == 49
    assert example.flights(dt.date(2024, 5, 2), rows=50) != first
