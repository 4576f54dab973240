#!/bin/sh
# Turns the Docker secrets into Airflow's settings inside this process, so they never appear in a service
# spec, an argument list or a log, then runs `airflow ARGS`.
#
#   /run/secrets/airflow_db_password     the airflow role's password: metadata DB and (PGPASSWORD_FILE) warehouse
#   /run/secrets/airflow_secret_key      [api] secret_key, the same in every Airflow service
#   /run/secrets/airflow_jwt_secret      [api_auth] jwt_secret, the same in every Airflow service
#   /run/secrets/airflow_admin_password  the password of user "admin"
#   AIRFLOW_DB_HOST, AIRFLOW_DB_NAME     where the metadata database is (default: postgres, airflow)
set -eu

secret() {
    [ -r "/run/secrets/$1" ] || { echo "sawmill-airflow: secret $1 is not mounted" >&2; exit 1; }
    tr -d '\n' <"/run/secrets/$1"
}

if [ -z "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ]; then
    # Generated secrets are alphanumeric, so the password needs no URL quoting.
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://airflow:$(secret airflow_db_password)@${AIRFLOW_DB_HOST:-postgres}/${AIRFLOW_DB_NAME:-airflow}"
    export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
fi
if [ -z "${AIRFLOW__API__SECRET_KEY:-}" ]; then
    AIRFLOW__API__SECRET_KEY=$(secret airflow_secret_key)
    export AIRFLOW__API__SECRET_KEY
fi
if [ -z "${AIRFLOW__API_AUTH__JWT_SECRET:-}" ]; then
    AIRFLOW__API_AUTH__JWT_SECRET=$(secret airflow_jwt_secret)
    export AIRFLOW__API_AUTH__JWT_SECRET
fi
if [ -r /run/secrets/airflow_admin_password ]; then
    # The simple auth manager reads users' passwords from this file (and opens it read-write).
    auth_dir=$(mktemp -d)
    printf '{"admin": "%s"}' "$(secret airflow_admin_password)" >"$auth_dir/passwords.json"
    export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$auth_dir/passwords.json"
fi

exec airflow "$@"
