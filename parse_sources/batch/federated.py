"""Summaries Presto computes over what is still in Kafka, stored in consumption (the Airflow DAG
`presto_host_metrics`): the warehouse keeps the answer, Presto does the reading.

Presto's address comes from PRESTO_HOST and PRESTO_PORT (inside the platform: the coordinator, no nginx).
"""

from __future__ import annotations

import os

import prestodb
import psycopg

TABLE = "consumption.host_metrics_by_minute"
SUMMARY = """
SELECT host, date_trunc('minute', ts) AS minute, count(*) AS samples,
       avg(cpu_user + cpu_system) AS cpu_busy_pct, min(mem_available_kb) AS mem_available_kb_min
FROM kafka.default."{topic}"
WHERE ts >= date_add('hour', -{hours}, localtimestamp)
GROUP BY 1, 2
"""


def presto_cursor(user: str = "airflow") -> prestodb.dbapi.Cursor:
    connection = prestodb.dbapi.connect(
        host=os.environ["PRESTO_HOST"], port=int(os.environ.get("PRESTO_PORT", "8080")), user=user, catalog="tpch"
    )
    return connection.cursor()


def summarize_host_metrics(
    presto: prestodb.dbapi.Cursor, conn: psycopg.Connection, topic: str = "host_metrics", hours: int = 1
) -> int:
    """Per host and minute of the last `hours`, from the topic; upserted, so a re-run only refreshes minutes."""
    presto.execute(SUMMARY.format(topic=topic.replace('"', '""'), hours=int(hours)))
    rows = presto.fetchall()
    with conn.transaction():
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (host text, minute timestamp, samples bigint,"
            " cpu_busy_pct double precision, mem_available_kb_min bigint, PRIMARY KEY (host, minute))"
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s) ON CONFLICT (host, minute) DO UPDATE SET"
                " samples = EXCLUDED.samples, cpu_busy_pct = EXCLUDED.cpu_busy_pct,"
                " mem_available_kb_min = EXCLUDED.mem_available_kb_min",
                rows,
            )
    return len(rows)
