#!/usr/bin/env bash
# ftkv against Redis, side by side, with the method of docs/BENCHMARKS.md: the same load
# generator (bin/bench) drives both; servers pinned to one CPU and the load
# generator to the other; every run BENCH_DURATION long, BENCH_REPS
# repetitions, medians. Prints a table of ftkv/Redis ratios.
#
#   scripts/bench-compare.sh            # the full matrix (make bench-compare)
#   BENCH_DURATION=1s BENCH_REPS=1 scripts/bench-compare.sh --check
#                                       # short form of make test: fails unless
#                                       # every row has numbers (not their size)
#
# Matrix: 50 connections (BENCH_CONNS), 100-byte values (BENCH_SIZE), 100,000
# keys (BENCH_KEYS); SET (ratio 0) and GET (ratio 1, after a preload) with
# pipeline 1 and 16; SET and GET with 16 goroutines sharing each connection's
# client (bin/bench -goroutines 16; rows "G16"), against Redis with 16
# commands pipelined per connection (the reference, "redis P16") and against
# Redis driven the same way by github.com/redis/rueidis, whose client
# pipelines the goroutines' calls (like for like, "redis+rueidis"); SET and
# GET with 1 connection (latency); and SET against Redis with a replica and
# WAIT 1 after every SET. Then redis-benchmark
# (-t set,get, same connections, keys and value size, -P 1 and -P 16)
# against bin/gateway (pinned with the servers, and a second one pinned with
# the load generator, as a sidecar) and against Redis: the gateway's extra
# hop (targets: >= 0.5x Redis at P1, >= 0.4x at P16).
# Last, scripts/bench-tls.sh: TLS on every link against TLS off (>= 0.7x).
#
# It starts: a Redis (persistence off), a second Redis with a replica for the
# WAIT row, an ftkv cluster (bin/coord with config.txt and BENCH_FTKV_ARGS,
# default "-data-dir none": no log, as the Redis has no persistence) and a
# bin/gateway in front of it, all on free ports; and stops every process it
# started, by pid, on any exit. redis-benchmark runs a number of requests,
# not a duration: BENCH_GW_N1 and BENCH_GW_N16 (default: 25,000 and
# 100,000 per second of BENCH_DURATION) per test.
# Environment: BENCH_DURATION (10s) BENCH_REPS (3) BENCH_CONNS (50)
# BENCH_KEYS (100000) BENCH_SIZE (100) BENCH_CONFIG (config.txt) BENCH_FTKV_ARGS
# BENCH_SERVER_CPUS (0) BENCH_LOAD_CPUS (1) BENCH_RESULTS (copy the raw
# JSON lines there) BENCH_KEEP=1 (keep the work directory with the logs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin
DURATION=${BENCH_DURATION:-10s}
REPS=${BENCH_REPS:-3}
CONNS=${BENCH_CONNS:-50}
KEYS=${BENCH_KEYS:-100000}
SIZE=${BENCH_SIZE:-100}
CONFIG=${BENCH_CONFIG:-$ROOT/config.txt}
# Like for like with a Redis without persistence: ftkv without its log
# (scripts/bench-durability.sh compares the logs with Redis's AOF).
FTKV_ARGS=${BENCH_FTKV_ARGS:--data-dir none}
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
LOAD_CPUS=${BENCH_LOAD_CPUS:-1}
KEEP=${BENCH_KEEP:-0}
CHECK=0

for arg in "$@"; do
	case $arg in
	--check) CHECK=1 ;;
	--keep) KEEP=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "bench-compare: unknown argument $arg (--check, --keep, --help)" >&2
		exit 2
		;;
	esac
done

# fd 3 is our stderr: messages reach it even from a trap that fires inside
# a redirected command.
exec 3>&2
say() { echo "bench-compare: $*" >&3; }
die() {
	say "$*"
	exit 1
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ftkv-bench-compare.XXXXXX")
PIDS=()  # long-lived processes we started
CHILD=   # the bench run under way

# child CMD...: runs CMD in the background and waits for it, so that a
# signal to this script is handled at once (bash runs traps only between
# foreground commands); returns CMD's exit status.
child() {
	"$@" &
	CHILD=$!
	local rc=0
	wait "$CHILD" || rc=$?
	CHILD=
	return "$rc"
}

# Stop what we started, by pid: SIGTERM (the coordinator shuts its servers
# down in order), then SIGKILL whatever is still there after 10s.
cleanup() {
	local status=$? pid
	trap - EXIT INT TERM
	if [ -n "$CHILD" ]; then
		kill -TERM "$CHILD" 2>/dev/null || true
		wait "$CHILD" 2>/dev/null || true
	fi
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "pid $pid did not stop on SIGTERM; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [ "$KEEP" = 1 ] || [ "$status" != 0 ]; then
		say "logs and results kept in $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- what we need ------------------------------------------------------------
# (Redis, bin/*, CPU pinning, free_port)
. "$ROOT/scripts/bench-lib.sh"

# start_redis NAME [redis-server args...]: starts a Redis on a free port
# (persistence off) and sets STARTED_PORT.
start_redis() {
	local name=$1 port pid
	shift
	for _ in 1 2 3 4 5; do
		port=$(free_port) || exit 1
		"${PIN_SRV[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
			--protected-mode no --daemonize no --dir "$WORK" --dbfilename "$name.rdb" \
			--logfile "$WORK/$name.log" "$@" </dev/null >/dev/null 2>&1 &
		pid=$!
		PIDS+=("$pid")
		for _ in $(seq 100); do
			if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
				STARTED_PORT=$port
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break # lost the port race: try another
			sleep 0.05
		done
	done
	die "redis $name did not start (see $WORK/$name.log)"
}

# --- the systems under test --------------------------------------------------
start_redis redis
REDIS_PORT=$STARTED_PORT
start_redis redis-wait
WAIT_PORT=$STARTED_PORT
start_redis redis-replica --replicaof 127.0.0.1 "$WAIT_PORT"
REPLICA_PORT=$STARTED_PORT
for _ in $(seq 200); do
	redis-cli -p "$REPLICA_PORT" info replication 2>/dev/null | grep -q 'master_link_status:up' && break
	sleep 0.05
done
grep -q 'master_link_status:up' <<<"$(redis-cli -p "$REPLICA_PORT" info replication)" ||
	die "the replica did not connect to its primary (see $WORK/redis-replica.log)"

# shellcheck disable=SC2086 # FTKV_ARGS is a list of flags
(cd "$WORK" && exec "${PIN_SRV[@]}" "$BIN/coord" -c 0 -s 0 -C "$CONFIG" -no-stdin -l "$WORK/ftkv.log" $FTKV_ARGS \
	</dev/null >"$WORK/coord.out" 2>&1) &
COORD_PID=$!
PIDS+=("$COORD_PID")
FTKV_ADDR=
for _ in $(seq 300); do
	FTKV_ADDR=$(grep -o 'clients connect to [0-9.]*:[0-9]*' "$WORK/coord.out" 2>/dev/null | awk '{print $4}' || true)
	[ -n "$FTKV_ADDR" ] && break
	kill -0 "$COORD_PID" 2>/dev/null || die "bin/coord exited: $(cat "$WORK/coord.out")"
	sleep 0.1
done
[ -n "$FTKV_ADDR" ] || die "the ftkv cluster did not become ready within 30s (see $WORK/ftkv.log)"
FTKV_PORT=${FTKV_ADDR##*:}

# --- the matrix ---------------------------------------------------------------
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
FTKV=(-h 127.0.0.1 -p "$FTKV_PORT")
REDIS=(-target redis -redis "127.0.0.1:$REDIS_PORT")
REDIS_WAIT=(-target redis -redis "127.0.0.1:$WAIT_PORT" -redis-wait 1)
COMMON=(-keys "$KEYS" -size "$SIZE")
FAILED=0

# run LABEL CONNS PIPELINE RATIO TARGET-ARGS...: one measured run, its JSON
# appended to the results. TARGET-ARGS may add bench flags (-goroutines).
run() {
	local label=$1 conns=$2 pipe=$3 ratio=$4
	shift 4
	if ! child "${PIN_LOAD[@]}" "$BIN/bench" -json -label "$label" -duration "$DURATION" -c "$conns" -P "$pipe" \
		-ratio "$ratio" -preload=false "${COMMON[@]}" "$@" >"$WORK/run.json" 2>>"$WORK/bench.err"; then
		FAILED=$((FAILED + 1))
		say "run failed: $label $*: $(tail -n 1 "$WORK/bench.err")"
	fi
	cat "$WORK/run.json" >>"$RESULTS" # a partial result of a failed run still counts
	return 0
}

# Every key once, so the GET runs hit (not measured).
preload() {
	child "${PIN_LOAD[@]}" "$BIN/bench" -preload -n 1 -ratio 0 -c "$CONNS" -P 16 "${COMMON[@]}" "$@" >/dev/null 2>>"$WORK/bench.err" ||
		die "preload failed: $* ($(tail -n 1 "$WORK/bench.err"))"
}

echo "ftkv vs Redis — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1); $(redis-server --version | awk '{print $1, $2, $3}')"
PINNING="not pinned"
[ ${#PIN_SRV[@]} -gt 0 ] && PINNING="servers on CPU $SERVER_CPUS, bench on CPU $LOAD_CPUS"
echo "ftkv $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), bin/coord $FTKV_ARGS; $PINNING (taskset)"
echo "runs of $DURATION, $REPS repetitions, medians; $CONNS connections, $SIZE B values, $KEYS keys"
echo

preload "${FTKV[@]}"
preload "${REDIS[@]}"

# LABEL|CONNS|PIPELINE|RATIO[|GOROUTINES]: with GOROUTINES, ftkv and
# rueidis run that many goroutines per connection at pipeline 1, and Redis
# the reference at PIPELINE.
CELLS=(
	"SET c$CONNS P1|$CONNS|1|0"
	"GET c$CONNS P1|$CONNS|1|1"
	"SET c$CONNS P16|$CONNS|16|0"
	"GET c$CONNS P16|$CONNS|16|1"
	"SET c$CONNS G16|$CONNS|16|0|16"
	"GET c$CONNS G16|$CONNS|16|1|16"
	"SET c1 P1|1|1|0"
	"GET c1 P1|1|1|1"
)
for rep in $(seq "$REPS"); do
	say "repetition $rep of $REPS"
	for cell in "${CELLS[@]}"; do
		IFS='|' read -r label conns pipe ratio gor <<<"$cell"
		if [ -n "$gor" ]; then
			if [ $((rep % 2)) = 1 ]; then
				run "$label" "$conns" 1 "$ratio" "${FTKV[@]}" -goroutines "$gor"
				run "$label" "$conns" "$pipe" "$ratio" "${REDIS[@]}"
				run "$label" "$conns" 1 "$ratio" "${REDIS[@]}" -goroutines "$gor"
			else
				run "$label" "$conns" 1 "$ratio" "${REDIS[@]}" -goroutines "$gor"
				run "$label" "$conns" "$pipe" "$ratio" "${REDIS[@]}"
				run "$label" "$conns" 1 "$ratio" "${FTKV[@]}" -goroutines "$gor"
			fi
			continue
		fi
		# Alternate who goes first, so neither always runs on a warmer machine.
		if [ $((rep % 2)) = 1 ]; then
			run "$label" "$conns" "$pipe" "$ratio" "${FTKV[@]}"
			run "$label" "$conns" "$pipe" "$ratio" "${REDIS[@]}"
		else
			run "$label" "$conns" "$pipe" "$ratio" "${REDIS[@]}"
			run "$label" "$conns" "$pipe" "$ratio" "${FTKV[@]}"
		fi
		if [ "$label" = "SET c$CONNS P1" ]; then
			run "$label" "$conns" "$pipe" "$ratio" "${REDIS_WAIT[@]}"
		fi
	done
done

# --- redis-benchmark through the gateway ---------------------------------------
# Two placements: a gateway pinned with the servers, and a sidecar gateway
# pinned with the load generator (one per application host, as issue 14
# describes: its CPU is then the application's).
# start_gateway NAME PIN...: starts bin/gateway pinned by PIN; sets GW_PORT.
start_gateway() {
	local name=$1
	shift
	GW_PORT=$(free_port)
	"$@" "$BIN/gateway" -h 127.0.0.1 -p "$FTKV_PORT" -listen "127.0.0.1:$GW_PORT" -log "$WORK/$name.log" \
		</dev/null >"$WORK/$name.out" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	for _ in $(seq 100); do
		[ "$(redis-cli -p "$GW_PORT" ping 2>/dev/null || true)" = PONG ] && break
		kill -0 "$pid" 2>/dev/null || die "bin/gateway ($name) exited: $(cat "$WORK/$name.out")"
		sleep 0.1
	done
	[ "$(redis-cli -p "$GW_PORT" ping 2>/dev/null || true)" = PONG ] || die "bin/gateway ($name) did not answer PING (see $WORK/$name.log)"
}
start_gateway sidecar "${PIN_LOAD[@]}"
SIDE_PORT=$GW_PORT
start_gateway gateway "${PIN_SRV[@]}"
SECS=${DURATION%s}
case $SECS in '' | *[!0-9]*) SECS=10 ;; esac
GW_N1=${BENCH_GW_N1:-$((SECS * 25000))}
GW_N16=${BENCH_GW_N16:-$((SECS * 100000))}
GW_RESULTS=$WORK/redis-benchmark.csv
: >"$GW_RESULTS"

# rb TARGET PORT PIPELINE N: one redis-benchmark run of SET then GET; its
# rows appended as "target,P,test,rps,p99".
rb() {
	local target=$1 port=$2 pipe=$3 n=$4
	if ! child "${PIN_LOAD[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -c "$CONNS" -n "$n" -r "$KEYS" \
		-d "$SIZE" -P "$pipe" --csv >"$WORK/rb.csv" 2>>"$WORK/rb.err"; then
		FAILED=$((FAILED + 1))
		say "redis-benchmark failed: $target -P $pipe: $(tail -n 1 "$WORK/rb.err")"
	fi
	# "SET","89285.71","0.291","0.080","0.279","0.391","0.511","1.351"
	awk -F'"' -v t="$target" -v p="$pipe" '$2 == "SET" || $2 == "GET" { print t "," p "," $2 "," $4 "," $14 }' \
		"$WORK/rb.csv" >>"$GW_RESULTS"
	return 0
}
for rep in $(seq "$REPS"); do
	say "redis-benchmark repetition $rep of $REPS"
	for pipe in 1 16; do
		n=$GW_N1
		[ "$pipe" = 16 ] && n=$GW_N16
		if [ $((rep % 2)) = 1 ]; then
			rb gateway "$GW_PORT" "$pipe" "$n"
			rb sidecar "$SIDE_PORT" "$pipe" "$n"
			rb redis "$REDIS_PORT" "$pipe" "$n"
		else
			rb redis "$REDIS_PORT" "$pipe" "$n"
			rb sidecar "$SIDE_PORT" "$pipe" "$n"
			rb gateway "$GW_PORT" "$pipe" "$n"
		fi
	done
done

[ -n "${BENCH_RESULTS:-}" ] && cp "$RESULTS" "$BENCH_RESULTS"
CHECK_ARGS=()
[ "$CHECK" = 1 ] && CHECK_ARGS=(-check)
"$BIN/bench" -mode compare "${CHECK_ARGS[@]}" "$RESULTS"
echo
echo "ratio = ftkv ops/s ÷ the reference's; p99 ratio = ftkv p99 ÷ the reference's (lower is better for ftkv)."
echo "G16: 16 goroutines share each of the $CONNS clients (bin/bench -goroutines 16) against Redis with 16 commands"
echo "pipelined per connection (redis P16; target >= 0.5x) and against rueidis, 16 goroutines per connection (redis+rueidis)."
echo
echo "redis-benchmark -t set,get -c $CONNS -r $KEYS -d $SIZE (-n $GW_N1 at P1, $GW_N16 at P16): bin/gateway vs Redis, medians;"
echo "gateway: pinned with the servers; sidecar: pinned with redis-benchmark (the application's host)"
# Medians per (target, P, test); then one row per (P, test) with the ratio.
GW_MISSING=0
printf '%-10s %14s %14s %14s %7s %7s %10s %10s %10s %7s\n' "" "gateway ops/s" "sidecar ops/s" "Redis ops/s" "ratio" "sidecar" "gw p99" "side p99" "Redis p99" "target"
for pipe in 1 16; do
	for test in SET GET; do
		med() { # med TARGET FIELD: the median of FIELD over the reps
			awk -F, -v t="$1" -v p="$pipe" -v x="$test" -v f="$2" '$1 == t && $2 == p && $3 == x { print $f }' "$GW_RESULTS" |
				sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
		}
		g=$(med gateway 4) r=$(med redis 4) gp=$(med gateway 5) rp=$(med redis 5) sd=$(med sidecar 4) sp=$(med sidecar 5)
		target=0.5
		[ "$pipe" = 16 ] && target=0.4
		if [ -z "$g" ] || [ -z "$r" ] || [ -z "$sd" ]; then
			GW_MISSING=$((GW_MISSING + 1))
			printf '%-10s %14s %14s %14s %7s\n' "$test P$pipe" "${g:--}" "${sd:--}" "${r:--}" "-"
			continue
		fi
		awk -v l="$test P$pipe" -v g="$g" -v r="$r" -v gp="$gp" -v rp="$rp" -v tg="$target" -v sd="$sd" -v sp="$sp" \
			'BEGIN { printf "%-10s %14.0f %14.0f %14.0f %6.2fx %6.2fx %8.2fms %8.2fms %8.2fms %6sx\n", l, g, sd, r, g / r, sd / r, gp, sp, rp, tg }'
	done
done
echo
# TLS on every link against TLS off (its own two clusters).
TLS_ARGS=()
[ "$CHECK" = 1 ] && TLS_ARGS=(--check)
"$ROOT/scripts/bench-tls.sh" "${TLS_ARGS[@]}" || FAILED=$((FAILED + 1))
if [ "$GW_MISSING" -gt 0 ]; then
	say "$GW_MISSING redis-benchmark rows have no figures (see $WORK/rb.err)"
	[ "$CHECK" = 1 ] && exit 1
fi
if [ "$FAILED" -gt 0 ]; then
	say "$FAILED runs failed (see $WORK/bench.err)"
	[ "$CHECK" = 1 ] && exit 1
fi
exit 0
