"""The example pipeline: each day's flights (generated, no internet needed) → raw → curated → consumption.

Daily, with retries. The batch id is the run's day, so a re-run of a day replaces nothing and changes
nothing; its load publishes the `flights` asset, which schedules the quality checks.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, task

FLIGHTS = Asset("warehouse.consumption.flights")  # data_quality runs on each update of it


def run_day(context: dict[str, Any]) -> dt.date:
    """The day a run is for: its logical date, or when it was asked to run (manual runs may have no logical date)."""
    moment = context.get("logical_date") or context["dag_run"].run_after
    return moment.date()


with DAG(
    dag_id="example_flights",
    description="a day of flights through raw, curated and consumption",
    schedule="@daily",
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=2)},
    tags=["parse_sources", "example"],
):

    @task(outlets=[FLIGHTS])
    def load_flights(**context: Any) -> dict[str, Any]:
        from dataclasses import asdict

        from parse_sources.batch import example
        from parse_sources.batch.connection import connect
        from parse_sources.batch.pipeline import run_batch
        from parse_sources.batch.sources import CsvFile

        day = run_day(context)
        with tempfile.TemporaryDirectory() as directory, connect() as conn:
            path = example.write_flights(day, Path(directory) / f"flights-{day}.csv")
            return asdict(run_batch(conn, example.FLIGHTS, CsvFile(str(path)), day.isoformat()))

    load_flights()
