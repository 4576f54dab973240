"""Every 10 minutes, Presto summarizes the last hour of the host_metrics topic (still in Kafka) per host and
minute into consumption.host_metrics_by_minute. Defined only where the platform runs Presto (PRESTO_HOST)."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import DAG, task

if os.environ.get("PRESTO_HOST"):
    with DAG(
        dag_id="presto_host_metrics",
        description="Presto over Kafka: host metrics per minute into consumption",
        schedule=dt.timedelta(minutes=10),
        start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=1)},
        tags=["parse_sources", "presto"],
    ):

        @task
        def summarize() -> int:
            from parse_sources.batch.connection import connect
            from parse_sources.batch.federated import presto_cursor, summarize_host_metrics

            with connect() as conn:
                return summarize_host_metrics(presto_cursor(), conn)

        summarize()
