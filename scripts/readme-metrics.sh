#!/usr/bin/env bash
# Runs the README's metrics session verbatim (the sh block after
# <!-- metrics-example -->) in a scratch directory, without its last line
# (the shutdown), and checks what it printed: /sd lists the coordinator and
# the three servers, the coordinator's epoch, and the put counted by one
# server. Then, where a prometheus binary is installed, Prometheus runs the
# README's scrape config (the yaml block after it) and must scrape the
# coordinator and every server. Then the session's last line shuts the
# cluster down. Bounded in time; kills only what it started, by pid.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
extract() { awk -v m="<!-- $1 -->" '$0 == m {f=1;next} f&&/^```sh/{g=1;next} g&&/^```/{exit} g{print}' "$root/README.md"; }
session=$(extract metrics-example)
[ -n "$session" ] || { echo "readme-metrics: no metrics-example block in README.md"; exit 1; }
scrape=$(awk '/^A Prometheus scrape config/ {f=1;next} f&&/^```yaml/{g=1;next} g&&/^```/{exit} g{print}' "$root/README.md")
[ -n "$scrape" ] || { echo "readme-metrics: no scrape config in README.md"; exit 1; }
command -v curl >/dev/null || { echo "readme-metrics: curl is missing (.ci/run installs it)"; exit 1; }
make -C "$root" build >/dev/null
work=$(mktemp -d)
ln -s "$root/bin" "$work/bin"
cp "$root/config.txt" "$work/config.txt"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	if [ -f "$work/coord.pid" ]; then kill -9 "$(cat "$work/coord.pid")" 2>/dev/null || true; fi
	if [ -f "$work/coord.log" ]; then
		for p in $(grep -h '"server spawned"' "$work/coord.log" | grep -o '"pid":[0-9]*' | cut -d: -f2); do
			grep -q -- "-id" "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null || true
		done
	fi
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "readme-metrics: $*"; echo "--- output:"; cat "$work/out" 2>/dev/null || true; exit 1; }

last=$(tail -n 1 <<<"$session")
[[ "$last" == *" shutdown" ]] || fail "the session's last line is not the shutdown: $last"
body=$(sed '$d' <<<"$session")
(cd "$work" && timeout 120 bash -euo pipefail -c "$body") >"$work/out" 2>&1 || fail "the session failed"
out=$(cat "$work/out")
[ "$(grep -o '"ftkv_role":"server"' <<<"$out" | wc -l)" = 3 ] || fail "/sd does not list 3 servers"
grep -q '"ftkv_role":"coordinator"' <<<"$out" || fail "/sd does not list the coordinator"
grep -q '^ftkv_coord_view_epoch [1-9]' <<<"$out" || fail "no coordinator epoch"
[ "$(grep -c '^ftkv_server_ops_total{op="put",outcome="ok"} 1$' <<<"$out")" = 1 ] || fail "not exactly one server counted the put"

if command -v prometheus >/dev/null; then
	printf '%s\n' "global:" "  scrape_interval: 2s" "$scrape" | sed 's|^\(      - url: .*\)$|\1\n        refresh_interval: 2s|' >"$work/prometheus.yml"
	pport=$((20000 + RANDOM % 10000))
	prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
		--web.listen-address="127.0.0.1:$pport" >"$work/prometheus.log" 2>&1 &
	pids+=("$!")
	up=""
	for _ in $(seq 1 60); do
		up=$(curl -s "http://127.0.0.1:$pport/api/v1/query?query=sum(up%7Bjob%3D%22ftkv%22%7D)" || true)
		grep -q '"value":\[[0-9.]*,"4"\]' <<<"$up" && break
		sleep 1
	done
	grep -q '"value":\[[0-9.]*,"4"\]' <<<"$up" || { tail -20 "$work/prometheus.log"; fail "Prometheus does not scrape 4 targets: $up"; }
	echo "readme-metrics: Prometheus scraped the coordinator and the 3 servers with the README's config"
else
	echo "readme-metrics: prometheus is not installed; the scrape config was not run"
fi

shut=$(cd "$work" && timeout 30 bash -c "$last" 2>&1) || fail "shutdown: $shut"
[ "$shut" = OK ] || fail "shutdown printed: $shut"
for _ in $(seq 1 100); do kill -0 "$(cat "$work/coord.pid")" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$(cat "$work/coord.pid")" 2>/dev/null || fail "the coordinator did not exit after shutdown"
echo "readme-metrics: ran the README's metrics session: OK"
