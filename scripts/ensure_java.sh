#!/usr/bin/env bash
# Make sure Java 17 exists for the Spark engine's test (tests/unit/partner/engine/test_engine_spark.py, marker
# slow): Debian's openjdk-17-jre-headless from the distribution's registry. Without root or passwordless sudo it
# says so and the Spark test skips with that message; everything else still runs.
set -uo pipefail
if [ -n "${JAVA_HOME:-}" ] && [ -x "${JAVA_HOME}/bin/java" ]; then exit 0; fi
if command -v java >/dev/null 2>&1; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "note: no Java and no root to install it (apt-get install openjdk-17-jre-headless); the Spark test will skip" >&2
        exit 0
    fi
fi
if command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's openjdk-17-jre-headless for the Spark engine test ..." >&2
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null \
        || echo "note: could not install Java 17; the Spark test will skip" >&2
else
    echo "note: no apt-get here; install Java 17 yourself (or set JAVA_HOME); the Spark test will skip" >&2
fi
exit 0
