"""Superset's unattended setup, run by the bi init job after `superset db upgrade` and `superset init`.

Idempotent, so `up` may run it any number of times: the admin user is created once and its password follows the
Docker secret; each data source is found by its fixed uuid and its URI (with the current password) rewritten;
the starter dashboards (dashboards/*.yaml, a compact form of our own) are expanded into Superset's import bundle
and imported with overwrite, so a re-run replaces them in place and never adds a second copy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import URL

SECRETS = Path(os.environ.get("SAWMILL_SECRETS_DIR", "/run/secrets"))
DASHBOARDS = Path(os.environ.get("SAWMILL_DASHBOARDS", Path(__file__).resolve().parent / "dashboards"))
ADMIN = "admin"
# Fixed, so a re-run finds what an earlier one made, and the dashboards' datasets can name their database.
WAREHOUSE_UUID = "163d2bdc-752c-4438-a02b-aec8d2158acf"
PRESTO_UUID = "54675a01-de13-4f79-ba75-276181beb57b"
VERSION = "1.0.0"


def log(message: str) -> None:
    print(f"sawmill-superset-setup: {message}", flush=True)


def secret(name: str) -> str:
    value = (SECRETS / name).read_text().strip()
    if not value:
        raise SystemExit(f"sawmill-superset-setup: secret {SECRETS / name} is empty")
    return value


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"sawmill-superset-setup: {name} is not set")
    return value


def data_sources() -> list[dict[str, Any]]:
    """The databases Superset should know: the warehouse (as the bi role, read-only) and Presto when enabled."""
    warehouse = URL.create(
        "postgresql+psycopg2",
        username=env("SAWMILL_WAREHOUSE_USER", "bi"),
        password=secret(env("SAWMILL_WAREHOUSE_PASSWORD_SECRET", "bi_db_password")),
        host=env("SAWMILL_WAREHOUSE_HOST", "postgres"),
        port=int(env("SAWMILL_WAREHOUSE_PORT", "5432")),
        database=env("SAWMILL_WAREHOUSE_DB", "warehouse"),
    ).render_as_string(hide_password=False)
    sources = [{"name": "warehouse", "uuid": WAREHOUSE_UUID, "uri": warehouse}]
    if os.environ.get("SAWMILL_PRESTO_HOST"):
        # inside the platform Presto asks for no password (nginx's basic auth is for people); queries run as `bi`
        presto = f"presto://bi@{env('SAWMILL_PRESTO_HOST')}:{env('SAWMILL_PRESTO_PORT', '8080')}/warehouse"
        sources.append({"name": "presto", "uuid": PRESTO_UUID, "uri": presto})
    return sources


def ensure_admin(security_manager: Any) -> Any:
    """The admin user, created once; its password is set again whenever the secret changed."""
    from werkzeug.security import check_password_hash

    password = secret(env("SAWMILL_ADMIN_PASSWORD_SECRET", "bi_admin_password"))
    user = security_manager.find_user(username=ADMIN)
    if user is None:
        role = security_manager.find_role("Admin")
        user = security_manager.add_user(ADMIN, "Sawmill", "Admin", "admin@sawmill.invalid", role, password=password)
        if not user:
            raise SystemExit("sawmill-superset-setup: could not create the admin user")
        log("created user admin")
    elif not check_password_hash(user.password, password):
        security_manager.reset_password(user.id, password)
        log("user admin exists, password synced from the secret")
    else:
        log("user admin exists, password unchanged")
    return user


def ensure_databases(db: Any, database_model: Any) -> None:
    """One Superset database per data source, found by uuid (or, once, by name), its URI always current."""
    import uuid as uuid_module

    for source in data_sources():
        found = db.session.query(database_model).filter_by(uuid=uuid_module.UUID(source["uuid"])).one_or_none()
        if found is None:
            found = db.session.query(database_model).filter_by(database_name=source["name"]).one_or_none()
        if found is None:
            found = database_model(database_name=source["name"], uuid=uuid_module.UUID(source["uuid"]))
            db.session.add(found)
            what = "created"
        elif found.sqlalchemy_uri_decrypted != source["uri"]:
            what = "updated (address or password changed)"
        else:
            what = "unchanged"
        found.set_sqlalchemy_uri(source["uri"])
        found.database_name = source["name"]
        found.expose_in_sqllab = True
        # Postgres refuses writes to the bi role anyway; Superset need not even send them.
        found.allow_dml = False
        found.allow_ctas = False
        found.allow_cvas = False
        found.allow_run_async = False
        found.allow_file_upload = False
        db.session.flush()
        log(f"database {source['name']}: {what}")
    db.session.commit()


def _column(name: str, sql_type: str) -> dict[str, Any]:
    temporal = any(word in sql_type.upper() for word in ("DATE", "TIME"))
    return {"column_name": name, "type": sql_type, "is_dttm": temporal, "groupby": True, "filterable": True}


def _chart_params(chart: dict[str, Any], dataset_id: str) -> dict[str, Any]:
    params = {"adhoc_filters": [], "time_range": "No filter", "datasource": dataset_id, "viz_type": chart["viz_type"]}
    return params | chart.get("params", {})


def _position(title: str, rows: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """The dashboard's layout: a header, then one grid row per row of the spec, charts in the spec's order."""
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": title}},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
    }
    for number, row in enumerate(rows):
        row_id = f"ROW-{number}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        for chart in row:
            chart_id = f"CHART-{chart['uuid'][:8]}"
            position[row_id]["children"].append(chart_id)
            # chartId: replaced by the chart's id on import (Superset reads the key before it maps uuids)
            position[chart_id] = {
                "type": "CHART",
                "id": chart_id,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {
                    "chartId": 0,
                    "uuid": chart["uuid"],
                    "width": chart["width"],
                    "height": 50,
                    "sliceName": chart["name"],
                },
            }
    return position


def bundle(specs: list[dict[str, Any]], databases: dict[str, str]) -> dict[str, str]:
    """Superset's v1 import bundle (file name -> YAML) for the dashboard specs; `databases` maps a database
    uuid to its current config (already in Superset, so the import only links to it)."""
    files: dict[str, str] = {"metadata.yaml": yaml.safe_dump({"version": VERSION, "timestamp": "2026-12-04T00:00:00"})}
    for database_uuid, config in databases.items():
        files[f"databases/{database_uuid}.yaml"] = config
    for spec in specs:
        database_uuid = {"warehouse": WAREHOUSE_UUID, "presto": PRESTO_UUID}[spec.get("database", "warehouse")]
        datasets = spec["datasets"]
        for name, dataset in datasets.items():
            config = {
                "table_name": dataset.get("table", name),
                "schema": dataset.get("schema"),
                "sql": dataset.get("sql"),
                "uuid": dataset["uuid"],
                "database_uuid": database_uuid,
                "version": VERSION,
                "columns": [_column(column, kind) for column, kind in dataset["columns"].items()],
                "metrics": [{"metric_name": "count", "expression": "COUNT(*)"}],
                "main_dttm_col": next((c for c, k in dataset["columns"].items() if "TIME" in k.upper()), None),
                "filter_select_enabled": True,
                "offset": 0,
            }
            files[f"datasets/{name}.yaml"] = yaml.safe_dump(config)
        for row in spec["rows"]:
            for chart in row:
                config = {
                    "slice_name": chart["name"],
                    "viz_type": chart["viz_type"],
                    "params": _chart_params(chart, "0__table"),
                    "uuid": chart["uuid"],
                    "dataset_uuid": datasets[chart["dataset"]]["uuid"],
                    "version": VERSION,
                    "query_context": None,
                    "cache_timeout": 0,
                }
                files[f"charts/{chart['uuid']}.yaml"] = yaml.safe_dump(config)
        refresh = spec.get("refresh_seconds", 0)
        if refresh:  # a live dashboard: the platform's setting decides how often
            refresh = int(os.environ.get("SAWMILL_REFRESH_SECONDS", refresh))
        metadata = {
            "refresh_frequency": refresh,
            "timed_refresh_immune_slices": [],
            "expanded_slices": {},
            "color_scheme": "supersetColors",
            "label_colors": {},
            "native_filter_configuration": [],
            "cross_filters_enabled": False,
            "default_filters": "{}",
        }
        files[f"dashboards/{spec['slug']}.yaml"] = yaml.safe_dump(
            {
                "dashboard_title": spec["title"],
                "slug": spec["slug"],
                "uuid": spec["uuid"],
                "position": _position(spec["title"], spec["rows"]),
                "metadata": metadata,
                "published": True,
                "version": VERSION,
            }
        )
    return files


def load_specs(folder: Path) -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yaml"))]


def import_dashboards(db: Any, database_model: Any, specs: list[dict[str, Any]]) -> None:
    """Datasets, then charts, then dashboards, each overwritten in place (Superset's dashboard import alone would
    keep stale charts and datasets: it imports what a dashboard depends on without overwrite)."""
    from superset.commands.chart.importers.v1 import ImportChartsCommand
    from superset.commands.dashboard.importers.v1 import ImportDashboardsCommand
    from superset.commands.dataset.importers.v1 import ImportDatasetsCommand

    databases = {}
    for database in db.session.query(database_model).all():
        if str(database.uuid) in (WAREHOUSE_UUID, PRESTO_UUID):
            config = {
                "database_name": database.database_name,
                "sqlalchemy_uri": database.sqlalchemy_uri,  # password masked: the import links, never rewrites
                "uuid": str(database.uuid),
                "version": VERSION,
                "expose_in_sqllab": True,
            }
            databases[str(database.uuid)] = yaml.safe_dump(config)
    contents = bundle(specs, databases)
    for command in (ImportDatasetsCommand, ImportChartsCommand, ImportDashboardsCommand):
        command(contents, overwrite=True).run()
    for spec in specs:
        log(f"dashboard {spec['slug']!r} ({spec['title']}): loaded, {sum(map(len, spec['rows']))} charts")


def main() -> int:
    from flask import g
    from superset.app import create_app

    app = create_app()
    with app.app_context(), app.test_request_context():
        from superset import db, security_manager
        from superset.models.core import Database

        user = ensure_admin(security_manager)
        g.user = user  # the importers check the acting user's permissions
        ensure_databases(db, Database)
        import_dashboards(db, Database, load_specs(DASHBOARDS))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
