#!/bin/sh
# Metabase's entrypoint on the platform: every MB_*_FILE variable (e.g. MB_DB_PASS_FILE=/run/secrets/bi_db_password)
# becomes MB_* with the file's content, in this process only, so no secret is in the service's spec; then
# Metabase's own start script runs. (The official image's start script does the same for some variables; this
# covers every one we set, whatever that script's version handles.)
set -eu
for assignment in $(env | sed -n 's/^\(MB_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
    eval "file=\${${assignment}_FILE}"
    [ -r "$file" ] || { echo "sawmill-metabase: cannot read $file (for $assignment)" >&2; exit 1; }
    value=$(cat "$file")
    export "$assignment=$value"
    unset "${assignment}_FILE"
done
exec /app/run_metabase.sh "$@"
