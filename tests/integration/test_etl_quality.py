"""Data quality on the example pipeline: every dimension measured, stored in `quality`, failures actionable."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import psycopg
import pytest

from parse_sources.batch import example
from parse_sources.batch.pipeline import run_batch
from parse_sources.batch.sources import CsvFile
from parse_sources.quality import suites
from parse_sources.quality.checks import Accuracy, Timeliness

DAY = dt.date(2024, 5, 1)


@pytest.fixture
def flights(warehouse: str, tmp_path: Path) -> str:
    with psycopg.connect(warehouse) as conn:
        run_batch(conn, example.FLIGHTS, CsvFile(str(example.write_flights(DAY, tmp_path / "f.csv"))), "2024-05-01")
    return warehouse


def test_the_example_flights_pass_every_dimension_and_the_results_are_stored(flights: str) -> None:
    with psycopg.connect(flights) as conn:
        results = suites.run(conn, suites.FLIGHTS, run_id="run-1")
        stored = conn.execute(
            "SELECT dimension, count(*), bool_and(passed) FROM quality.results WHERE run_id = 'run-1'"
            " GROUP BY dimension ORDER BY dimension"
        ).fetchall()
    assert {r.dimension for r in results} == set(suites.DIMENSIONS)
    assert stored == [
        ("accuracy", 1, True),
        ("completeness", 4, True),
        ("consistency", 1, True),
        ("timeliness", 1, True),
        ("uniqueness", 2, True),
        ("validity", 4, True),
    ]


def test_a_failed_check_raises_with_what_was_measured_and_where_to_look(flights: str) -> None:
    with psycopg.connect(flights) as conn:
        conn.execute(
            "UPDATE curated.flights SET passengers = -3"
            " WHERE flight_id IN (SELECT flight_id FROM curated.flights LIMIT 2)"
        )
        conn.commit()
        with pytest.raises(suites.QualityFailure) as failure:
            suites.run(conn, suites.FLIGHTS, run_id="run-2", dimensions=("validity",))
        latest = conn.execute(
            "SELECT check_name, passed FROM quality.latest WHERE dimension = 'validity' ORDER BY check_name"
        ).fetchall()
    message = str(failure.value)
    assert "1 of 4 quality checks on flights failed" in message
    assert "passengers in [0, 853]: 2 of 499 rows break" in message
    assert "SELECT * FROM consumption.flights WHERE" in message
    assert ("passengers in [0, 853]", False) in latest


def test_accuracy_compares_against_the_reference_sample(flights: str, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text(example.REFERENCE_DISTANCES.read_text().replace("AMS,LHR,371", "AMS,LHR,999"))
    check = Accuracy(wrong, key=("origin", "destination"), compare=("distance_km",), min_match_rate=0.95)
    with psycopg.connect(flights) as conn:
        outcome = check.measure(conn, "flights")
    assert not outcome.passed
    assert outcome.measured == pytest.approx(7 / 8, abs=0.01)


def test_timeliness_fails_when_the_last_load_is_older_than_the_schedule_allows(flights: str) -> None:
    with psycopg.connect(flights) as conn:
        conn.execute("UPDATE curated.flights SET _loaded_at = now() - interval '3 days'")
        outcome = Timeliness(max_age=dt.timedelta(days=1)).measure(conn, "flights")
    assert not outcome.passed
    assert "is late" in outcome.detail


def test_consistency_notices_rows_lost_between_zones(flights: str) -> None:
    check = next(c for c in suites.FLIGHTS.checks if c.dimension == "consistency")
    with psycopg.connect(flights) as conn:
        conn.execute("DELETE FROM curated.flights WHERE flight_id IN (SELECT flight_id FROM curated.flights LIMIT 1)")
        outcome = check.measure(conn, "flights")
    assert not outcome.passed
    assert outcome.detail.startswith("distinct keys in raw (not quarantined) 499, curated 498, consumption 498")


def test_quality_results_are_readable_by_the_platforms_readers(flights: str, postgres) -> None:
    # as stack/postgres/init.sh leaves it: a reader is a member of the group role warehouse_reader
    postgres.execute("DO $$ BEGIN CREATE ROLE warehouse_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN END $$")
    postgres.execute(
        "DO $$ BEGIN CREATE ROLE quality_reader LOGIN PASSWORD 'r'; EXCEPTION WHEN duplicate_object THEN END $$"
    )
    postgres.execute("GRANT warehouse_reader TO quality_reader")
    dbname = psycopg.conninfo.conninfo_to_dict(flights)["dbname"]
    postgres.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO quality_reader')
    with psycopg.connect(flights) as conn:
        suites.run(conn, dataclasses.replace(suites.FLIGHTS, checks=suites.FLIGHTS.checks[:1]), run_id="run-3")
        # a table the quality job creates in quality later is readable too (default privileges)
        conn.execute("CREATE TABLE quality.later (n int)")
        conn.execute("INSERT INTO quality.later VALUES (1)")
        conn.commit()
    with psycopg.connect(postgres.dsn(dbname, user="quality_reader", password="r")) as conn:
        assert conn.execute("SELECT run_id, passed FROM quality.latest").fetchall() == [("run-3", True)]
        assert conn.execute("SELECT n FROM quality.later").fetchall() == [(1,)]
