#!/bin/sh
# Sawmill platform init job: idempotent roles, databases, warehouse schemas and grants.
# Runs with `sh init.sh` in the local postgres image or the official postgres:15 image (psql 15 needed).
#
#   PGHOST (postgres)  PGPORT (5432)  POSTGRES_USER (postgres)  POSTGRES_PASSWORD_FILE (superuser password)
#   SAWMILL_SERVICES           e.g. "db_connect airflow metabase": each gets a LOGIN role and a database
#                              of the same name owned by it; password from /run/secrets/<name>_db_password
#   SAWMILL_WAREHOUSE_READERS  roles that may read schema consumption of database warehouse; members of
#                              warehouse_reader
#   SAWMILL_WAREHOUSE_ANALYSTS roles that may read schemas raw, curated and consumption of warehouse (current
#                              tables and those the superuser or a writer creates); members of warehouse_reader
#   SAWMILL_WAREHOUSE_WRITERS  roles that may create in schemas raw, curated, consumption of warehouse
#   SAWMILL_AUTHENTICATORS     space-separated "name:role1,role2,..." entries, e.g.
#                              "db_connect:api_anon,api_reader,api_writer". Each name is a login role (list it in
#                              SAWMILL_SERVICES) whose clients' requests SET ROLE to one of its request roles. It gets
#                              NOINHERIT, CONNECT on warehouse, membership of its request roles (NOLOGIN, created if
#                              missing; they INHERIT, so a request role has what its groups have), the schema
#                              <name> in warehouse owned by it, and the event triggers <name>_schema_changed and
#                              <name>_schema_dropped, which NOTIFY channel <name> ('reload schema') on DDL in warehouse.
#                              A request role's rights in schema consumption follow from its name (the same rule for
#                              every authenticator), on current tables and on those the superuser or a writer creates:
#                                writer, *_writer  USAGE; SELECT, INSERT, UPDATE, DELETE; USAGE on sequences;
#                                                  TEMPORARY on warehouse; member of warehouse_reader
#                                reader, *_reader  USAGE; SELECT; member of warehouse_reader
#                                any other         USAGE only (e.g. api_anon: it reads what is granted to it by hand)
#                              A view in consumption is read-only to request roles (a simple view is auto-updatable
#                              and would write the table under it, e.g. curated data the ETL owns) unless its comment
#                              holds the word @writable: then writer request roles get INSERT, UPDATE, DELETE on it.
#                              The event trigger <name>_schema_changed applies this on every DDL command on a view
#                              (CREATE VIEW, COMMENT ON VIEW...; default privileges cannot tell a view from a table),
#                              and this job applies it to every view on each run.
#   SAWMILL_INIT_TIMEOUT       seconds to wait for the server (120)
#
# warehouse_reader is a NOLOGIN group role made here: every reader and every reader or writer request role is a
# member (request roles INHERIT, so it works through a NOINHERIT authenticator's SET ROLE). Whoever creates a schema
# beyond consumption (e.g. the quality jobs' schema quality) grants reading it to warehouse_reader, without a list
# of readers: readers added later can read it at once. Nothing is revoked from roles no longer listed.
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
ANALYSTS=${SAWMILL_WAREHOUSE_ANALYSTS:-}
WRITERS=${SAWMILL_WAREHOUSE_WRITERS:-}
AUTHENTICATORS=${SAWMILL_AUTHENTICATORS:-}
WAREHOUSE=warehouse
GROUP_READER=warehouse_reader
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
    [ "$1" != "$GROUP_READER" ] || die "'$1' is reserved (the group role of every warehouse reader)"
}

# request_roles ENTRY: an SAWMILL_AUTHENTICATORS entry "name:role1,role2" checked; AUTH=name, ROLES="role1 role2".
request_roles() {
    case "$1" in
        *:*:*) die "invalid SAWMILL_AUTHENTICATORS entry '$1' (more than one ':')" ;;
        *:*) ;;
        *) die "invalid SAWMILL_AUTHENTICATORS entry '$1' (expected name:role1,role2,...)" ;;
    esac
    AUTH=${1%%:*}
    _roles=${1#*:}
    valid_name "$AUTH"
    # <name>_schema_changed must fit in 63 characters, or Postgres would truncate it
    [ "${#AUTH}" -le 48 ] || die "invalid authenticator name '$AUTH' (longer than 48 characters)"
    case "$_roles" in
        '' | ,* | *, | *,,*) die "invalid SAWMILL_AUTHENTICATORS entry '$1' (empty request role)" ;;
    esac
    ROLES=$(printf '%s' "$_roles" | tr ',' ' ')
    for _r in $ROLES; do
        valid_name "$_r"
        [ "$_r" != "$AUTH" ] || die "authenticator $AUTH cannot be its own request role"
        for _s in $SERVICES; do
            [ "$_r" != "$_s" ] || die "request role $_r of $AUTH is a service (login) role"
        done
    done
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

# view_writes_sql ROLES WRITERS: PL/pgSQL for view `v`: writes revoked from every request role in ROLES, or, when
# the view's comment holds the word @writable, granted to the WRITERS. Names are checked by valid_name: no quoting.
view_writes_sql() {
    _all=$(printf '%s' "$1" | tr -s ' ' ',')
    _writers=$(printf '%s' "$2" | sed 's/^ *//' | tr -s ' ' ',')
    printf '%s' "IF coalesce(obj_description(v, 'pg_class'), '') ~ '(^|\s)@writable(\s|\$)' THEN"
    [ -z "$_writers" ] || printf '%s' " EXECUTE format('GRANT INSERT, UPDATE, DELETE ON %s TO $_writers', v);"
    printf '%s' " ELSE EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON %s FROM $_all', v); END IF;"
}

role_exists() { query postgres -v n="$1" <<'SQL'
SELECT count(*) FROM pg_roles WHERE rolname = :'n';
SQL
    [ "$RESULT" = 1 ]
}

for n in $SERVICES $READERS $WRITERS; do valid_name "$n"; done
for entry in $AUTHENTICATORS; do request_roles "$entry"; done

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
for n in $READERS $ANALYSTS $WRITERS; do
    role_exists "$n" || die "warehouse role $n does not exist (list it in SAWMILL_SERVICES)"
done
run "group role $GROUP_READER" postgres -1 -v g="$GROUP_READER" <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', :'g') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'g') \gexec
ALTER ROLE :"g" NOLOGIN;
SQL
log "group role $GROUP_READER: NOLOGIN; what is granted to it reaches every reader"
for w in $WRITERS; do
    run "grant warehouse write to $w" "$WAREHOUSE" -1 -v d="$WAREHOUSE" -v w="$w" <<'SQL'
GRANT CONNECT, CREATE, TEMPORARY ON DATABASE :"d" TO :"w";
GRANT USAGE, CREATE ON SCHEMA raw, curated, consumption TO :"w";
SQL
    log "writer $w: CONNECT, CREATE, TEMPORARY on $WAREHOUSE; USAGE, CREATE on raw, curated, consumption"
done
# Tables that the writers (or the superuser) create in consumption later get the same grants as today's.
OWNERS=$(printf '%s ' "$PGUSER" $WRITERS)
for r in $READERS; do
    run "grant warehouse read to $r" "$WAREHOUSE" -1 -v d="$WAREHOUSE" -v r="$r" -v g="$GROUP_READER" \
        -v owners="$OWNERS" <<'SQL'
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA consumption GRANT SELECT ON TABLES TO %I', o, :'r')
FROM unnest(string_to_array(trim(:'owners'), ' ')) AS o \gexec
GRANT CONNECT ON DATABASE :"d" TO :"r";
GRANT USAGE ON SCHEMA consumption TO :"r";
GRANT SELECT ON ALL TABLES IN SCHEMA consumption TO :"r";
GRANT :"g" TO :"r";
SQL
    log "reader $r: CONNECT on $WAREHOUSE; SELECT on current and future tables in consumption; in $GROUP_READER"
done
for r in $ANALYSTS; do
    run "grant warehouse analysis to $r" "$WAREHOUSE" -1 -v d="$WAREHOUSE" -v r="$r" -v g="$GROUP_READER" \
        -v owners="$OWNERS" -v schemas="$SCHEMAS" <<'SQL'
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO %I', o, s, :'r')
FROM unnest(string_to_array(trim(:'owners'), ' ')) AS o, unnest(string_to_array(:'schemas', ' ')) AS s \gexec
GRANT CONNECT ON DATABASE :"d" TO :"r";
GRANT USAGE ON SCHEMA raw, curated, consumption TO :"r";
GRANT SELECT ON ALL TABLES IN SCHEMA raw, curated, consumption TO :"r";
GRANT :"g" TO :"r";
SQL
    log "analyst $r: CONNECT on $WAREHOUSE; SELECT on current and future tables in $SCHEMAS; in $GROUP_READER"
done

# --- authenticators and their request roles ------------------------------------------------------
for entry in $AUTHENTICATORS; do
    request_roles "$entry"
    a=$AUTH
    role_exists "$a" || die "authenticator $a does not exist (list it in SAWMILL_SERVICES)"
    run "request roles of $a" "$WAREHOUSE" -1 -v a="$a" -v d="$WAREHOUSE" -v roles="$ROLES" <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', r) FROM unnest(string_to_array(:'roles', ' ')) AS r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE :"a" NOINHERIT;
GRANT CONNECT ON DATABASE :"d" TO :"a";
SELECT format('GRANT %I TO %I', r, :'a') FROM unnest(string_to_array(:'roles', ' ')) AS r \gexec
SQL
    summary=
    for r in $ROLES; do
        # The rule in the header: a role's name says what it may do in consumption.
        case "$r" in
            writer | *_writer) reads=on writes=on what="reads and writes consumption, member of $GROUP_READER" ;;
            reader | *_reader) reads=on writes=off what="reads consumption, member of $GROUP_READER" ;;
            *) reads=off writes=off what="USAGE on consumption only" ;;
        esac
        run "grants of request role $r" "$WAREHOUSE" -1 -v d="$WAREHOUSE" -v r="$r" -v g="$GROUP_READER" \
            -v owners="$OWNERS" -v reads="$reads" -v writes="$writes" <<'SQL'
GRANT USAGE ON SCHEMA consumption TO :"r";
\if :reads
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA consumption GRANT SELECT ON TABLES TO %I', o, :'r')
FROM unnest(string_to_array(trim(:'owners'), ' ')) AS o \gexec
GRANT SELECT ON ALL TABLES IN SCHEMA consumption TO :"r";
GRANT :"g" TO :"r";
ALTER ROLE :"r" INHERIT;
\endif
\if :writes
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA consumption GRANT INSERT, UPDATE, DELETE ON TABLES TO %I',
              o, :'r')
FROM unnest(string_to_array(trim(:'owners'), ' ')) AS o \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA consumption GRANT USAGE ON SEQUENCES TO %I', o, :'r')
FROM unnest(string_to_array(trim(:'owners'), ' ')) AS o \gexec
SELECT format('GRANT INSERT, UPDATE, DELETE ON %s TO %I', c.oid::regclass, :'r')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'consumption' AND c.relkind IN ('r', 'p', 'f') \gexec
GRANT USAGE ON ALL SEQUENCES IN SCHEMA consumption TO :"r";
GRANT TEMPORARY ON DATABASE :"d" TO :"r";
\endif
SQL
        log "request role $r of $a: $what"
        summary="$summary${summary:+, }$r"
    done
    # Views are read-only to request roles unless declared writable (see the header): the writer request roles.
    writers=
    for r in $ROLES; do
        case "$r" in writer | *_writer) writers="$writers $r" ;; esac
    done
    sync_view=$(view_writes_sql "$ROLES" "$writers")
    # Schema, function, channel and triggers are named after the authenticator (db_connect: schema db_connect,
    # channel db_connect, triggers db_connect_schema_changed and db_connect_schema_dropped). The function also
    # applies the view rule to every view a DDL command in consumption created, altered or commented on.
    run "schema and DDL notifications of $a" "$WAREHOUSE" -1 -v a="$a" -v sync="$sync_view" <<'SQL'
CREATE SCHEMA IF NOT EXISTS :"a" AUTHORIZATION :"a";
SELECT format('CREATE OR REPLACE FUNCTION %I.notify_ddl() RETURNS event_trigger LANGUAGE plpgsql'
              ' SET search_path = pg_catalog AS $body$ DECLARE v regclass; BEGIN NOTIFY %I, ''reload schema'';'
              ' IF TG_EVENT = ''ddl_command_end'' THEN FOR v IN SELECT objid FROM pg_event_trigger_ddl_commands()'
              ' WHERE object_type = ''view'' AND schema_name = ''consumption'''
              ' AND command_tag NOT IN (''GRANT'', ''REVOKE'') LOOP %s END LOOP; END IF; END $body$',
              :'a', :'a', :'sync') \gexec
SELECT format('CREATE EVENT TRIGGER %I ON ddl_command_end EXECUTE FUNCTION %I.notify_ddl()', t, :'a')
FROM (SELECT :'a' || '_schema_changed') AS n (t)
WHERE NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = t) \gexec
SELECT format('CREATE EVENT TRIGGER %I ON sql_drop EXECUTE FUNCTION %I.notify_ddl()', t, :'a')
FROM (SELECT :'a' || '_schema_dropped') AS n (t)
WHERE NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = t) \gexec
SQL
    run "read-only views of $a" "$WAREHOUSE" -1 -v sync="$sync_view" <<'SQL'
SELECT format('DO $body$ DECLARE v regclass; BEGIN FOR v IN SELECT c.oid FROM pg_class c'
              ' JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ''consumption'' AND c.relkind = ''v'''
              ' LOOP %s END LOOP; END $body$', :'sync') \gexec
SQL
    log "authenticator $a: NOINHERIT, may SET ROLE $summary; DDL in $WAREHOUSE notifies channel $a"
    log "views in consumption: read-only to $summary unless their comment holds @writable (then writable to${writers:- nobody})"
done

log "done"
