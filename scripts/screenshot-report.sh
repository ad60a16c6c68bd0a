#!/usr/bin/env bash
# Render a specsweep HTML report in headless Chromium and save a PNG screenshot, so a person can
# see that the report works. Needs the Debian package `chromium` (apt-get install -y chromium).
#
# Usage: scripts/screenshot-report.sh REPORT_HTML OUT_PNG [WIDTH [HEIGHT]]   (default 1400 x 3200)
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 REPORT_HTML OUT_PNG [WIDTH [HEIGHT]]" >&2
    exit 2
fi
html=$1
out=$2
width=${3:-1400}
height=${4:-3200}

if [[ ! -f "$html" ]]; then
    echo "$0: error: $html: no such file" >&2
    exit 2
fi
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$browser" ]]; then
    echo "$0: error: chromium not found (apt-get install -y chromium)" >&2
    exit 2
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
abs_html=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")
abs_out=$(mkdir -p "$(dirname "$out")" && cd "$(dirname "$out")" && pwd)/$(basename "$out")

"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --no-first-run --disable-sync --hide-scrollbars \
    --user-data-dir="$profile" --window-size="$width,$height" \
    --screenshot="$abs_out" "file://$abs_html" >/dev/null 2>&1

if [[ ! -s "$abs_out" ]]; then
    echo "$0: error: chromium wrote no screenshot to $abs_out" >&2
    exit 1
fi
echo "wrote $abs_out"
