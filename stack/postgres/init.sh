#!/bin/sh
# Sawmill platform init job: idempotent roles, databases, warehouse schemas and grants.
# Runs with `sh init.sh` in the local postgres image or the official postgres:15 image (psql 15 needed).
#
#   PGHOST (postgres)  PGPORT (5432)  POSTGRES_USER (postgres)  POSTGRES_PASSWORD_FILE (superuser password)
#   SAWMILL_SERVICES           e.g. "db_connect airflow metabase": each gets a LOGIN role and a database
#                              of the same name owned by it; password from /run/secrets/<name>_db_password
#   SAWMILL_WAREHOUSE_READERS  roles that may read schema consumption of database warehouse
#   SAWMILL_WAREHOUSE_WRITERS  roles that may create in schemas raw, curated, consumption of warehouse
#   SAWMILL_API_AUTHENTICATOR  e.g. "db_connect": gets NOINHERIT and membership of the NOLOGIN roles
#                              api_anon, api_reader, api_writer (what its requests SET ROLE to), the
#                              schema db_connect in warehouse, and an event trigger that NOTIFYs it on DDL
#   SAWMILL_INIT_TIMEOUT       seconds to wait for the server (120)
#
# Passwords reach psql only through the environment (\getenv), never argv, output or `set -x`.
set -euf  # -f: names from the environment must never be glob-expanded

PGHOST=${PGHOST:-postgres}
PGPORT=${PGPORT:-5432}
PGUSER=${POSTGRES_USER:-postgres}
PGDATABASE=postgres
PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10}
PGOPTIONS='-c client_min_messages=warning'
export PGHOST PGPORT PGUSER PGDATABASE PGCONNECT_TIMEOUT PGOPTIONS
unset PGPASSFILE PGSERVICE
SECRETS=/run/secrets
SERVICES=${SAWMILL_SERVICES:-}
READERS=${SAWMILL_WAREHOUSE_READERS:-}
WRITERS=${SAWMILL_WAREHOUSE_WRITERS:-}
API=${SAWMILL_API_AUTHENTICATOR:-}
WAREHOUSE=warehouse
SCHEMAS="raw curated consumption"

log() { printf 'sawmill-init: %s\n' "$*"; }
die() { printf 'sawmill-init: error: %s\n' "$*" >&2; exit 1; }
# shellcheck disable=SC2154  # rc is assigned inside the trap
trap 'rc=$?; [ "$rc" -eq 0 ] || printf "sawmill-init: FAILED (exit %s)\n" "$rc" >&2' EXIT

# read_secret FILE: the file's content without trailing newlines, into SECRET.
read_secret() {
    [ -r "$1" ] || die "cannot read secret file $1"
    SECRET=$(cat "$1") || die "cannot read secret file $1"
    [ -n "$SECRET" ] || die "secret file $1 is empty"
}

valid_name() {
    case "$1" in
        '' | [!a-z_]* | *[!a-z0-9_]*) die "invalid role name '$1' (must match ^[a-z_][a-z0-9_]*\$)" ;;
        pg_*) die "invalid role name '$1' (the pg_ prefix is reserved)" ;;
    esac
    [ "${#1}" -le 63 ] || die "invalid role name '$1' (longer than 63 characters)"
    [ "$1" != "$PGUSER" ] || die "'$1' is the superuser; it cannot be a service role"
}

# query DB [psql args] <SQL : one unaligned value per line into RESULT; dies on error.
query() {
    _db=$1; shift
    RESULT=$(psql -X -q -A -t -w -v ON_ERROR_STOP=1 -d "$_db" "$@") || die "query on database $_db failed"
}

# run WHAT DB [psql args] <SQL : runs a psql script (-1: in one transaction); dies naming WHAT on error.
run() {
    _what=$1 _db=$2; shift 2
    psql -X -q -w -v ON_ERROR_STOP=1 -d "$_db" "$@" >/dev/null || die "$_what failed"
}

# run_with_secret WHAT DB [psql args] <SQL : as run, with $SECRET readable in the script via \getenv.
run_with_secret() {
    _what=$1 _db=$2; shift 2
    SAWMILL_PW=$SECRET psql -X -q -w -v ON_ERROR_STOP=1 -d "$_db" "$@" >/dev/null || die "$_what failed"
}

role_exists() { query postgres -v n="$1" <<'SQL'
SELECT count(*) FROM pg_roles WHERE rolname = :'n';
SQL
    [ "$RESULT" = 1 ]
}

for n in $SERVICES $READERS $WRITERS $API; do valid_name "$n"; done

if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    read_secret "$POSTGRES_PASSWORD_FILE"
    PGPASSWORD=$SECRET
    export PGPASSWORD
elif [ -n "${POSTGRES_PASSWORD:-}" ]; then
    PGPASSWORD=$POSTGRES_PASSWORD
    export PGPASSWORD
fi
for n in $SERVICES; do read_secret "$SECRETS/${n}_db_password"; done

# --- wait for the server -------------------------------------------------------------------------
timeout=${SAWMILL_INIT_TIMEOUT:-120}
start=$(date +%s)
last=$start
until pg_isready -q -t 3; do
    now=$(date +%s)
    [ $((now - start)) -lt "$timeout" ] ||
        die "postgres at $PGHOST:$PGPORT is not accepting connections after $timeout s"
    if [ $((now - last)) -ge 5 ]; then
        log "waiting for postgres at $PGHOST:$PGPORT ($((now - start)) s)"
        last=$now
    fi
    sleep 1
done
log "postgres at $PGHOST:$PGPORT is accepting connections after $(($(date +%s) - start)) s"
RESULT=$(psql -X -q -A -t -w -c 'SELECT rolsuper FROM pg_roles WHERE rolname = current_user') ||
    die "cannot log in to $PGHOST:$PGPORT as $PGUSER (check POSTGRES_USER and POSTGRES_PASSWORD_FILE)"
[ "$RESULT" = t ] || die "$PGUSER can log in but is not a superuser"

# --- warehouse database and schemas --------------------------------------------------------------
query postgres -v d="$WAREHOUSE" <<'SQL'
SELECT count(*) FROM pg_database WHERE datname = :'d';
SQL
if [ "$RESULT" = 0 ]; then
    run "create database $WAREHOUSE" postgres -v d="$WAREHOUSE" <<'SQL'
CREATE DATABASE :"d";
SQL
    log "created database $WAREHOUSE"
else
    log "database $WAREHOUSE exists"
fi
# Only roles granted below may connect; schemas are created by the superuser with no PUBLIC rights.
run "restrict database $WAREHOUSE" postgres -v d="$WAREHOUSE" <<'SQL'
REVOKE ALL ON DATABASE :"d" FROM PUBLIC;
SQL
for s in $SCHEMAS; do
    query "$WAREHOUSE" -v s="$s" <<'SQL'
SELECT count(*) FROM pg_namespace WHERE nspname = :'s';
SQL
    if [ "$RESULT" = 0 ]; then
        run "create schema $WAREHOUSE.$s" "$WAREHOUSE" -v s="$s" <<'SQL'
CREATE SCHEMA IF NOT EXISTS :"s";
SQL
        log "created schema $WAREHOUSE.$s"
    else
        log "schema $WAREHOUSE.$s exists"
    fi
done

# --- service roles and databases -----------------------------------------------------------------
for n in $SERVICES; do
    read_secret "$SECRETS/${n}_db_password"
    query postgres -v n="$n" <<'SQL'
SELECT (SELECT count(*) FROM pg_roles WHERE rolname = :'n'),
       (SELECT count(*) FROM pg_database WHERE datname = :'n');
SQL
    role_found=${RESULT%|*}
    db_found=${RESULT#*|}
    if [ "$role_found" = 0 ]; then
        run_with_secret "create role $n" postgres -v n="$n" <<'SQL'
\getenv pw SAWMILL_PW
CREATE ROLE :"n" LOGIN PASSWORD :'pw';
SQL
        log "created role $n"
    else
        # Log in with the secret first, so an unchanged password is not rewritten (no change on re-runs).
        probe_db=postgres
        [ "$db_found" = 0 ] || probe_db=$n
        if PGPASSWORD=$SECRET psql -X -q -A -t -w -U "$n" -d "$probe_db" -c 'SELECT 1' >/dev/null 2>&1; then
            log "role $n exists, password unchanged"
        else
            run_with_secret "set password of role $n" postgres -v n="$n" <<'SQL'
\getenv pw SAWMILL_PW
ALTER ROLE :"n" LOGIN PASSWORD :'pw';
SQL
            log "role $n exists, password synced"
        fi
    fi
    if [ "$db_found" = 0 ]; then
        run "create database $n" postgres -v n="$n" <<'SQL'
CREATE DATABASE :"n" OWNER :"n";
SQL
        log "created database $n owned by $n"
    else
        query postgres -v n="$n" <<'SQL'
SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :'n';
SQL
        if [ "$RESULT" = "$n" ]; then
            log "database $n exists, owned by $n"
        else
            run "change owner of database $n" postgres -v n="$n" <<'SQL'
ALTER DATABASE :"n" OWNER TO :"n";
SQL
            log "database $n exists, owner changed from $RESULT to $n"
        fi
    fi
    # A service's database is its own: other services may not connect to it.
    run "restrict database $n" postgres -v n="$n" <<'SQL'
REVOKE CONNECT, TEMPORARY ON DATABASE :"n" FROM PUBLIC;
SQL
done

# --- warehouse grants ----------------------------------------------------------------------------
for n in $READERS $WRITERS; do
    role_exists "$n" || die "warehouse role $n does not exist (list it in SAWMILL_SERVICES)"
done
for w in $WRITERS; do
    run "grant warehouse write to $w" "$WAREHOUSE" -1 -v d="$WAREHOUSE" -v w="$w" <<'SQL'
GRANT CONNECT, CREATE, TEMPORARY ON DATABASE :"d" TO :"w";
GRANT USAGE, CREATE ON SCHEMA raw, curated, consumption TO :"w";
SQL
    log "writer $w: CONNECT, CREATE, TEMPORARY on $WAREHOUSE; USAGE, CREATE on raw, curated, consumption"
done
for r in $READERS; do
    # Tables that the writers (or the superuser) create in consumption later are readable too.
    for owner in "$PGUSER" $WRITERS; do
        run "default privileges for $r on tables of $owner" "$WAREHOUSE" -v o="$owner" -v r="$r" <<'SQL'
ALTER DEFAULT PRIVILEGES FOR ROLE :"o" IN SCHEMA consumption GRANT SELECT ON TABLES TO :"r";
SQL
    done
    run "grant warehouse read to $r" "$WAREHOUSE" -1 -v d="$WAREHOUSE" -v r="$r" <<'SQL'
GRANT CONNECT ON DATABASE :"d" TO :"r";
GRANT USAGE ON SCHEMA consumption TO :"r";
GRANT SELECT ON ALL TABLES IN SCHEMA consumption TO :"r";
SQL
    log "reader $r: CONNECT on $WAREHOUSE; SELECT on all current and future tables in consumption"
done

# --- REST API roles ------------------------------------------------------------------------------
if [ -n "$API" ]; then
    role_exists "$API" || die "API authenticator $API does not exist (list it in SAWMILL_SERVICES)"
    run "API roles for $API" "$WAREHOUSE" -1 -v a="$API" -v d="$WAREHOUSE" <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', r) FROM unnest(ARRAY['api_anon', 'api_reader', 'api_writer']) AS r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE :"a" NOINHERIT;
GRANT api_anon, api_reader, api_writer TO :"a";
GRANT USAGE ON SCHEMA consumption TO api_anon, api_reader, api_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA consumption TO api_reader, api_writer;
GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA consumption TO api_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA consumption TO api_writer;
GRANT TEMPORARY ON DATABASE :"d" TO api_writer;
CREATE SCHEMA IF NOT EXISTS db_connect AUTHORIZATION :"a";
CREATE OR REPLACE FUNCTION db_connect.notify_ddl() RETURNS event_trigger LANGUAGE plpgsql AS
$$ BEGIN NOTIFY db_connect, 'reload schema'; END $$;
SELECT 'CREATE EVENT TRIGGER db_connect_schema_changed ON ddl_command_end EXECUTE FUNCTION db_connect.notify_ddl()'
WHERE NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'db_connect_schema_changed') \gexec
SELECT 'CREATE EVENT TRIGGER db_connect_schema_dropped ON sql_drop EXECUTE FUNCTION db_connect.notify_ddl()'
WHERE NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'db_connect_schema_dropped') \gexec
SQL
    for owner in "$PGUSER" $WRITERS; do
        run "default API privileges on tables of $owner" "$WAREHOUSE" -1 -v o="$owner" <<'SQL'
ALTER DEFAULT PRIVILEGES FOR ROLE :"o" IN SCHEMA consumption GRANT SELECT ON TABLES TO api_reader, api_writer;
ALTER DEFAULT PRIVILEGES FOR ROLE :"o" IN SCHEMA consumption GRANT INSERT, UPDATE, DELETE ON TABLES TO api_writer;
ALTER DEFAULT PRIVILEGES FOR ROLE :"o" IN SCHEMA consumption GRANT USAGE ON SEQUENCES TO api_writer;
SQL
    done
    log "API authenticator $API: may SET ROLE api_anon, api_reader, api_writer; DDL in $WAREHOUSE notifies it"
fi

log "done"
