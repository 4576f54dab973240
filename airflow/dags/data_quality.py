"""Data quality of every configured table: one task per table and dimension, results in schema `quality`.

Runs after each load of a table (asset-scheduled); a failed check fails its task with what was measured,
what was allowed and the query that shows the offending rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, Asset, task

from parse_sources.quality.suites import SUITES

with DAG(
    dag_id="data_quality",
    description="completeness, uniqueness, validity, consistency, timeliness, accuracy",
    schedule=[Asset(f"warehouse.consumption.{table}") for table in SUITES],  # published by the loads
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
    tags=["parse_sources", "quality"],
):
    for table, suite in SUITES.items():
        for dimension in suite.dimensions:

            @task(task_id=f"{table}_{dimension}")
            def check(table: str = table, dimension: str = dimension, **context: Any) -> int:
                from parse_sources.batch.connection import connect
                from parse_sources.quality.suites import run

                with connect() as conn:
                    return len(run(conn, SUITES[table], context["run_id"], (dimension,)))

            check()
