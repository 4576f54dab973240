#!/bin/sh
# Lay out the Presto server the image runs in presto/server/: lib/ and the plugins the catalogs use, unpacked
# from Maven Central's presto-server tarball (~2 GB, of which ~200 MB is kept), with ASM 9.0 swapped for the
# 9.7 of pom.xml so it runs on Debian's Java 17. Idempotent: does nothing when server/ matches pom.xml and
# this script. Also the command-line client, in server/cli/.     presto/fetch-server.sh   (needs `mvn` and a JDK: apt-get install -y maven)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
plugins="postgresql kafka tpch"
stamp="$here/server/.sha256"
want=$(cat "$here/pom.xml" "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
command -v mvn >/dev/null || { echo "fetch-server: mvn not found; install it with: apt-get install -y maven" >&2; exit 1; }
version=$(sed -n 's:.*<presto.version>\(.*\)</presto.version>.*:\1:p' "$here/pom.xml")
tmp="$here/server.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
echo "fetch-server: presto-server $version (a ~2 GB download the first time)"
mvn -q -B dependency:get -Dartifact="com.facebook.presto:presto-server:$version:tar.gz" -Dtransitive=false
mvn -q -B help:evaluate -Dexpression=settings.localRepository -Doutput="$tmp/repo"
repo=$(cat "$tmp/repo")
top="presto-server-$version"
parts="$top/lib"
for p in $plugins; do parts="$parts $top/plugin/$p"; done
# shellcheck disable=SC2086 # $parts is a list of paths
tar -xzf "$repo/com/facebook/presto/presto-server/$version/presto-server-$version.tar.gz" -C "$tmp" $parts
mv "$tmp/$top" "$tmp/server"
# The bundled ASM 9.0 cannot read Java 17's class files ("Unsupported class file major version 61").
rm "$tmp"/server/lib/asm-*9.0.jar
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/server/lib"
# The command-line client (`deploy.py presto`), a self-contained jar.
mvn -q -B dependency:copy -Dartifact="com.facebook.presto:presto-cli:$version:jar:executable" \
    -DoutputDirectory="$tmp/server/cli"
mv "$tmp/server/cli/presto-cli-$version-executable.jar" "$tmp/server/cli/presto-cli.jar"
echo "$want" > "$tmp/server/.sha256"
rm -rf "$here/server"
mv "$tmp/server" "$here/server"
echo "fetch-server: $(du -sh "$here/server" | cut -f1) in $here/server ($(ls "$here/server/lib" | wc -l) jars; plugins: $plugins)"
