#!/usr/bin/env bash
# Runs the README's "Metrics" session verbatim: a cluster started with
# -metrics, the service-discovery document, a server's metrics address from
# status --json and its /metrics, then (when a prometheus binary is
# installed) Prometheus itself with the README's scrape config, checking
# that it discovers and scrapes the coordinator and every server. Bounded
# in time; kills only what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
fifo="$work/stdin"
mkfifo "$fifo"
make build >/dev/null
exec 7<>"$fifo"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "readme-metrics: $*"; exit 1; }
rm -f server_[0-9]*.primary server_[0-9]*.secondary

# README: "bin/coord -c 7000 -s 7001 -C config.txt -metrics 127.0.0.1:9100"
( exec 7>&-; exec bin/coord -c 7000 -s 7001 -C config.txt -metrics 127.0.0.1:9100 <"$fifo" >"$work/coord.out" 2>&1 ) &
coordpid=$!
pids+=("$coordpid")
for _ in $(seq 1 100); do
  grep -q "clients connect to" "$work/coord.out" 2>/dev/null && break
  sleep 0.1
done
grep -q "clients connect to" "$work/coord.out" || { cat "$work/coord.out"; fail "the coordinator did not start"; }

# README: curl -s http://127.0.0.1:9100/sd
sd=$(curl -s http://127.0.0.1:9100/sd) || fail "GET /sd"
[ "$(grep -o '"ftkv_role":"server"' <<<"$sd" | wc -l)" = 3 ] || fail "/sd does not list 3 servers: $sd"
grep -q '"ftkv_role":"coordinator"' <<<"$sd" || fail "/sd does not list the coordinator: $sd"

# README: bin/client -h localhost -p 7000 status --json | grep -o '"metrics_addr":"[^"]*"'
out=$(bin/client -h localhost -p 7000 status --json | grep -o '"metrics_addr":"[^"]*"') || fail "status --json has no metrics_addr"
[ "$(wc -l <<<"$out")" -ge 4 ] || fail "metrics_addr: $out"
addr=$(head -1 <<<"$out" | cut -d'"' -f4)

# README: bin/client -h localhost -p 7000 P k v; curl -s http://$addr/metrics | grep ftkv_server_ops_total
bin/client -h localhost -p 7000 P k v >/dev/null
m=""
for a in $(cut -d'"' -f4 <<<"$out"); do m+=$(curl -s "http://$a/metrics")$'\n'; done
grep -q '^ftkv_server_ops_total{op="put",outcome="ok"} [1-9]' <<<"$m" || fail "no server counted the put"
grep -q '^ftkv_server_op_duration_seconds_bucket{op="put",le="1e-05"}' <<<"$m" || fail "no latency histogram"
grep -q '^ftkv_coord_view_epoch [1-9]' <<<"$m" || fail "no coordinator metrics"

# README: the scrape config, run by Prometheus when it is installed.
if command -v prometheus >/dev/null; then
  cat >"$work/prometheus.yml" <<'YAML'
scrape_configs:
  - job_name: ftkv
    scrape_interval: 5s
    http_sd_configs:
      - url: http://127.0.0.1:9100/sd
        refresh_interval: 5s
YAML
  pport=$((20000 + RANDOM % 10000))
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$pport" >"$work/prometheus.log" 2>&1 7>&- &
  pids+=("$!")
  up=""
  for _ in $(seq 1 60); do
    up=$(curl -s "http://127.0.0.1:$pport/api/v1/query?query=sum(up%7Bjob%3D%22ftkv%22%7D)" || true)
    grep -q '"value":\[[0-9.]*,"4"\]' <<<"$up" && break
    sleep 1
  done
  grep -q '"value":\[[0-9.]*,"4"\]' <<<"$up" || { tail -20 "$work/prometheus.log"; fail "Prometheus does not scrape 4 targets: $up"; }
else
  echo "readme-metrics: prometheus not installed; the scrape config was not run"
fi

exec 7>&-   # ctrl+d
for _ in $(seq 1 50); do kill -0 "$coordpid" 2>/dev/null || break; sleep 0.1; done
wait "$coordpid" || fail "the coordinator exited non-zero"
rm -f server_[0-9]*.primary server_[0-9]*.secondary
echo "readme-metrics: ok"
