#!/usr/bin/env bash
# Make sure a Chromium exists for the report's browser test (tests/test_report.py). Debian's package from
# the distribution's registry only: Playwright's own browser download is never used (no network but the
# package registries on these machines). Without root or passwordless sudo it says so and the browser
# tests skip with that message; everything else still runs.
set -uo pipefail
for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then exit 0; fi
done
if [ -n "${FEDINSIGHT_CHROMIUM:-}" ] && [ -x "${FEDINSIGHT_CHROMIUM}" ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "note: no Chromium and no root to install it (apt-get install chromium); browser tests will skip" >&2
        exit 0
    fi
fi
if command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the report's browser test ..." >&2
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq chromium >/dev/null \
        || echo "note: could not install chromium; browser tests will skip" >&2
else
    echo "note: no apt-get here; install Chromium yourself (or set FEDINSIGHT_CHROMIUM); browser tests will skip" >&2
fi
exit 0
