#!/usr/bin/env bash
# Runs the README's "Authentication" session verbatim, in a scratch
# directory (bin/ linked, config.txt copied) so that auth.txt, the dumps and
# the data land there: hash two passwords into user lines, start a
# coordinator with -insecure-auth, log in as the admin, be refused without
# credentials, read and be refused a write as the read user, see the
# redacted status, shut the cluster down as the admin. Also checks that
# users without TLS or -insecure-auth are refused at start, and that no
# password shows in ps or in the logs. Bounded in time; kills only what it
# started.
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
fail() { echo "readme-auth: $*"; [ -f "$work/coord.out" ] && cat "$work/coord.out"; exit 1; }
ln -s "$repo/bin" "$work/bin"
cp config.txt "$work/config.txt"
cd "$work"

# README, line by line (outputs captured before grep: never `cmd | grep -q`
# under pipefail).
cp config.txt auth.txt
export FTKV_PASSWORD='correct horse battery'
printf '%s\n' "$FTKV_PASSWORD" | bin/coord -hash-password ops admin >> auth.txt
printf '%s\n' 'only-reads-here' | bin/coord -hash-password dash read >> auth.txt
out=$(tail -2 auth.txt)
grep -Eq '^user ops admin \$2a\$11\$.{53}$' <<<"$out" || fail "hash lines: $out"
grep -Eq '^user dash read \$2a\$11\$' <<<"$out" || fail "hash lines: $out"

# Users without TLS and without -insecure-auth: one line, exit 2.
set +e
refusal=$(bin/coord -c 0 -s 0 -C auth.txt 2>&1 </dev/null); rc=$?
set -e
[ "$rc" = 2 ] || fail "users without TLS: exit $rc, want 2: $refusal"
[ "$(wc -l <<<"$refusal")" = 1 ] || fail "users without TLS: more than one line: $refusal"
grep -q 'user lines need TLS' <<<"$refusal" || fail "users without TLS: $refusal"

bin/coord -c 7000 -s 7001 -C auth.txt -insecure-auth -no-stdin >"$work/coord.out" 2>&1 &
pids+=("$!")
coordpid=$!
for _ in $(seq 1 150); do
  bin/client -h localhost -p 7000 -user ops status >/dev/null 2>&1 && break
  kill -0 "$coordpid" 2>/dev/null || fail "the coordinator exited"
  sleep 0.2
done
[ "$(bin/client -h localhost -p 7000 -user ops P greeting hello)" = OK ] || fail "P as ops"
set +e
err=$(bin/client -h localhost -p 7000 G greeting 2>&1); rc=$?
set -e
[ "$rc" = 4 ] || fail "G without -user: exit $rc, want 4: $err"
grep -q 'authentication required' <<<"$err" || fail "G without -user: $err"
[ "$(FTKV_PASSWORD=only-reads-here bin/client -h localhost -p 7000 -user dash G greeting)" = hello ] || fail "G as dash"
set +e
err=$(FTKV_PASSWORD=only-reads-here bin/client -h localhost -p 7000 -user dash P greeting x 2>&1); rc=$?
set -e
[ "$rc" = 4 ] || fail "P as dash: exit $rc, want 4: $err"
grep -q 'permission denied' <<<"$err" || fail "P as dash: $err"
out=$(FTKV_PASSWORD=only-reads-here bin/client -h localhost -p 7000 -user dash status --json) || fail "status as dash"
grep -q '"redacted":true' <<<"$out" || fail "dash's status is not redacted: $out"
grep -q '"pid":0,' <<<"$out" || fail "dash's status shows pids: $out"
out=$(bin/client -h localhost -p 7000 -user ops status --json) || fail "status as ops"
grep -q '"redacted"' <<<"$out" && fail "ops's status is redacted: $out"

# Nothing shows a password: the process table and the logs.
procs=$(ps -eo args)
for pw in 'correct horse battery' only-reads-here; do
  grep -qF -- "$pw" <<<"$procs" && fail "ps shows a password"
done

out=$(bin/client -h localhost -p 7000 -user ops shutdown) || fail "shutdown as ops: $out"
for _ in $(seq 1 100); do kill -0 "$coordpid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$coordpid" 2>/dev/null && fail "the coordinator still runs 10s after shutdown"
wait "$coordpid" || fail "the coordinator exited non-zero"
for i in 0 1 2; do [ -s "server_$i.primary" ] || fail "server_$i.primary missing"; done
logs=$(cat "$work/coord.out")
for pw in 'correct horse battery' only-reads-here; do
  grep -qF -- "$pw" <<<"$logs" && fail "the log shows a password"
done
echo "readme-auth: ok"
