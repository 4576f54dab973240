#!/bin/sh
# Start one Presto node (coordinator or worker) from the rendered config in $PRESTO_ETC, the same way in our
# image and in the official one: java straight from jvm.config, no launcher (so PID 1 is the JVM and gets the
# stop signal). Per-node facts come from the container: its id from Swarm, its address from /etc/hosts.
#   PRESTO_HOME (default /opt/presto-server): lib/ and plugin/       PRESTO_ETC: the rendered etc/
#   PRESTO_NODE_ID: unique per node            PRESTO_DATA: writable data directory
#   PRESTO_DB_PASSWORD_FILE: the warehouse role's password, read into PRESTO_DB_PASSWORD for the catalog
set -eu
home=${PRESTO_HOME:-/opt/presto-server}
etc=${PRESTO_ETC:-$home/etc}
data=${PRESTO_DATA:-/var/lib/presto}
address=${PRESTO_NODE_ADDRESS:-$(getent hosts "$(hostname)" | awk '{print $1; exit}')}
[ -n "$address" ] || { echo "start: cannot tell this container's address (getent hosts $(hostname))" >&2; exit 1; }
if [ -n "${PRESTO_DB_PASSWORD_FILE:-}" ]; then
    PRESTO_DB_PASSWORD=$(cat "$PRESTO_DB_PASSWORD_FILE")
    export PRESTO_DB_PASSWORD
fi
# The Kafka catalog reads one JSON file per topic; they arrive as one file, a line per topic: "<name> <json>".
PRESTO_KAFKA_TABLES="$data/kafka-tables"
export PRESTO_KAFKA_TABLES
mkdir -p "$data" "$PRESTO_KAFKA_TABLES"
rm -f "$PRESTO_KAFKA_TABLES"/*.json
if [ -f "$etc/kafka-tables" ]; then
    while read -r name json; do
        [ -n "$name" ] && printf '%s\n' "$json" > "$PRESTO_KAFKA_TABLES/$name.json"
    done < "$etc/kafka-tables"
fi
# Relative paths (var/log for request logs and the like) land in the writable data directory.
cd "$data"
# shellcheck disable=SC2046 # jvm.config holds one option per line, none with spaces
exec java $(grep -v '^[[:space:]]*#' "$etc/jvm.config") \
    -Dnode.environment=sawmill \
    -Dnode.id="${PRESTO_NODE_ID:-$(hostname)}" \
    -Dnode.internal-address="$address" \
    -Dnode.data-dir="$data" \
    -Dconfig="$etc/config.properties" \
    -Dlog.levels-file="$etc/log.properties" \
    -Dcatalog.config-dir="$etc/catalog" \
    -Dplugin.dir="$home/plugin" \
    -cp "$home/lib/*" com.facebook.presto.server.PrestoServer
