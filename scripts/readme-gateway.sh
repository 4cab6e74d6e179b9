#!/usr/bin/env bash
# Runs the README's gateway and HTTP API sessions verbatim (the sh blocks
# after <!-- gateway-example --> and <!-- http-example -->, one after the
# other in one shell) in a scratch directory and checks what they printed:
# redis-cli's answers, redis-benchmark's figures, the value read back with
# bin/client, and curl's answers (compare-and-swap, append, an escaped
# key, the status); the cluster shut down and the gateway stopped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
extract() { awk -v m="<!-- $1 -->" '$0 == m {f=1;next} f&&/^```sh/{g=1;next} g&&/^```/{exit} g{print}' "$root/README.md"; }
gw=$(extract gateway-example)
http=$(extract http-example)
[ -n "$gw" ] && [ -n "$http" ] || { echo "readme-gateway: no gateway-example or http-example block in README.md"; exit 1; }
for tool in redis-cli redis-benchmark curl; do
	command -v "$tool" >/dev/null || { echo "readme-gateway: $tool is missing (redis-tools, curl; .ci/run installs them)"; exit 1; }
done
make -C "$root" build >/dev/null
work=$(mktemp -d)
ln -s "$root/bin" "$work/bin"
cp "$root/config.txt" "$work/config.txt"
cleanup() {
	# Only what the session started: the gateway and the coordinator (their
	# pid files) and the servers the coordinator spawned (from its log).
	for f in "$work"/gateway.pid "$work"/coord.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
	if [ -f "$work/coord.log" ]; then
		for p in $(grep -h '"server spawned"' "$work/coord.log" | grep -o '"pid":[0-9]*' | cut -d: -f2); do
			grep -q -- "-id" "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p" 2>/dev/null || true
		done
	fi
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "readme-gateway: $*"; echo "--- output:"; tr '\r' '\n' <"$work/out" | grep -v 'rps=' || true; exit 1; }
# Output goes to a file, not a pipe: the session's background processes
# would hold a pipe open after a failure.
(cd "$work" && timeout 180 bash -euo pipefail -c "$gw"$'\n'"$http") >"$work/out" 2>&1 || fail "the session failed"
out=$(tr '\r' '\n' <"$work/out" | grep -v 'rps=' | sed 's/ *$//' | grep -v '^$')
want=$'OK\nhello, redis\n1\n42\n13\nOK\n1\n2\nOK\n12\nERR ftkv has no expiry: EX, PX, EXAT, PXAT and KEEPTTL are not supported\n2\nhello, redis!'
[[ "$out" == *"$want"* ]] || fail "redis-cli's answers differ from the README's"
grep -q '^SET: [0-9.]* requests per second' <<<"$out" || fail "redis-benchmark printed no SET figure"
grep -q '^GET: [0-9.]* requests per second' <<<"$out" || fail "redis-benchmark printed no GET figure"
want=$'hello, http\n"5e7da0ffddb5ecf42706ad50a089b140"\n204\nprecondition failed: the value did not match If-Match / If-None-Match\nswapped, appended\nany bytes\nnot found'
[[ "$out" == *"$want"* ]] || fail "curl's answers differ from the README's"
[ "$(grep -c '^"primary_keys":[0-9]*$' <<<"$out")" = 3 ] || fail "the status did not list 3 servers"
[ "$(tail -n 1 <<<"$out")" = OK ] || fail "shutdown did not print OK"
for i in 0 1 2; do
	[ -f "$work/server_$i.primary" ] || fail "server_$i.primary was not dumped"
done
echo "readme-gateway: ran the README's gateway (redis-cli, redis-benchmark) and HTTP API (curl) sessions: OK"
