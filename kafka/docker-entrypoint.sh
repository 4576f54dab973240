#!/bin/sh
# Start one KRaft broker: write server.properties from KAFKA_* variables (the apache/kafka image's convention:
# KAFKA_LOG_DIRS -> log.dirs, '__' -> '_', '___' -> '-'), format the storage once, then exec the broker.
#   CLUSTER_ID        required: the same for every node of the cluster (formatting needs it)
#   KAFKA_HEAP_OPTS   JVM heap (default -Xms256m -Xmx768m)
#   KAFKA_LIBS        where the jars are (default /opt/kafka/libs)   KAFKA_RUN_DIR  where to write server.properties
# Also run by the integration tests as a host process, with KAFKA_LIBS pointing at kafka/lib.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
libs=${KAFKA_LIBS:-/opt/kafka/libs}
run_dir=${KAFKA_RUN_DIR:-/tmp}
properties="$run_dir/server.properties"
[ -n "${CLUSTER_ID:-}" ] || { echo "kafka: CLUSTER_ID is not set" >&2; exit 1; }
[ -n "${KAFKA_LOG_DIRS:-}" ] || { echo "kafka: KAFKA_LOG_DIRS is not set" >&2; exit 1; }

# Variables that configure this script or the JVM, not the broker.
env | grep '^KAFKA_' | grep -Ev '^KAFKA_(HEAP_OPTS|OPTS|LIBS|RUN_DIR|LOG4J_OPTS|JVM_PERFORMANCE_OPTS)=' \
    | while IFS='=' read -r name value; do
        key=$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' | sed -e 's/___/-/g' -e 's/__/\x01/g' -e 's/_/./g' -e 's/\x01/_/g')
        printf '%s=%s\n' "$key" "$value"
    done > "$properties"

# shellcheck disable=SC2086  # the option variables hold several words on purpose
set -- ${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m} ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20} \
    -Djava.awt.headless=true -Dlog4j.configuration="file:$here/log4j.properties" ${KAFKA_OPTS:-} -cp "$libs/*"

# --ignore-formatted: a restarted broker keeps its data; a new volume is formatted with the cluster's id.
java "$@" kafka.tools.StorageTool format --cluster-id "$CLUSTER_ID" --config "$properties" --ignore-formatted
exec java "$@" kafka.Kafka "$properties"
