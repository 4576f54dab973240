"""The Airflow image: its DAGs import, and `airflow dags test` runs the example pipeline against real Postgres.

Airflow runs inside the image the platform deploys (built through stack.images, so it is cached by content
digest and rebuilt only when airflow/ or parse_sources/ changed), on the host network to reach the
integration Postgres on 127.0.0.1. The dev virtualenv never installs Airflow.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from stack import components, images
from stack.config import load_settings
from stack.swarm import DockerSwarm
from tests.integration.conftest import PostgresServer

LIST_DAGS = """
import json, warnings
warnings.simplefilter("ignore")
from airflow.dag_processing.dagbag import DagBag
bag = DagBag("/opt/airflow/dags")
print(json.dumps({"errors": bag.import_errors, "dags": {d: sorted(bag.dags[d].task_ids) for d in bag.dag_ids}}))
"""


@pytest.fixture(scope="session")
def airflow_image() -> str:
    ref = images.ref(components.known()["airflow"].images[0], load_settings(images="local"))
    images.ensure(DockerSwarm(), [ref])
    return ref.ref


@pytest.fixture
def metadata_db(postgres: PostgresServer) -> Iterator[str]:
    name = f"airflow_{uuid.uuid4().hex[:10]}"
    postgres.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://{postgres.user}:{postgres.password}@{postgres.host}:{postgres.port}/{name}"
    finally:
        postgres.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def run_in_image(
    image: str, script: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    argv = ["docker", "run", "--rm", "--network", "host", "--entrypoint", "sh"]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    return subprocess.run([*argv, image, "-c", script], capture_output=True, text=True, timeout=timeout, check=False)


def test_every_dag_imports_without_error(airflow_image: str) -> None:
    result = run_in_image(airflow_image, f"python3 -c '{LIST_DAGS}'", {})
    assert result.returncode == 0, result.stderr[-3000:]
    bag = json.loads(result.stdout.strip().splitlines()[-1])
    assert bag["errors"] == {}
    assert bag["dags"] == {
        "example_flights": ["load_flights"],
        "data_quality": sorted(
            f"flights_{d}" for d in ("completeness", "uniqueness", "validity", "consistency", "timeliness", "accuracy")
        ),
    }


def test_airflow_dags_test_runs_the_example_pipeline_and_its_quality_checks(
    airflow_image: str, metadata_db: str, warehouse: str
) -> None:
    target = conninfo_to_dict(warehouse)
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
        "AIRFLOW__API__SECRET_KEY": "integration",
        "AIRFLOW__API_AUTH__JWT_SECRET": "integration",
        "PGHOST": str(target["host"]),
        "PGPORT": str(target["port"]),
        "PGDATABASE": str(target["dbname"]),
        "PGUSER": str(target["user"]),
        "PGPASSWORD": str(target["password"]),
    }
    script = (
        "set -e; sawmill-airflow db migrate >/dev/null"
        " && sawmill-airflow dags test example_flights 2024-05-01"
        " && sawmill-airflow dags test example_flights 2024-05-01"  # a re-run of the day changes nothing
        " && sawmill-airflow dags test data_quality 2024-05-01"
    )
    result = run_in_image(airflow_image, script, env, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    with psycopg.connect(warehouse) as conn:
        served = conn.execute("SELECT count(*), min(flight_date)::text FROM consumption.flights").fetchone()
        batches = conn.execute("SELECT batch_id, rows_loaded, rows_quarantined FROM etl.batches").fetchall()
        quality = conn.execute("SELECT count(DISTINCT dimension), bool_and(passed) FROM quality.results").fetchone()
    assert served == (499, "2024-05-01")
    assert batches == [("2024-05-01", 499, 1)]
    assert quality == (6, True)
