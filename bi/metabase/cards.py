"""The starter dashboards of bi/superset/dashboards/*.yaml (Superset's form) as Metabase native-SQL cards.

One source of truth: Metabase's setup job reads the files Superset imports and translates each chart into one
SELECT on its dataset, a Metabase `display` and the visualization settings that display reads; each row of the
spec becomes a row of Metabase's dashboard grid. Pure functions, so every chart of both files is checked by unit
tests without a Metabase. A param that is neither translated nor known to be display-only stops the translation:
a chart Metabase would draw differently from Superset fails the tests instead of being silently simplified.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# metabase/metabase src/metabase/dashboards/constants.cljc: `GRID_WIDTH` 24 (the frontend's dashboard_grid uses the
# same), and `card-size-defaults`, a card's default height per display: scalar 3, line and bar 6, table 9.
GRID_WIDTH = 24
DEFAULT_HEIGHTS = {"scalar": 3, "line": 6, "bar": 6, "table": 9}
SUPERSET_GRID_WIDTH = 12  # a chart's `width` in the YAML counts Superset's 12 columns
# Superset's viz_type -> Metabase's display (the keys of `card-size-defaults` above)
DISPLAYS = {
    "big_number_total": "scalar",
    "table": "table",
    "echarts_timeseries_line": "line",
    "echarts_timeseries_bar": "bar",
}
# Superset's time grains (ISO 8601 durations) as Postgres date_trunc fields
TIME_GRAINS = {"PT1M": "minute", "PT1H": "hour", "P1D": "day", "P1W": "week", "P1M": "month", "P1Y": "year"}
DISPLAY_ONLY = frozenset({"y_axis_format"})  # Superset's number format; Metabase formats numbers itself
# Postgres keeps 63 bytes of an identifier (NAMEDATALEN - 1): a longer label would come back cut, and the
# visualization settings naming it would match no column.
MAX_IDENTIFIER_BYTES = 63
# docs/questions/native-editor/sql-parameters.md (metabase/metabase): `{{name}}` is a variable and `[[ ... ]]` an
# optional clause in a native query; the cards define no variables, so their SQL must not contain either.
TEMPLATE_SYNTAX = ("{{", "[[")


class ChartError(ValueError):
    """A chart the translation cannot express, naming it and why."""


@dataclass(frozen=True)
class Card:
    name: str
    sql: str
    display: str
    visualization_settings: dict[str, Any]


@dataclass(frozen=True)
class Placement:
    """Where a card sits on its dashboard, in Metabase's grid units."""

    card: str
    row: int
    col: int
    size_x: int
    size_y: int


@dataclass(frozen=True)
class Dashboard:
    title: str
    database: str  # the data source's name (Superset's specs say which, default warehouse)
    refresh_seconds: int
    cards: tuple[Card, ...]
    layout: tuple[Placement, ...]


def identifier(name: str) -> str:
    """`name` as a quoted SQL identifier: any text a label may hold, its double quotes doubled."""
    if not name or "\0" in name or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ChartError(f"{name!r} cannot be a column name (empty, a NUL byte or over {MAX_IDENTIFIER_BYTES} bytes)")
    return '"' + name.replace('"', '""') + '"'


def source(name: str, dataset: dict[str, Any]) -> str:
    """The FROM item of a dataset: its SQL as a subquery (a virtual dataset), else its schema-qualified table."""
    if "sql" in dataset:
        return "(\n" + dataset["sql"].strip().rstrip(";") + "\n) AS d"
    table = identifier(dataset.get("table", name))
    return (f"{identifier(dataset['schema'])}.{table}" if dataset.get("schema") else table) + " AS d"


def metric(spec: dict[str, Any]) -> str:
    """A Superset SQL metric as a select-list item named by its label."""
    if spec.get("expressionType") != "SQL":
        raise ChartError(f"metric {spec!r}: only SQL metrics are translated")
    return f"{spec['sqlExpression']} AS {identifier(spec['label'])}"


def select(
    columns: Iterable[str], from_: str, group: int = 0, order: str | None = None, limit: int | None = None
) -> str:
    """One SELECT; `group` counts the leading columns it groups by (by position, so expressions need no repeat)."""
    lines = ["SELECT " + ", ".join(columns), "FROM " + from_]
    if group:
        lines.append("GROUP BY " + ", ".join(str(position) for position in range(1, group + 1)))
    if order:
        lines.append("ORDER BY " + order)
    if limit is not None:
        lines.append(f"LIMIT {int(limit)}")
    return "\n".join(lines)


def _big_number(params: dict[str, Any], from_: str) -> tuple[str, dict[str, Any]]:
    return select([metric(params.pop("metric"))], from_), {}


def _table(params: dict[str, Any], from_: str) -> tuple[str, dict[str, Any]]:
    limit = params.pop("row_limit")
    if params.pop("query_mode", "aggregate") == "raw":
        if params.pop("order_by_cols", []):
            raise ChartError("order_by_cols is not translated")
        return select([identifier(column) for column in params.pop("all_columns")], from_, limit=limit), {}
    groupby = params.pop("groupby", [])
    columns = [*(identifier(column) for column in groupby), *(metric(m) for m in params.pop("metrics"))]
    # as Superset's table chart orders an aggregate with no sort metric: by its first metric, descending
    return select(columns, from_, group=len(groupby), order=f"{len(groupby) + 1} DESC", limit=limit), {}


def _timeseries(params: dict[str, Any], from_: str) -> tuple[str, dict[str, Any]]:
    x_axis, groupby, metrics = params.pop("x_axis"), params.pop("groupby", []), params.pop("metrics")
    grain = params.pop("time_grain_sqla", None)
    x_column = identifier(x_axis)
    if grain is not None:
        if grain not in TIME_GRAINS:
            raise ChartError(f"time grain {grain!r} is not translated")
        x_column = f"date_trunc('{TIME_GRAINS[grain]}', {x_column}) AS {x_column}"
    columns = [x_column, *(identifier(column) for column in groupby), *(metric(m) for m in metrics)]
    sql = select(columns, from_, group=1 + len(groupby), order="1", limit=params.pop("row_limit"))
    # graph.dimensions / graph.metrics: the result columns a line or bar chart plots, by name (read back by
    # src/metabase/queries_rest/api/card.clj `source-cols`); a second dimension splits the series (the
    # frontend's getMaxDimensionsSupported defaults to 2, frontend/src/metabase/visualizations/index.ts).
    settings = {"graph.dimensions": [x_axis, *groupby], "graph.metrics": [m["label"] for m in metrics]}
    return sql, settings


TRANSLATIONS = {
    "big_number_total": _big_number,
    "table": _table,
    "echarts_timeseries_line": _timeseries,
    "echarts_timeseries_bar": _timeseries,
}


def card(chart: dict[str, Any], datasets: dict[str, dict[str, Any]]) -> Card:
    """One chart of a spec as a native-SQL card on its dataset."""
    name = chart["name"]
    try:
        viz_type = chart["viz_type"]
        if viz_type not in TRANSLATIONS:
            raise ChartError(f"viz_type {viz_type!r} is not translated (known: {', '.join(sorted(TRANSLATIONS))})")
        params = dict(chart.get("params", {}))
        sql, settings = TRANSLATIONS[viz_type](params, source(chart["dataset"], datasets[chart["dataset"]]))
        untranslated = sorted(set(params) - DISPLAY_ONLY)
        if untranslated:
            raise ChartError(f"params not translated: {', '.join(untranslated)}")
        if any(syntax in sql for syntax in TEMPLATE_SYNTAX):
            raise ChartError("its SQL holds Metabase template syntax ({{ or [[)")
    except KeyError as missing:
        raise ChartError(f"chart {name!r}: {missing} is missing") from None
    except ChartError as error:
        raise ChartError(f"chart {name!r}: {error}") from None
    return Card(name, sql, DISPLAYS[viz_type], settings)


def layout(rows: list[list[dict[str, Any]]]) -> tuple[Placement, ...]:
    """The spec's rows, top to bottom, as rows of Metabase's grid: widths doubled (12 columns to 24), each row as
    tall as the tallest default height of its cards' displays, so a row's cards line up as they do in Superset."""
    placements: list[Placement] = []
    top = 0
    for row in rows:
        height = max(DEFAULT_HEIGHTS[DISPLAYS[chart["viz_type"]]] for chart in row)
        left = 0
        for chart in row:
            width = int(chart["width"]) * GRID_WIDTH // SUPERSET_GRID_WIDTH
            if width < 1:
                raise ChartError(f"chart {chart['name']!r}: width {chart['width']!r} is not a positive column count")
            placements.append(Placement(chart["name"], top, left, width, height))
            left += width
        if left > GRID_WIDTH:
            names = ", ".join(repr(chart["name"]) for chart in row)
            columns = left * SUPERSET_GRID_WIDTH // GRID_WIDTH
            raise ChartError(f"the row of {names} is {columns} columns wide; Superset's grid has 12")
        top += height
    return tuple(placements)


def dashboards(specs: list[dict[str, Any]]) -> list[Dashboard]:
    """Every spec as a dashboard with its cards. Titles and chart names must be unique across all specs: the
    setup job finds dashboards and cards by name in one collection."""
    result: list[Dashboard] = []
    cards_seen: set[str] = set()
    for spec in specs:
        if spec["title"] in (dashboard.title for dashboard in result):
            raise ChartError(f"two dashboards are titled {spec['title']!r}")
        cards = tuple(card(chart, spec["datasets"]) for row in spec["rows"] for chart in row)
        for each in cards:
            if each.name in cards_seen:
                raise ChartError(f"two charts are named {each.name!r}")
            cards_seen.add(each.name)
        result.append(
            Dashboard(
                title=spec["title"],
                database=spec.get("database", "warehouse"),
                refresh_seconds=int(spec.get("refresh_seconds", 0)),
                cards=cards,
                layout=layout(spec["rows"]),
            )
        )
    return result
