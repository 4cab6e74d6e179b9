#!/usr/bin/env bash
# gateway-cost.sh: what a SET costs through bin/gateway, against Redis, in
# one run: throughput, CPU time per SET (user + system, from /proc/PID/stat)
# of the gateway, of the three servers and of redis-server, and read/write
# system calls per SET (/proc/PID/io). CPU per operation is steadier than
# throughput on a shared machine.
#
# A default cluster without a log (-data-dir none) and the gateway pinned to
# CPU 0 (BENCH_SERVER_CPUS), redis-benchmark on CPU 1 (BENCH_LOAD_CPUS);
# then one redis-server --save '' --appendonly no on CPU 0 under the same
# load. Every process it starts is stopped by its pid.
#
#   scripts/gateway-cost.sh            # -P 1, 300,000 SETs each
#   PIPE=16 N=1200000 scripts/gateway-cost.sh
#
# Needs bin/ (make), redis-server, redis-benchmark, redis-cli, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PIPE=${PIPE:-1}
N=${N:-300000}
SRV_CPUS=${BENCH_SERVER_CPUS:-0}
LOAD_CPUS=${BENCH_LOAD_CPUS:-1}
for c in redis-server redis-benchmark redis-cli python3 taskset; do
	command -v "$c" >/dev/null || { echo "gateway-cost: $c is needed" >&2; exit 2; }
done
[ -x bin/gateway ] || { echo "gateway-cost: run make first" >&2; exit 2; }
BIN=$PWD/bin
WORK=$(mktemp -d)
PIDS_STARTED=()
cleanup() {
	for p in "${PIDS_STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { local s=0 a b; for p in "$@"; do read -r a b < <(cut -d' ' -f14,15 "/proc/$p/stat"); s=$((s + a + b)); done; echo "$s"; }
calls() { local r=0 w=0; for p in "$@"; do r=$((r + $(awk '/^syscr/{print $2}' "/proc/$p/io"))); w=$((w + $(awk '/^syscw/{print $2}' "/proc/$p/io"))); done; echo "$r $w"; }
HZ=$(getconf CLK_TCK)
per() { python3 -c "print(f'{($2-$1)*1e6/$HZ/$N:.2f}')"; }
perN() { python3 -c "print(f'{($2-$1)/$N:.2f}')"; }
bench() { # port: prints requests per second
	taskset -c "$LOAD_CPUS" redis-benchmark -p "$1" -t set -c 50 -n "$N" -r 100000 -d 100 -P "$PIPE" -q 2>&1 |
		tr '\r' '\n' | sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' | tail -1
}

cd "$WORK"
printf '3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\n' > config.txt
CP=$(free_port); SP=$(free_port); GP=$(free_port); RP=$(free_port)
taskset -c "$SRV_CPUS" "$BIN/coord" -c "$CP" -s "$SP" -C config.txt -data-dir none -l coord.log -no-stdin > coord.out 2>&1 &
PIDS_STARTED+=($!)
for _ in $(seq 100); do
	"$BIN/client" -h 127.0.0.1 -p "$CP" status --json 2>/dev/null | grep -q '"serving".*"serving".*"serving"' && break
	sleep 0.2
done
taskset -c "$SRV_CPUS" "$BIN/gateway" -h 127.0.0.1 -p "$CP" -listen "127.0.0.1:$GP" > gw.out 2>&1 &
GW=$!
PIDS_STARTED=("$GW" "${PIDS_STARTED[@]}")
for _ in $(seq 100); do [ "$(redis-cli -p "$GP" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
SERVERS=$("$BIN/client" -h 127.0.0.1 -p "$CP" status --json | python3 -c 'import json,sys; print(" ".join(str(s["pid"]) for s in json.load(sys.stdin)["servers"]))')
N0=$N; N=$((N / 5)); bench "$GP" > /dev/null; N=$N0 # warm-up
# shellcheck disable=SC2086
s0=$(ticks $SERVERS); g0=$(ticks "$GW"); read -r gr0 gw0 < <(calls "$GW"); read -r sr0 sw0 < <(calls $SERVERS)
ftkv=$(bench "$GP")
# shellcheck disable=SC2086
s1=$(ticks $SERVERS); g1=$(ticks "$GW"); read -r gr1 gw1 < <(calls "$GW"); read -r sr1 sw1 < <(calls $SERVERS)

taskset -c "$SRV_CPUS" redis-server --port "$RP" --save '' --appendonly no > redis.out 2>&1 &
RS=$!
PIDS_STARTED+=("$RS")
for _ in $(seq 100); do [ "$(redis-cli -p "$RP" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
N0=$N; N=$((N / 5)); bench "$RP" > /dev/null; N=$N0
r0=$(ticks "$RS"); read -r rr0 rw0 < <(calls "$RS")
redis=$(bench "$RP")
r1=$(ticks "$RS"); read -r rr1 rw1 < <(calls "$RS")

echo "redis-benchmark -t set -c 50 -n $N -r 100000 -d 100 -P $PIPE; servers and gateway on CPU $SRV_CPUS, load on CPU $LOAD_CPUS"
printf '%-22s %12s %14s %12s %12s\n' "" "SET/s" "CPU us/SET" "reads/SET" "writes/SET"
printf '%-22s %12s %14s %12s %12s\n' "gateway" "$ftkv" "$(per "$g0" "$g1")" "$(perN "$gr0" "$gr1")" "$(perN "$gw0" "$gw1")"
printf '%-22s %12s %14s %12s %12s\n' "3 servers (together)" "" "$(per "$s0" "$s1")" "$(perN "$sr0" "$sr1")" "$(perN "$sw0" "$sw1")"
printf '%-22s %12s %14s %12s %12s\n' "redis-server" "$redis" "$(per "$r0" "$r1")" "$(perN "$rr0" "$rr1")" "$(perN "$rw0" "$rw1")"
python3 -c "print(f'ratio gateway / Redis: {$ftkv/$redis:.2f}x')"
