#!/usr/bin/env bash
# Entrypoint with the official postgres image's contract:
#   POSTGRES_PASSWORD | POSTGRES_PASSWORD_FILE   superuser password (required unless POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER[_FILE]        superuser name (default postgres)
#   POSTGRES_DB[_FILE]          database created at initialisation (default: the user's name)
#   POSTGRES_INITDB_ARGS[_FILE] extra initdb arguments;  POSTGRES_INITDB_WALDIR  initdb --waldir
#   POSTGRES_HOST_AUTH_METHOD   pg_hba method for "host all all all" (default scram-sha-256)
#   PGDATA                      data directory (default /var/lib/postgresql/data)
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz   run once, after initialisation
# `docker run IMAGE -c max_connections=200` and `IMAGE postgres -c ...` both start the server with those
# options; any other command (psql, sh /sawmill/init.sh, bash) is run as given.
# Passwords never reach the command line, the log or the server's environment.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# file_env VAR [DEFAULT]: VAR from $VAR, or from the file named by $VAR_FILE (Docker secrets).
file_env() {
    local var=$1 file_var="${1}_FILE" def=${2:-} val
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        die "both $var and $file_var are set (but are exclusive)"
    fi
    val=$def
    if [ -n "${!var:-}" ]; then
        val=${!var}
    elif [ -n "${!file_var:-}" ]; then
        [ -r "${!file_var}" ] || die "$file_var: cannot read ${!file_var}"
        val=$(<"${!file_var}")
    fi
    export "$var"="$val"
    unset "$file_var"
}

want_help() {
    local arg
    for arg; do
        case "$arg" in -'?'|--help|--describe-config|-V|--version) return 0 ;; esac
    done
    return 1
}

psql_init() { psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" "$@"; }

run_init_files() {
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)
                # shellcheck disable=SC1090
                if [ -x "$f" ]; then log "running $f"; "$f"
                else log "sourcing $f"; . "$f"; fi ;;
            *.sql) log "running $f"; psql_init --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz) log "running $f"; gunzip -c "$f" | psql_init --dbname "$POSTGRES_DB" ;;
            *) if [ -e "$f" ]; then log "ignoring $f"; fi ;;
        esac
    done
}

init_database() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        die "the database is uninitialized and no superuser password is set.
  Set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (or POSTGRES_HOST_AUTH_METHOD=trust, which is unsafe)."
    fi
    log "initialising $PGDATA (superuser $POSTGRES_USER)"
    local -a args=(--username="$POSTGRES_USER" --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD")
    [ -n "${POSTGRES_INITDB_WALDIR:-}" ] && args+=(--waldir="$POSTGRES_INITDB_WALDIR")
    if [ -n "$POSTGRES_PASSWORD" ]; then
        # The password goes to initdb through a pipe (/dev/fd/N): never on disk, argv or the log.
        # eval, like the official image, so POSTGRES_INITDB_ARGS may contain quoted words.
        eval 'initdb "${args[@]}" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"
    else
        eval 'initdb "${args[@]}" '"$POSTGRES_INITDB_ARGS"
    fi
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

    local -a init_files=(/docker-entrypoint-initdb.d/*)
    if [ "$POSTGRES_DB" != postgres ] || [ -e "${init_files[0]}" ]; then
        # Temporary server without TCP and with its socket in a private directory, so neither clients
        # nor a pg_isready healthcheck see a server before set-up is done.
        local sockdir
        sockdir=$(mktemp -d /tmp/pg-init.XXXXXX)
        pg_ctl -D "$PGDATA" -w start \
            -o "-c listen_addresses='' -c unix_socket_directories='$sockdir' -p ${PGPORT:-5432}" >/dev/null
        export PGHOST=$sockdir
        if [ "$POSTGRES_DB" != postgres ]; then
            log "creating database $POSTGRES_DB"
            psql_init --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >/dev/null
        fi
        run_init_files
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
        unset PGHOST
        rmdir "$sockdir"
    fi
    log "initialisation complete"
}

main() {
    if [ $# -eq 0 ] || [ "${1:0:1}" = '-' ]; then
        set -- postgres "$@"
    fi
    if [ "$1" != postgres ] || want_help "$@"; then
        exec "$@"
    fi

    : "${PGDATA:=/var/lib/postgresql/data}"
    export PGDATA
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
    export POSTGRES_HOST_AUTH_METHOD

    mkdir -p "$PGDATA" /var/run/postgresql
    chmod 00700 "$PGDATA" 2>/dev/null || :
    chmod 03775 /var/run/postgresql 2>/dev/null || :
    if [ "$(id -u)" = 0 ]; then
        find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
        # Secrets were read as root above (they may be root-only); the values go on in the environment.
        HOME=/var/lib/postgresql exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
    fi

    if [ -s "$PGDATA/PG_VERSION" ]; then
        log "$PGDATA contains a database (PostgreSQL $(<"$PGDATA/PG_VERSION")); skipping initialisation"
    else
        init_database
    fi
    unset POSTGRES_PASSWORD PGPASSWORD
    exec "$@"
}

main "$@"
