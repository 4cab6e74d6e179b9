#!/usr/bin/env bash
# Runs the README's "Running across machines" session verbatim (the sh
# block after <!-- remote-example -->) in a scratch directory and checks
# what it printed and left behind. Needs root (network namespaces): without
# it, it says so and skips, unless FTKV_REQUIRE_NETNS=1 (CI), where it fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
	[ "${FTKV_REQUIRE_NETNS:-}" != 1 ] || { echo "readme-remote: needs root but FTKV_REQUIRE_NETNS=1"; exit 1; }
	echo "readme-remote: SKIP (needs root for namespace hosts; CI runs it)"
	exit 0
fi
block=$(awk '/<!-- remote-example -->/{f=1;next} f&&/^```sh/{g=1;next} g&&/^```/{exit} g{print}' "$root/README.md")
[ -n "$block" ] || { echo "readme-remote: no remote-example block in README.md"; exit 1; }
make -C "$root" build >/dev/null
work=$(mktemp -d)
ln -s "$root/bin" "$work/bin"
ln -s "$root/scripts" "$work/scripts"
hosts=/tmp/ftkv-hosts
"$root/scripts/testhosts.sh" down "$hosts" >/dev/null 2>&1 || true
cleanup() {
	if [ -f "$work/coord.pid" ]; then kill "$(cat "$work/coord.pid")" 2>/dev/null || true; fi
	"$root/scripts/testhosts.sh" down "$hosts" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "readme-remote: $*"; echo "--- output:"; cat "$work/out" 2>/dev/null; echo "--- hosts.log (tail):"; tail -20 "$work/hosts.log" 2>/dev/null; exit 1; }
# The session runs as written; the only addition is a note of the
# coordinator's pid so a failed run cannot leave it behind.
(cd "$work" && timeout 180 bash -euo pipefail -c "set -m; ${block//'-no-stdin &'/'-no-stdin & echo \$! > coord.pid'}") >"$work/out" 2>&1 || fail "the session failed"
out=$(cat "$work/out")
grep -qx OK <<<"$out" || fail "P did not print OK"
grep -qx "over ssh" <<<"$out" || fail "G did not print the value"
[ "$(grep -c '^[01] .*root@10\.213\.' <<<"$out")" = 2 ] || fail "status does not list 2 servers on namespace hosts"
grep -q '^spare root@' "$work/hosts.txt" || fail "hosts.txt has no spare line"
for i in 0 1; do
	for t in primary secondary; do
		[ -s "$work/server_$i.$t" ] || fail "server_$i.$t was not dumped in the remote working directory"
	done
done
[ ! -f "$hosts/env" ] || fail "testhosts.sh down left the hosts up"
echo "readme-remote: ran the README's across-machines session on namespace hosts with sshd: OK"
