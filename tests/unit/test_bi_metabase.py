"""Metabase's setup client (bi/metabase/setup.py) against the fake in fake_metabase.py, over real HTTP on 127.0.0.1,
and the translation of Superset's starter dashboards into Metabase cards (bi/metabase/cards.py).

These prove the client's logic against behaviours cited from Metabase's source, not that it works with a live
Metabase (none can run here).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from bi.metabase import cards, setup
from tests.unit.fake_metabase import PROTECTED_PASSWORD, FakeMetabase, Served

SECRETS = {"bi_admin_password": "admin-pw-1", "bi_db_password": "db-pw-1"}
ENVIRON = {"SAWMILL_SETUP_TIMEOUT": "20", "SAWMILL_WAREHOUSE_HOST": "sawmill_postgres_server"}
SPECS = setup.load_specs(setup.DASHBOARDS)
CHARTS = [chart for spec in SPECS for row in spec["rows"] for chart in row]
HOST_METRICS, FLIGHTS = "Host metrics (live)", "Flights and data quality"
SPEC = {spec["title"]: spec for spec in SPECS}


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


# --- the starter dashboards ---------------------------------------------------------------------------------


def dashboard(fake: FakeMetabase, title: str) -> dict[str, Any]:
    [found] = [d for d in fake.dashboards.values() if d["name"] == title]
    return found


def layout(fake: FakeMetabase, title: str) -> list[tuple[str, int, int, int, int]]:
    """A dashboard's dashcards as (card name, row, col, size_x, size_y), top to bottom, left to right."""
    dashcards = sorted(dashboard(fake, title)["dashcards"], key=lambda d: (d["row"], d["col"]))
    return [(fake.cards[d["card_id"]]["name"], d["row"], d["col"], d["size_x"], d["size_y"]) for d in dashcards]


def ids(fake: FakeMetabase) -> dict[str, Any]:
    return {
        "collections": sorted(fake.collections),
        "cards": sorted(fake.cards),
        "dashboards": sorted(fake.dashboards),
        "dashcards": sorted(d["id"] for each in fake.dashboards.values() for d in each["dashcards"]),
    }


def test_a_fresh_metabase_gets_the_collection_a_card_per_chart_and_both_dashboards_laid_out() -> None:
    fake = FakeMetabase()
    run(fake)
    [collection] = fake.collections.values()
    assert collection["name"] == setup.COLLECTION
    [warehouse] = fake.databases.values()
    assert sorted(card["name"] for card in fake.cards.values()) == sorted(chart["name"] for chart in CHARTS)
    for card in fake.cards.values():
        assert card["collection_id"] == collection["id"]
        assert card["dataset_query"]["database"] == warehouse["id"]
        assert card["dataset_query"]["type"] == "native"
    assert {d["name"] for d in fake.dashboards.values()} == {HOST_METRICS, FLIGHTS}
    assert {d["collection_id"] for d in fake.dashboards.values()} == {collection["id"]}
    # Superset's 12 columns are Metabase's 24; a row is as tall as its tallest card's default (table 9, line 6)
    assert layout(fake, HOST_METRICS) == [
        ("Samples in the last 15 minutes", 0, 0, 6, 9),
        ("Seconds since the newest sample", 0, 6, 6, 9),
        ("Newest sample per host", 0, 12, 12, 9),
        ("CPU busy % by host", 9, 0, 12, 6),
        ("Available memory (MB) by host", 9, 12, 12, 6),
    ]
    assert [name for name, *_ in layout(fake, FLIGHTS)] == [c["name"] for row in SPEC[FLIGHTS]["rows"] for c in row]


def test_a_second_run_creates_nothing_and_keeps_every_id() -> None:
    fake = FakeMetabase()
    run(fake)
    first = ids(fake)
    layouts = {title: layout(fake, title) for title in (HOST_METRICS, FLIGHTS)}
    run(fake)
    assert ids(fake) == first
    assert {title: layout(fake, title) for title in (HOST_METRICS, FLIGHTS)} == layouts
    assert fake.requests.count(("POST", "/api/card")) == len(CHARTS)
    assert fake.requests.count(("POST", "/api/dashboard")) == 2
    assert fake.requests.count(("POST", "/api/collection")) == 1
    assert len([r for r in fake.requests if r[0] == "PUT" and r[1].startswith("/api/card/")]) == len(CHARTS)


def test_a_chart_whose_sql_changed_in_the_yaml_is_updated_in_place(tmp_path: Path) -> None:
    fake = FakeMetabase()
    run(fake)
    [samples] = [c for c in fake.cards.values() if c["name"] == "Samples in the last 15 minutes"]
    assert "interval '15 minutes'" in samples["dataset_query"]["native"]["query"]
    changed = tmp_path / "dashboards"
    shutil.copytree(setup.DASHBOARDS, changed)
    spec = changed / "host_metrics.yaml"
    spec.write_text(spec.read_text().replace("interval '15 minutes'", "interval '30 minutes'"))
    run(fake, SAWMILL_DASHBOARDS=str(changed))
    assert fake.cards[samples["id"]]["dataset_query"]["native"]["query"].count("interval '30 minutes'") == 1
    assert len(fake.cards) == len(CHARTS)
    assert ("PUT", f"/api/card/{samples['id']}") in fake.requests


def test_the_layout_follows_the_yaml_a_dashcard_added_by_hand_goes_and_a_moved_one_returns() -> None:
    fake = FakeMetabase()
    run(fake)
    live = dashboard(fake, HOST_METRICS)
    expected = layout(fake, HOST_METRICS)
    moved = live["dashcards"][0]
    moved.update(row=40, col=3)
    stray = next(c for c in fake.cards.values() if c["name"] == "Flights loaded")
    live["dashcards"].append({"id": 999, "card_id": stray["id"], "row": 50, "col": 0, "size_x": 4, "size_y": 4})
    run(fake)
    assert layout(fake, HOST_METRICS) == expected
    assert moved["id"] in {d["id"] for d in live["dashcards"]}  # put back, not replaced
    assert 999 not in {d["id"] for d in live["dashcards"]}


def test_the_live_dashboard_is_logged_with_the_refresh_metabase_keeps_in_the_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeMetabase()
    run(fake, SAWMILL_SITE_URL="https://bi.example.org", SAWMILL_REFRESH_SECONDS="30")
    out = capsys.readouterr().out
    live, flights = dashboard(fake, HOST_METRICS)["id"], dashboard(fake, FLIGHTS)["id"]
    assert f"https://bi.example.org/dashboard/{live}#refresh=30\n" in out  # bi.refresh_seconds, not the YAML's 10
    assert f"https://bi.example.org/dashboard/{flights}\n" in out  # refresh_seconds: 0, no auto-refresh


def test_a_chart_metabase_cannot_draw_stops_the_job_before_metabase_is_touched(tmp_path: Path) -> None:
    folder = tmp_path / "dashboards"
    shutil.copytree(setup.DASHBOARDS, folder)
    spec = folder / "flights.yaml"
    spec.write_text(spec.read_text().replace("viz_type: table", "viz_type: pie", 1))
    fake = FakeMetabase()
    with pytest.raises(setup.SetupError, match=r"'Latest result of every quality check'.*'pie' is not translated"):
        run(fake, SAWMILL_DASHBOARDS=str(folder))
    assert fake.requests == []


# --- the translation of each chart -------------------------------------------------------------------------

RECENT = "(\n" + SPEC[HOST_METRICS]["datasets"]["host_metrics_recent"]["sql"].strip() + "\n) AS d"
EXPECTED_SQL = {
    "Flights loaded": 'SELECT COUNT(*) AS "flights"\nFROM "consumption"."flights" AS d',
    "Quality checks failing now": 'SELECT COUNT(*) FILTER (WHERE NOT passed) AS "failing checks"\n'
    'FROM "quality"."latest" AS d',
    "Flights by carrier": 'SELECT "carrier", COUNT(*) AS "flights"\nFROM "consumption"."flights" AS d\n'
    "GROUP BY 1\nORDER BY 1\nLIMIT 100",
    "Average departure delay (min) per day": 'SELECT date_trunc(\'day\', "flight_date") AS "flight_date",'
    ' AVG(departure_delay_min) AS "avg delay min"\nFROM "consumption"."flights" AS d\n'
    "GROUP BY 1\nORDER BY 1\nLIMIT 10000",
    "Latest result of every quality check": 'SELECT "table_name", "dimension", "check_name", "passed", "measured",'
    ' "checked_at", "detail"\nFROM "quality"."latest" AS d\nLIMIT 200',
    "Samples in the last 15 minutes": f'SELECT COUNT(*) AS "samples"\nFROM {RECENT}',
    "Seconds since the newest sample": f'SELECT EXTRACT(EPOCH FROM now() - MAX(ts)) AS "seconds behind"\nFROM {RECENT}',
    # Superset's table chart sorts an aggregate by its first metric, descending
    "Newest sample per host": f'SELECT "host", MAX(ts) AS "newest sample",'
    f' ROUND(AVG(cpu_busy)::numeric, 1) AS "avg CPU busy %"\nFROM {RECENT}\nGROUP BY 1\nORDER BY 2 DESC\nLIMIT 100',
    "CPU busy % by host": f'SELECT "ts", "host", AVG(cpu_busy) AS "CPU busy %"\nFROM {RECENT}\n'
    "GROUP BY 1, 2\nORDER BY 1\nLIMIT 10000",
    "Available memory (MB) by host": f'SELECT "ts", "host", AVG(mem_available_mb) AS "available MB"\nFROM {RECENT}\n'
    "GROUP BY 1, 2\nORDER BY 1\nLIMIT 10000",
}


@pytest.mark.parametrize("chart", CHARTS, ids=[chart["name"] for chart in CHARTS])
def test_every_chart_of_both_files_becomes_one_select_on_its_dataset(chart: dict[str, Any]) -> None:
    spec = next(spec for spec in SPECS if any(chart in row for row in spec["rows"]))
    card = cards.card(chart, spec["datasets"])
    assert card.sql == EXPECTED_SQL[chart["name"]]
    assert card.display == cards.DISPLAYS[chart["viz_type"]]


def test_line_and_bar_charts_name_the_columns_they_plot_and_a_groupby_splits_the_series() -> None:
    by_name = {card.name: card for dashboard in cards.dashboards(SPECS) for card in dashboard.cards}
    assert by_name["CPU busy % by host"].display == "line"
    assert by_name["CPU busy % by host"].visualization_settings == {
        "graph.dimensions": ["ts", "host"],
        "graph.metrics": ["CPU busy %"],
    }
    assert by_name["Flights by carrier"].visualization_settings == {
        "graph.dimensions": ["carrier"],
        "graph.metrics": ["flights"],
    }
    assert (by_name["Flights loaded"].display, by_name["Flights loaded"].visualization_settings) == ("scalar", {})


def test_labels_are_quoted_as_identifiers_and_refused_where_postgres_would_change_them() -> None:
    assert cards.identifier('the "best" % of it') == '"the ""best"" % of it"'
    for bad in ("", "nul\0byte", "x" * 64):
        with pytest.raises(cards.ChartError, match="cannot be a column name"):
            cards.identifier(bad)


def chart(**overrides: Any) -> dict[str, Any]:
    metric = {"expressionType": "SQL", "sqlExpression": "COUNT(*)", "label": "n"}
    base = {"name": "N", "dataset": "t", "viz_type": "big_number_total", "width": 3, "params": {"metric": metric}}
    return base | overrides


DATASETS = {"t": {"schema": "consumption", "table": "t"}}


def test_a_param_neither_translated_nor_display_only_is_refused_by_name() -> None:
    display_only = chart(params={**chart()["params"], "y_axis_format": ",.1f"})
    assert cards.card(display_only, DATASETS).sql == 'SELECT COUNT(*) AS "n"\nFROM "consumption"."t" AS d'
    with pytest.raises(cards.ChartError, match=r"chart 'N': params not translated: adhoc_filters"):
        cards.card(chart(params={**chart()["params"], "adhoc_filters": [{"x": 1}]}), DATASETS)


def test_sql_holding_metabase_template_syntax_is_refused() -> None:
    braces = chart(params={"metric": {"expressionType": "SQL", "sqlExpression": "MAX('{{x}}')", "label": "n"}})
    with pytest.raises(cards.ChartError, match="template syntax"):
        cards.card(braces, DATASETS)


def test_a_row_wider_than_supersets_grid_is_refused() -> None:
    with pytest.raises(cards.ChartError, match="is 15 columns wide"):
        cards.layout([[chart(name="a", width=9), chart(name="b", width=6)]])


def test_chart_names_and_titles_must_be_unique_across_the_files() -> None:
    live = SPEC[HOST_METRICS]
    with pytest.raises(cards.ChartError, match="two charts are named 'Samples in the last 15 minutes'"):
        cards.dashboards([live, {**live, "title": "A copy"}])
    with pytest.raises(cards.ChartError, match="two dashboards are titled"):
        cards.dashboards([live, live])
