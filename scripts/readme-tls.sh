#!/usr/bin/env bash
# Runs the README's "TLS" session verbatim, in a scratch directory (bin/
# linked, config.txt copied) so that certs/, tls.txt, the dumps and the
# data land there: make a CA and certificates with bin/coord -gen-certs,
# start a coordinator with the printed lines, write and read over TLS, be
# refused in clear, run bin/bench over TLS, shut down. Also checks the
# keys are 0600, the servers run with TLS and only file paths on their
# command lines, and a second -gen-certs into the same directory is
# refused. Bounded in time; kills only what it started.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
make build >/dev/null
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "readme-tls: $*"; [ -f "$work/coord.out" ] && tail -20 "$work/coord.out"; exit 1; }
ln -s "$repo/bin" "$work/bin"
cp config.txt "$work/config.txt"
cd "$work"

# README, line by line (outputs captured before grep: never `cmd | grep -q`
# under pipefail).
cp config.txt tls.txt
bin/coord -gen-certs certs >> tls.txt
out=$(tail -5 tls.txt)
for l in 'tls_ca certs/ca.pem' 'tls_cert certs/server.pem' 'tls_key certs/server-key.pem' \
  'tls_coord_cert certs/coordinator.pem' 'tls_coord_key certs/coordinator-key.pem'; do
  grep -qxF "$l" <<<"$out" || fail "tail -5 tls.txt lacks '$l': $out"
done
for k in ca server coordinator client; do
  [ "$(stat -c %a "certs/$k-key.pem")" = 600 ] || fail "certs/$k-key.pem is not 0600"
done
set +e
again=$(bin/coord -gen-certs certs 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && grep -q 'already exists' <<<"$again" || fail "a second -gen-certs certs: exit $rc: $again"

bin/coord -c 7000 -s 7001 -C tls.txt -no-stdin >"$work/coord.out" 2>&1 &
pids+=("$!")
coordpid=$!
for _ in $(seq 1 150); do
  bin/client -h localhost -p 7000 -tls-ca certs/ca.pem status >/dev/null 2>&1 && break
  kill -0 "$coordpid" 2>/dev/null || fail "the coordinator exited"
  sleep 0.2
done
[ "$(bin/client -h localhost -p 7000 -tls-ca certs/ca.pem P greeting hello)" = OK ] || fail "P over TLS"
[ "$(bin/client -h localhost -p 7000 -tls-ca certs/ca.pem G greeting)" = hello ] || fail "G over TLS"
set +e
err=$(bin/client -h localhost -p 7000 G greeting 2>&1); rc=$?
set -e
[ "$rc" = 4 ] || fail "G in clear: exit $rc, want 4: $err"
grep -q 'this port requires TLS' <<<"$err" || fail "G in clear: $err"
out=$(bin/bench -h localhost -p 7000 -tls-ca certs/ca.pem -duration 2s -c 8 2>&1) || fail "bench over TLS: $out"
grep -Eq 'throughput +[0-9,]+ ops/s' <<<"$out" || fail "bench over TLS: $out"
grep -Eq 'in [0-9.]+s: .* 0 errors' <<<"$out" || fail "bench over TLS had errors: $out"

# The servers run with TLS, given file paths only.
procs=$(ps -eo args)
servers=$(grep -F -- "-tls-key $work/certs/server-key.pem" <<<"$procs" || true)
[ "$(grep -c . <<<"$servers")" = 3 ] || fail "want 3 servers started with -tls-key $work/certs/server-key.pem: $procs"
grep -q 'PRIVATE KEY' <<<"$procs" && fail "ps shows key material"

out=$(bin/client -h localhost -p 7000 -tls-ca certs/ca.pem shutdown) || fail "shutdown: $out"
for _ in $(seq 1 100); do kill -0 "$coordpid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$coordpid" 2>/dev/null && fail "the coordinator still runs 10s after shutdown"
wait "$coordpid" || fail "the coordinator exited non-zero"
for i in 0 1 2; do [ -s "server_$i.primary" ] || fail "server_$i.primary missing"; done

# "Your own certificate": the README's openssl block verbatim (in own/),
# then the same session on its three lines.
own=$(awk '/\*\*Your own certificate\*\*/{f=1} f&&/^  ```$/{c++; if(c==2) exit; next} f&&c==1{sub(/^  /,""); print}' "$repo/README.md")
grep -q '^openssl ' <<<"$own" || fail "no openssl block under 'Your own certificate' in README.md"
if ! command -v openssl >/dev/null; then
  [ "${FTKV_REQUIRE_NETNS:-}" = 1 ] && fail "openssl is not installed (.ci/run installs it)"
  echo "readme-tls: ok (openssl not installed: the own-certificate block did not run)"
  exit 0
fi
mkdir own && cd own && ln -s "$repo/bin" bin && cp ../config.txt tls.txt
bash -e <<<"$own" >openssl.out 2>&1 || fail "the README's openssl block: $(tail -3 openssl.out)"
bin/coord -c 7000 -s 7001 -C tls.txt -no-stdin >"$work/coord.out" 2>&1 &
pids+=("$!")
coordpid=$!
for _ in $(seq 1 150); do
  bin/client -h localhost -p 7000 -tls-ca ca.pem status >/dev/null 2>&1 && break
  kill -0 "$coordpid" 2>/dev/null || fail "the coordinator on the own certificate exited"
  sleep 0.2
done
[ "$(bin/client -h localhost -p 7000 -tls-ca ca.pem P greeting hello)" = OK ] || fail "P over TLS on the own certificate"
[ "$(bin/client -h localhost -p 7000 -tls-ca ca.pem G greeting)" = hello ] || fail "G over TLS on the own certificate"
out=$(bin/client -h localhost -p 7000 -tls-ca ca.pem shutdown) || fail "shutdown on the own certificate: $out"
for _ in $(seq 1 100); do kill -0 "$coordpid" 2>/dev/null || break; sleep 0.1; done
wait "$coordpid" || fail "the coordinator on the own certificate exited non-zero"
echo "readme-tls: ok (and on the operator's own certificate)"
