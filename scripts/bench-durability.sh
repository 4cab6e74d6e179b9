#!/usr/bin/env bash
# ftkv's write-ahead log against Redis's append-only file, side by side, with
# the method of docs/BENCHMARKS.md: bin/bench drives both; servers pinned to
# one CPU and the load generator to the other; every run BENCH_DURATION long,
# BENCH_REPS repetitions, medians. Prints a table of ftkv/Redis ratios at the
# same fsync policy, and one of ftkv with its log against ftkv without.
#
#   scripts/bench-durability.sh           # the full matrix (~5 minutes)
#   scripts/bench-durability.sh -quick    # 2 s runs, 1 repetition (~25 s)
#
# Workload: SET only (-ratio 0), 50 connections (BENCH_CONNS), pipeline 1,
# 100-byte values (BENCH_SIZE), 100,000 keys (BENCH_KEYS). Rows:
#   SET always      ftkv -fsync always            Redis --appendfsync always
#   SET always+2nd  ftkv -fsync always -fsync-secondary (the secondary syncs
#                   before it acknowledges too)   Redis --appendfsync always
#   SET everysec    ftkv -fsync everysec          Redis --appendfsync everysec
#   SET no          ftkv -fsync no                Redis --appendfsync no
#   SET no-log      ftkv -data-dir none           Redis --appendonly no
#
# Every run starts its system afresh (a default ftkv cluster: bin/coord with
# config.txt, or one redis-server with --save ''), with an empty data
# directory on the work directory's file system (TMPDIR, default /tmp), on
# free ports; stops it by pid after the run and deletes its data. ftkv and
# Redis alternate who goes first in each repetition. Any exit stops every
# process the script started.
# Environment: BENCH_DURATION (10s) BENCH_REPS (3) BENCH_CONNS (50)
# BENCH_KEYS (100000) BENCH_SIZE (100) BENCH_CONFIG (config.txt)
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
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
LOAD_CPUS=${BENCH_LOAD_CPUS:-1}
KEEP=${BENCH_KEEP:-0}

for arg in "$@"; do
	case $arg in
	-quick | --quick)
		DURATION=2s
		REPS=1
		;;
	-keep | --keep) KEEP=1 ;;
	-h | -help | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "bench-durability: unknown argument $arg (-quick, -keep, -help)" >&2
		exit 2
		;;
	esac
done
case $CONFIG in /*) ;; *) CONFIG=$PWD/$CONFIG ;; esac

# fd 3 is our stderr: messages reach it even from a trap that fires inside
# a redirected command.
exec 3>&2
say() { echo "bench-durability: $*" >&3; }
die() {
	say "$*"
	exit 1
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ftkv-bench-durability.XXXXXX")
SYS_PIDS=() # the system under test now: the coordinator (its servers) or redis-server
CHILD=      # the bench run under way

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

# stop_system: SIGTERM to what we started (the coordinator shuts its servers
# down in order), then, after 15 s, SIGKILL to it and to its children (the
# servers, found by their parent's pid) that are still there.
stop_system() {
	local pid kids=() k
	for pid in "${SYS_PIDS[@]}"; do
		while read -r k; do [ -n "$k" ] && kids+=("$k"); done < <(pgrep -P "$pid" 2>/dev/null || true)
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${SYS_PIDS[@]}"; do
		for _ in $(seq 150); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "pid $pid did not stop on SIGTERM; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	for k in "${kids[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$k" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$k" 2>/dev/null || true
	done
	SYS_PIDS=()
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [ -n "$CHILD" ]; then
		kill -TERM "$CHILD" 2>/dev/null || true
		wait "$CHILD" 2>/dev/null || true
	fi
	stop_system
	if [ "$KEEP" = 1 ] || [ "$status" != 0 ]; then
		rm -rf "$WORK"/run.*/data "$WORK"/run.*/appendonlydir "$WORK"/run.*/server_* # the logs, not the data
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

# start_redis DIR [redis-server args...]: a Redis on a free port, its files
# in DIR; sets TARGET to bench's flags for it.
start_redis() {
	local dir=$1 port pid
	shift
	for _ in 1 2 3 4 5; do
		port=$(free_port) || exit 1
		"${PIN_SRV[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' \
			--protected-mode no --daemonize no --dir "$dir" \
			--logfile "$dir/redis.log" "$@" </dev/null >/dev/null 2>&1 &
		pid=$!
		SYS_PIDS=("$pid")
		for _ in $(seq 100); do
			if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
				TARGET=(-target redis -redis "127.0.0.1:$port")
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break # lost the port race: try another
			sleep 0.05
		done
		stop_system
	done
	die "redis did not start (see $dir/redis.log)"
}

# start_ftkv DIR [bin/coord durability flags...]: the default cluster, run
# from DIR (its dumps land there); sets TARGET.
start_ftkv() {
	local dir=$1 pid addr=
	shift
	(cd "$dir" && exec "${PIN_SRV[@]}" "$BIN/coord" -c 0 -s 0 -C "$CONFIG" -no-stdin -l "$dir/ftkv.log" "$@" \
		</dev/null >"$dir/coord.out" 2>&1) &
	pid=$!
	SYS_PIDS=("$pid")
	for _ in $(seq 300); do
		addr=$(grep -o 'clients connect to [0-9.]*:[0-9]*' "$dir/coord.out" 2>/dev/null | awk '{print $4}' || true)
		[ -n "$addr" ] && break
		kill -0 "$pid" 2>/dev/null || die "bin/coord exited: $(cat "$dir/coord.out")"
		sleep 0.1
	done
	[ -n "$addr" ] || die "the ftkv cluster did not become ready within 30s (see $dir/ftkv.log)"
	TARGET=(-h 127.0.0.1 -p "${addr##*:}")
}

# --- the matrix ---------------------------------------------------------------
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
FAILED=0
ERRORED=0
SECS=${DURATION%s}
case $SECS in *[!0-9]*) SECS=60 ;; esac # not whole seconds: a generous bound

# run SYSTEM LABEL ARGS...: starts SYSTEM (ftkv or redis) with ARGS and an
# empty data directory, measures one run labelled LABEL, stops it and
# deletes the directory. A run is bounded: bench gets DURATION + 60 s.
run() {
	local system=$1 label=$2 dir
	shift 2
	dir=$(mktemp -d "$WORK/run.XXXXXX")
	if [ "$system" = ftkv ]; then
		local args=("$@")
		if [ "${args[0]:-}" = none ]; then
			args=(-data-dir none "${args[@]:1}")
		else
			args=(-data-dir "$dir/data" "${args[@]}")
		fi
		start_ftkv "$dir" "${args[@]}"
	else
		start_redis "$dir" "$@"
	fi
	if ! child timeout -k 5 $((SECS + 60)) "${PIN_LOAD[@]}" "$BIN/bench" -json -label "$label" -duration "$DURATION" \
		-c "$CONNS" -P 1 -ratio 0 -preload=false -keys "$KEYS" -size "$SIZE" "${TARGET[@]}" \
		>"$WORK/run.json" 2>>"$WORK/bench.err"; then
		FAILED=$((FAILED + 1))
		say "run failed: $system $label: $(tail -n 1 "$WORK/bench.err")"
	fi
	cat "$WORK/run.json" >>"$RESULTS" # a partial result of a failed run still counts
	local disk keep=$KEEP
	disk=$(du -sh "$dir" 2>/dev/null | awk '{print $1}')
	stop_system
	say "  $system $label: $(grep -o '"ops_per_sec":[0-9.]*' "$WORK/run.json" | head -n 1 | cut -d: -f2 | cut -d. -f1) ops/s, $disk on disk"
	# Failed operations (a failover in the run, say) fail the script at the
	# end; the run's logs are kept.
	if ! grep -q '"errors":0,"connect_errors":0,' "$WORK/run.json"; then
		ERRORED=$((ERRORED + 1))
		keep=1
		say "  $system $label had failed operations: $(grep -o '"errors":[0-9]*' "$WORK/run.json" | head -n 1), first: $(grep -o '"first_error":"[^"]*"' "$WORK/run.json" || echo '?'); logs in $dir"
	fi
	if [ "$keep" = 1 ]; then
		rm -rf "$dir/data" "$dir/appendonlydir" "$dir"/server_* # keep the logs, not the data
	else
		rm -rf "$dir"
	fi
}

echo "ftkv write-ahead log vs Redis AOF — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1); $(redis-server --version | awk '{print $1, $2, $3}')"
echo "data on $(df -P "$WORK" | awk 'NR==2 {print $1}') ($(findmnt -n -o FSTYPE --target "$WORK" 2>/dev/null || echo '?')), $WORK"
PINNING="not pinned"
[ ${#PIN_SRV[@]} -gt 0 ] && PINNING="servers on CPU $SERVER_CPUS, bench on CPU $LOAD_CPUS"
echo "ftkv $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); $PINNING (taskset)"
echo "runs of $DURATION, $REPS repetitions, medians; SET only, $CONNS connections, pipeline 1, $SIZE B values, $KEYS keys"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
echo

# label|ftkv flags ("none": -data-dir none)|redis flags ("-": no Redis run)
CELLS=(
	"SET always|-fsync always|--appendonly yes --appendfsync always"
	"SET always+2nd|-fsync always -fsync-secondary|-"
	"SET everysec|-fsync everysec|--appendonly yes --appendfsync everysec"
	"SET no|-fsync no|--appendonly yes --appendfsync no"
	"SET no-log|none|--appendonly no"
)
for rep in $(seq "$REPS"); do
	say "repetition $rep of $REPS"
	for cell in "${CELLS[@]}"; do
		IFS='|' read -r label fflags rflags <<<"$cell"
		read -r -a fargs <<<"$fflags"
		read -r -a rargs <<<"$rflags"
		# Alternate who goes first, so neither always runs on a warmer machine.
		if [ $((rep % 2)) = 1 ]; then
			run ftkv "$label" "${fargs[@]}"
			[ "$rflags" = - ] || run redis "$label" "${rargs[@]}"
		else
			[ "$rflags" = - ] || run redis "$label" "${rargs[@]}"
			run ftkv "$label" "${fargs[@]}"
		fi
	done
done

[ -n "${BENCH_RESULTS:-}" ] && cp "$RESULTS" "$BENCH_RESULTS"

# The always+2nd row is compared with Redis's always runs: the same lines
# under its label.
VS_REDIS=$WORK/vs-redis.jsonl
{
	cat "$RESULTS"
	grep '"target":"redis"' "$RESULTS" | grep '"label":"SET always"' | sed 's/"label":"SET always"/"label":"SET always+2nd"/'
} >"$VS_REDIS"
# ftkv with each policy against ftkv without a log: the no-log runs under
# every label, as target ftkv-no-log.
VS_NOLOG=$WORK/vs-nolog.jsonl
{
	grep '"target":"ftkv"' "$RESULTS" | grep -v '"label":"SET no-log"' || true
	for cell in "${CELLS[@]}"; do
		label=${cell%%|*}
		[ "$label" = "SET no-log" ] && continue
		grep '"target":"ftkv"' "$RESULTS" | grep '"label":"SET no-log"' |
			sed -e "s/\"label\":\"SET no-log\"/\"label\":\"$label\"/" -e 's/"target":"ftkv"/"target":"ftkv-no-log"/' || true
	done
} >"$VS_NOLOG"

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?') (other work on the CPUs moves single runs a lot)"
echo
echo "ftkv against Redis at the same policy (SET no-log: ftkv -data-dir none, Redis --appendonly no):"
"$BIN/bench" -mode compare "$VS_REDIS"
echo
echo "ftkv with its log against ftkv without (-data-dir none), same runs:"
"$BIN/bench" -mode compare "$VS_NOLOG"
echo
echo "ratio = ftkv ops/s ÷ the reference's; p99 ratio = ftkv p99 ÷ the reference's (lower is better for ftkv)."
[ "$ERRORED" -gt 0 ] && say "$ERRORED runs had failed operations (their medians count them as runs)"
if [ "$FAILED" -gt 0 ] || [ "$ERRORED" -gt 0 ]; then
	[ "$FAILED" -gt 0 ] && say "$FAILED runs failed (see $WORK/bench.err)"
	KEEP=1
	exit 1
fi
exit 0
