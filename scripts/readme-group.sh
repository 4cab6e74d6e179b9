#!/usr/bin/env bash
# Runs the README's "Three coordinators" session verbatim (the sh block
# after <!-- group-example -->) in a scratch directory and checks what it
# printed: the put, the status with the control plane, the get after the
# leader coordinator was killed, and the whole cluster shut down (every
# server dumped its tables, every coordinator exited).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
block=$(awk '/<!-- group-example -->/{f=1;next} f&&/^```sh/{g=1;next} g&&/^```/{exit} g{print}' "$root/README.md")
[ -n "$block" ] || { echo "readme-group: no group-example block in README.md"; exit 1; }
make -C "$root" build >/dev/null
work=$(mktemp -d)
ln -s "$root/bin" "$work/bin"
cleanup() {
	# Only what this session started: its coordinators (their pid files)
	# and the servers they spawned (their pids from the coordinators' logs).
	for f in "$work"/coord*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
	grep -ho '"message":"server spawned"' "$work"/coord*.log >/dev/null 2>&1 &&
		for p in $(grep -h '"server spawned"' "$work"/coord*.log | grep -o '"pid":[0-9]*' | cut -d: -f2); do
			grep -q -- "-id" "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null || true
		done
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "readme-group: $*"; echo "--- output:"; cat "$work/out" 2>/dev/null; for f in "$work"/coord*.log; do echo "--- $f (errors):"; grep -h '"level":"error"' "$f" | tail -5; done; exit 1; }
(cd "$work" && timeout 120 bash -euo pipefail -c "$block") >"$work/out" 2>&1 || fail "the session failed"
out=$(cat "$work/out")
[ "$(grep -cx OK <<<"$out")" = 2 ] || fail "P and shutdown did not each print OK"
grep -qx "hello, group" <<<"$out" || fail "G after the leader's kill did not print the value"
grep -q '^term [0-9]*, leader [0-9], answered by [0-9]' <<<"$out" || fail "status has no control-plane line"
[ "$(grep -c 'leader$' <<<"$out")" = 2 ] || fail "status does not show one leader before and one after the kill"
for i in 0 1 2; do
	for t in primary secondary; do
		[ -f "$work/server_$i.$t" ] || fail "server_$i.$t was not dumped"
	done
done
echo "readme-group: ran the README's three-coordinator session (leader killed, value read back, cluster shut down): OK"
