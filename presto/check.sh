#!/bin/sh
# `up` runs this on the rendered files before Presto deploys (presto/component.py, checks). Presto refuses to
# start on a property key it does not know, so the keys sawmill.toml adds (presto.properties,
# presto.catalog_properties) are tried on one node first: started here with no network, stopped once its
# catalogs are loaded. A refused key is then an error that names it, and the running Presto keeps serving.
set -u
root=${PRESTO_CHECK_ROOT:-/opt/sawmill} # where the Check mounts the files (the tests lay them out elsewhere)
src=$root/etc
if ! grep -qs '^# from presto\.' "$src/config.properties" "$root/worker.properties" "$src"/catalog/*.properties
then
    exit 0 # only the files the tests start Presto on: nothing to try
fi

# refused <log>: say which setting of sawmill.toml Presto refused, and why in its own words.
refused() {
    loading=$(grep -c -- '-- Loading catalog properties' "$1")
    added=$(grep -c -- '-- Added catalog' "$1")
    if [ "$loading" -gt "$added" ]; then
        catalog=$(sed -n 's#.*-- Loading catalog properties .*/\([^/]*\)\.properties --.*#\1#p' "$1" | tail -n 1)
        setting="presto.catalog_properties.$catalog"
    else
        setting="presto.properties"
    fi
    # Presto's numbered errors, once (its log prints them twice), without the Java method they came from
    errors=$(awk '/Unable to create injector/ { on = 1; next }
                  on && /^[0-9]+ errors?$/ { exit }
                  on && /^[0-9]+\) / { sub(/^[0-9]+\) /, ""); sub(/ in order to call .*/, ""); print }' "$1")
    unknown=$(printf '%s\n' "$errors" | sed -n "s/^Configuration property \('.*'\) was not used$/\1/p" | paste -sd ' ' -)
    other=$(printf '%s\n' "$errors" | grep -v ' was not used$')
    if [ -n "$other" ]; then
        echo "$setting: Presto refused a value in sawmill.toml: $other" >&2
    elif [ -n "$unknown" ]; then
        echo "$setting: Presto does not know the property $unknown; remove it from sawmill.toml or correct its name" >&2
    else
        echo "$setting: Presto stopped; its last lines:" >&2
        tail -n 20 "$1" >&2
    fi
}

# try <name> <config.properties>: start one node on it; succeed once it has loaded its catalogs.
try() {
    etc=$(mktemp -d)
    cp -r "$src/." "$etc/"
    # no network here: the discovery server is this node, and the container's own name resolves to loopback
    port=$(sed -n 's/^http-server.http.port=//p' "$2")
    sed "s#^discovery.uri=.*#discovery.uri=http://127.0.0.1:$port#" "$2" > "$etc/config.properties"
    printf '127.0.0.1 localhost %s\n' "$(hostname)" > "$etc/hosts"
    printf '%s\n' "-Djdk.net.hosts.file=$etc/hosts" >> "$etc/jvm.config"
    log="$etc/presto.log"
    PRESTO_ETC=$etc PRESTO_DATA=$etc/data PRESTO_NODE_ADDRESS=127.0.0.1 PRESTO_NODE_ID="check-$1" \
        PRESTO_DB_PASSWORD=unused PRESTO_DB_PASSWORD_FILE='' sh "$root/start.sh" > "$log" 2>&1 &
    pid=$!
    for _ in $(seq 240); do
        if grep -q 'SERVER STARTED' "$log"; then
            kill "$pid"
            wait "$pid"
            return 0
        fi
        if ! kill -0 "$pid" 2> /dev/null; then
            echo "a Presto $1 did not start on the rendered files:" >&2
            refused "$log"
            return 1
        fi
        sleep 0.5
    done
    kill "$pid"
    echo "a Presto $1 did not start within 120 s on the rendered files; its last lines:" >&2
    tail -n 20 "$log" >&2
    return 1
}

try coordinator "$src/config.properties" || exit 1
if grep -q '^node-scheduler.include-coordinator=false' "$src/config.properties"; then
    try worker "$root/worker.properties" || exit 1
fi
