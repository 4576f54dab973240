"""Airflow 3 at schedule.<domain>: api-server, scheduler, dag-processor, triggerer; DAGs run parse_sources."""

from pathlib import Path

from stack.component import Component, Image, Route

HERE = Path(__file__).resolve().parent
# Each Airflow process pools up to 5 connections (SQLAlchemy's default); the api-server runs two workers,
# and LocalExecutor's task processes connect to the warehouse on their own.
CONNECTIONS = 40

COMPONENT = Component(
    name="airflow",
    folder=HERE,
    images=(
        # our DAGs and parse_sources on Airflow: built FROM the pinned official image in registry mode
        Image(
            "airflow",
            HERE,
            registry="apache/airflow:3.3.2-python3.11",
            includes=(HERE.parent / "parse_sources",),
            extends_registry=True,
        ),
    ),
    secrets=("airflow_secret_key", "airflow_jwt_secret", "airflow_admin_password"),
    requires=("postgres",),
    route=Route("schedule", "api-server", 8080, health_path="/api/v2/monitor/health"),
    database=True,
    warehouse="writer",
    db_connections=lambda s: CONNECTIONS,
    hints=("Airflow: log in as admin with {deploy} secrets show airflow_admin_password",),
)
