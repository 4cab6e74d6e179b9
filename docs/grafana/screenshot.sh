#!/usr/bin/env bash
# Renders ftkv.json against a live Prometheus with headless Chromium,
# through render.html (the dashboard's panels and queries drawn as SVG from
# Prometheus's query_range API): a stand-in for a Grafana screenshot where
# Grafana cannot run (it is not packaged in Debian). Usage:
#
#   docs/grafana/screenshot.sh http://127.0.0.1:9090 docs/grafana/ftkv.png 900
#
# (the last argument: seconds of history shown) against a Prometheus that
# scrapes the cluster through the coordinator's /sd (README, Metrics).
set -euo pipefail
prom=${1:?Prometheus URL}; out=${2:?output PNG}; range=${3:-900}
dir=$(cd "$(dirname "$0")" && pwd)
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome) || {
  echo "screenshot: no chromium (apt-get install chromium)"; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# render.html fetches ftkv.json beside it and Prometheus's API: a page
# opened from a file needs both allowed.
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
  --allow-file-access-from-files --disable-web-security --user-data-dir="$profile" \
  --window-size=1510,2520 --virtual-time-budget=30000 \
  --screenshot="$(realpath -m "$out")" "file://$dir/render.html?prom=$prom&range=$range" 2>/dev/null
