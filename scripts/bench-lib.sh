# Shared by scripts/bench-compare.sh and scripts/bench-durability.sh (sourced,
# not run): installs Redis when it is missing, builds bin/*, sets the
# taskset prefixes PIN_SRV and PIN_LOAD from SERVER_CPUS and LOAD_CPUS, and
# defines free_port. The caller defines say, die, ROOT and WORK.
# shellcheck shell=bash

apt_install() {
	local sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	command -v apt-get >/dev/null || die "$1 is missing and there is no apt-get to install it"
	say "installing $*"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get install -y -q "$@" >"$WORK/apt.log" 2>&1 ||
		{ $sudo apt-get update -q >>"$WORK/apt.log" 2>&1 && $sudo apt-get install -y -q "$@" >>"$WORK/apt.log" 2>&1; } ||
		die "apt-get install $* failed (see $WORK/apt.log)"
}
command -v redis-server >/dev/null || apt_install redis-server
{ command -v redis-cli && command -v redis-benchmark; } >/dev/null || apt_install redis-tools

make -s --no-print-directory -C "$ROOT" build >&2

PIN_SRV=()
PIN_LOAD=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	PIN_SRV=(taskset -c "$SERVER_CPUS")
	PIN_LOAD=(taskset -c "$LOAD_CPUS")
else
	say "warning: no taskset or fewer than 2 CPUs: servers and load generator are not pinned"
fi

# A port nobody listens on, below the ephemeral range (32768+) so that no
# outgoing connection takes it in the meantime.
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}
