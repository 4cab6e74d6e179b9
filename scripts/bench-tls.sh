#!/usr/bin/env bash
# ftkv with TLS on every link against the same cluster without TLS, with the
# method of docs/BENCHMARKS.md: bin/bench drives both (-tls-ca for the TLS
# one), servers pinned to one CPU and the load generator to the other,
# runs of BENCH_DURATION, BENCH_REPS repetitions alternating which goes
# first, medians. Prints SET and GET (50 connections, pipeline 1 and 16)
# with the ratio TLS on / TLS off (target: >= 0.7x).
#
#   scripts/bench-tls.sh                # (run by make bench-compare)
#   BENCH_DURATION=1s BENCH_REPS=1 scripts/bench-tls.sh --check
#
# It starts two clusters (bin/coord with BENCH_CONFIG and BENCH_FTKV_ARGS,
# default "-data-dir none"), the second with a CA and certificates made by
# bin/coord -gen-certs in its work directory, and stops both by pid on exit.
# Environment: as scripts/bench-compare.sh (BENCH_DURATION, BENCH_REPS,
# BENCH_CONNS, BENCH_KEYS, BENCH_SIZE, BENCH_CONFIG, BENCH_FTKV_ARGS,
# BENCH_SERVER_CPUS, BENCH_LOAD_CPUS, BENCH_KEEP).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin
DURATION=${BENCH_DURATION:-10s}
REPS=${BENCH_REPS:-3}
CONNS=${BENCH_CONNS:-50}
KEYS=${BENCH_KEYS:-100000}
SIZE=${BENCH_SIZE:-100}
CONFIG=${BENCH_CONFIG:-$ROOT/config.txt}
FTKV_ARGS=${BENCH_FTKV_ARGS:--data-dir none}
SERVER_CPUS=${BENCH_SERVER_CPUS:-0}
LOAD_CPUS=${BENCH_LOAD_CPUS:-1}
KEEP=${BENCH_KEEP:-0}
CHECK=0
for arg in "$@"; do
	case $arg in
	--check) CHECK=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "bench-tls: unknown argument $arg (--check, --help)" >&2
		exit 2
		;;
	esac
done

exec 3>&2
say() { echo "bench-tls: $*" >&3; }
die() {
	say "$*"
	exit 1
}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ftkv-bench-tls.XXXXXX")
PIDS=()
cleanup() {
	local status=$? pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ "$KEEP" = 1 ] || [ "$status" != 0 ]; then say "logs kept in $WORK"; else rm -rf "$WORK"; fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
. "$ROOT/scripts/bench-lib.sh"

# start NAME CONFIG: a cluster in $WORK/NAME; sets STARTED_PORT.
start() {
	local name=$1 cfg=$2 out addr=
	mkdir -p "$WORK/$name"
	out=$WORK/$name/coord.out
	# shellcheck disable=SC2086 # FTKV_ARGS is a list of flags
	(cd "$WORK/$name" && exec "${PIN_SRV[@]}" "$BIN/coord" -c 0 -s 0 -C "$cfg" -no-stdin -l "$WORK/$name/ftkv.log" $FTKV_ARGS \
		</dev/null >"$out" 2>&1) &
	PIDS+=("$!")
	for _ in $(seq 300); do
		addr=$(grep -o 'clients connect to [0-9.]*:[0-9]*' "$out" 2>/dev/null | awk '{print $4}' || true)
		[ -n "$addr" ] && break
		kill -0 "${PIDS[-1]}" 2>/dev/null || die "bin/coord ($name) exited: $(cat "$out")"
		sleep 0.1
	done
	[ -n "$addr" ] || die "the $name cluster did not become ready within 30s (see $WORK/$name/ftkv.log)"
	STARTED_PORT=${addr##*:}
}

"$BIN/coord" -gen-certs "$WORK/certs" >"$WORK/tls.lines"
cat "$CONFIG" "$WORK/tls.lines" >"$WORK/config-tls.txt"
start plain "$CONFIG"
OFF=(-h 127.0.0.1 -p "$STARTED_PORT")
start tls "$WORK/config-tls.txt"
ON=(-h 127.0.0.1 -p "$STARTED_PORT" -tls-ca "$WORK/certs/ca.pem")
COMMON=(-keys "$KEYS" -size "$SIZE")
preload() { # every key once, so the GET runs hit (not measured)
	"${PIN_LOAD[@]}" "$BIN/bench" -preload -n 1 -ratio 0 -c "$CONNS" -P 16 "${COMMON[@]}" "$@" >/dev/null 2>>"$WORK/bench.err" ||
		die "preload failed ($*): $(tail -n 1 "$WORK/bench.err")"
}
preload "${OFF[@]}"
preload "${ON[@]}"

RESULTS=$WORK/results.csv # tls,test,pipeline,ops/s,p99 µs
: >"$RESULTS"
FAILED=0
run() { # run on|off TEST PIPELINE RATIO ARGS...
	local tls=$1 test=$2 pipe=$3 ratio=$4 out
	shift 4
	if out=$("${PIN_LOAD[@]}" "$BIN/bench" -json -duration "$DURATION" -c "$CONNS" -P "$pipe" -ratio "$ratio" \
		-preload=false "${COMMON[@]}" "$@" 2>>"$WORK/bench.err"); then
		echo "$tls,$test,$pipe,$(sed -n 's/.*"ops_per_sec":\([0-9.]*\).*/\1/p' <<<"$out"),$(sed -n 's/.*"latency_us":{[^}]*"p99":\([0-9]*\).*/\1/p' <<<"$out")" >>"$RESULTS"
	else
		FAILED=$((FAILED + 1))
		say "run failed: TLS $tls $test P$pipe: $(tail -n 1 "$WORK/bench.err")"
	fi
}
for rep in $(seq "$REPS"); do
	say "repetition $rep of $REPS"
	for cell in "SET|1|0" "GET|1|1" "SET|16|0" "GET|16|1"; do
		IFS='|' read -r test pipe ratio <<<"$cell"
		if [ $((rep % 2)) = 1 ]; then
			run on "$test" "$pipe" "$ratio" "${ON[@]}"
			run off "$test" "$pipe" "$ratio" "${OFF[@]}"
		else
			run off "$test" "$pipe" "$ratio" "${OFF[@]}"
			run on "$test" "$pipe" "$ratio" "${ON[@]}"
		fi
	done
done

echo "TLS on every link vs TLS off (bin/bench -c $CONNS, runs of $DURATION, $REPS repetitions, medians; target >= 0.7x)"
printf '%-10s %14s %14s %7s %10s %10s\n' "" "TLS ops/s" "plain ops/s" "ratio" "TLS p99" "plain p99"
MISSING=0
for cell in "SET 1" "GET 1" "SET 16" "GET 16"; do
	read -r test pipe <<<"$cell"
	med() { # med on|off FIELD
		awk -F, -v t="$1" -v x="$test" -v p="$pipe" -v f="$2" '$1 == t && $2 == x && $3 == p && $f != "" { print $f }' "$RESULTS" |
			sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
	}
	on=$(med on 4) off=$(med off 4) onp=$(med on 5) offp=$(med off 5)
	if [ -z "$on" ] || [ -z "$off" ]; then
		MISSING=$((MISSING + 1))
		printf '%-10s %14s %14s %7s\n' "$test P$pipe" "${on:--}" "${off:--}" "-"
		continue
	fi
	awk -v l="$test P$pipe" -v a="$on" -v b="$off" -v ap="$onp" -v bp="$offp" \
		'BEGIN { printf "%-10s %14.0f %14.0f %6.2fx %8.2fms %8.2fms\n", l, a, b, a / b, ap / 1000, bp / 1000 }'
done
if [ "$MISSING" -gt 0 ] || [ "$FAILED" -gt 0 ]; then
	say "$MISSING rows without figures, $FAILED runs failed (see $WORK/bench.err)"
	[ "$CHECK" = 1 ] && exit 1
fi
exit 0
