#!/usr/bin/env bash
# Runs the README's commands verbatim against `make run`: starts the default
# cluster on its fixed ports, types the README session into bin/client, runs
# the one-shot examples, the bench and a hostile probe (Client limits; the
# runs last 2s instead of 10s), then stops the cluster with end of
# stdin and checks that the dumps were written. Bounded in time; kills only
# what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
fifo="$work/stdin"
mkfifo "$fifo"
make build >/dev/null
# Keep the fifo open for writing so the coordinator sees end of stdin only
# when we close it.
exec 7<>"$fifo"
rm -f server_[0-9]*.primary server_[0-9]*.secondary
( exec 7>&-; exec make --no-print-directory run <"$fifo" >"$work/run.out" 2>&1 ) &
runpid=$!
cleanup() { kill "$runpid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  grep -q "clients connect to" "$work/run.out" 2>/dev/null && break
  sleep 0.1
done
grep -q "clients connect to" "$work/run.out" || { echo "readme-smoke: make run did not start"; cat "$work/run.out"; exit 1; }

fail() { echo "readme-smoke: $*"; exit 1; }
out=$(printf '%s\n' 'P "k" "v"' 'G "k"' 'P "greeting" "hello world"' 'A "greeting" "!"' 'G "greeting"' \
  'T "greeting" "hello world!" "bye"' 'T "greeting" "nope" "x"' 'D "greeting"' 'G "greeting"' | bin/client -h localhost -p 7000)
want=$'OK\nv\nOK\nOK\nhello world!\nOK\nMISMATCH bye\nOK\n(nil)'
[ "$out" = "$want" ] || fail "session printed:"$'\n'"$out"
# Outputs are captured before grep: with pipefail, `cmd | grep -q` fails
# when grep exits at its first match and cmd's next write gets SIGPIPE.
out=$(bin/client -h localhost -p 7000 status) || fail "status exited non-zero"
grep -q "^0 .*localhost" <<<"$out" || fail "status table:"$'\n'"$out"
[ "$(bin/client -h localhost -p 7000 P k v)" = OK ] || fail "one-shot P"
[ "$(bin/client -h localhost -p 7000 G k)" = v ] || fail "one-shot G"
set +e
bin/client -h localhost -p 7000 G absent >/dev/null; rc=$?
set -e
[ "$rc" = 1 ] || fail "G absent exited $rc, want 1"
out=$(bin/client -h localhost -p 7000 status --json) || fail "status --json exited non-zero"
grep -q '"epoch":[1-9][0-9]*,.*"term":[1-9]' <<<"$out" || fail "status --json:"$'\n'"$out"
out=$(bin/bench -h localhost -p 7000 -c 50 -duration 2s -ratio 0 -size 100 -keys 100000) || fail "bench exited non-zero"
grep -q throughput <<<"$out" || fail "bench:"$'\n'"$out"
out=$(bin/bench -h localhost -p 7000 -ratio 1 -P 16 -duration 2s -json) || fail "bench -json exited non-zero"
grep -q '"ops_per_sec"' <<<"$out" || fail "bench -json:"$'\n'"$out"
probe=$(bin/bench -mode probe -probe huge-length -victim 1 -h localhost -p 7000 -duration 2s) || fail "bench -mode probe:"$'\n'"$probe"
grep -q "server survived: *yes" <<<"$probe" || fail "bench -mode probe printed:"$'\n'"$probe"

exec 7>&-   # ctrl+d
for _ in $(seq 1 50); do kill -0 "$runpid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$runpid" 2>/dev/null && fail "make run still running 5s after end of stdin"
wait "$runpid" || fail "make run exited non-zero"
for i in 0 1 2; do
  for t in primary secondary; do
    [ -s "server_$i.$t" ] || fail "server_$i.$t missing"
  done
done
rm -f server_[0-9]*.primary server_[0-9]*.secondary

# "Restart and durability": make run again, and the key put before the
# ctrl+d is there.
exec 7<>"$fifo"
: >"$work/run.out"
( exec 7>&-; exec make --no-print-directory run <"$fifo" >"$work/run.out" 2>&1 ) &
runpid=$!
for _ in $(seq 1 100); do
  grep -q "clients connect to" "$work/run.out" 2>/dev/null && break
  sleep 0.1
done
grep -q "clients connect to" "$work/run.out" || { echo "readme-smoke: make run did not start again"; cat "$work/run.out"; exit 1; }
[ "$(bin/client -h localhost -p 7000 G k)" = v ] || fail "G k after the restart did not print v"
out=$(bin/client -h localhost -p 7000 status) || fail "status after the restart"
grep -q "^0 .*always" <<<"$out" || fail "status after the restart shows no log:"$'\n'"$out"
exec 7>&-   # ctrl+d
for _ in $(seq 1 50); do kill -0 "$runpid" 2>/dev/null || break; sleep 0.1; done
wait "$runpid" || fail "make run exited non-zero after the restart"
rm -f server_[0-9]*.primary server_[0-9]*.secondary
echo "readme-smoke: README session, one-shot commands, bench, make run shutdown and restart OK"
