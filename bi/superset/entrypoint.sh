#!/bin/sh
# sawmill-superset COMMAND: what the bi image runs (the secrets are read by superset_config.py from /run/secrets).
#   serve   gunicorn on SAWMILL_BIND (0.0.0.0:8088) (SAWMILL_WORKERS workers, 2 by default)
#   setup   the idempotent setup job: schema migrations, roles and permissions, the admin user, the data sources
#           and the starter dashboards (setup.py); safe to run any number of times
#   other   passed to the `superset` CLI, e.g. `sawmill-superset version`
set -eu
case "${1:-serve}" in
    serve)
        exec gunicorn --bind "${SAWMILL_BIND:-0.0.0.0:8088}" --workers "${SAWMILL_WORKERS:-2}" --worker-class gthread --threads 4 \
            --timeout 120 --graceful-timeout 20 --limit-request-line 0 --limit-request-field_size 0 \
            --access-logfile - "superset.app:create_app()"
        ;;
    setup)
        superset db upgrade
        superset init
        exec python3 /opt/sawmill/superset/setup.py
        ;;
    *)
        exec superset "$@"
        ;;
esac
