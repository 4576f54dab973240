#!/bin/sh
# Copy the Kafka broker's jars (kafka/pom.xml) into kafka/lib/, with the host's Maven and its own repository
# configuration. Idempotent: does nothing when lib/ already holds exactly what pom.xml asks for.
#   kafka/fetch-jars.sh        (from anywhere; needs `mvn` and a JDK, e.g. apt-get install -y maven)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
stamp="$here/lib/.pom.sha256"
want=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
command -v mvn >/dev/null || { echo "fetch-jars: mvn not found; install it with: apt-get install -y maven" >&2; exit 1; }
tmp="$here/lib.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp"
echo "$want" > "$tmp/.pom.sha256"
rm -rf "$here/lib"
mv "$tmp" "$here/lib"
echo "fetch-jars: $(ls "$here/lib" | wc -l) jars in $here/lib"
