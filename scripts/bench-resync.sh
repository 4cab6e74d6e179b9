#!/usr/bin/env bash
# Catching up a server after an outage under load: partial resync from the
# primaries' logs against a full re-seeding (issue 13, docs/BENCHMARKS.md).
#
#   scripts/bench-resync.sh           # 1M entries, a 5 s outage, 3 repetitions
#   scripts/bench-resync.sh -quick    # 200k entries, 1 repetition
#
# Each run starts a default cluster afresh (bin/coord with config.txt), as
#   log    with logs (-data-dir, fsync always): the returning server
#          recovers its log and its primaries send the writes it missed;
#   wiped  the same, but the server's data directory is deleted during its
#          outage (a lost disk): it is re-seeded in full, like for like;
#   none   without logs (-data-dir none): re-seeded in full (and the
#          writer runs faster, with no fsync);
# and then:
#   1. a writer (bin/bench -c BENCH_LOAD_CONNS -ratio 0) keeps writing
#      until the end of the run;
#   2. bin/bench -mode reseed loads BENCH_ENTRIES entries, kill -9s server 1
#      and times it until the status shows it serving again;
#   3. the respawned server is held down for BENCH_OUTAGE before it opens
#      its log and reports, through the servers' test hook
#      FTKV_TEST_START_DELAY (server/testcut.go): the outage of a host that
#      is down, on one machine. Meanwhile its shards take writes on their
#      other copies.
# Printed per system (medians): kill -> serving, the catch-up alone (from
# the first status showing the server past "starting", i.e. after its own
# log is recovered, to serving), what its neighbours sent (partial resync:
# the writes it missed; full re-seeding: every entry) and the log replay.
# Environment: BENCH_ENTRIES (1000000) BENCH_OUTAGE (5s) BENCH_REPS (3)
# BENCH_LOAD_CONNS (20) BENCH_SYSTEMS ("log wiped none") BENCH_CONFIG
# (config.txt) BENCH_KEEP=1 (keep the work directory with the logs). Not pinned: a re-seeding uses both CPUs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin
ENTRIES=${BENCH_ENTRIES:-1000000}
OUTAGE=${BENCH_OUTAGE:-5s}
REPS=${BENCH_REPS:-3}
LOAD_CONNS=${BENCH_LOAD_CONNS:-20}
CONFIG=${BENCH_CONFIG:-$ROOT/config.txt}
KEEP=${BENCH_KEEP:-0}
SYSTEMS=${BENCH_SYSTEMS:-log wiped none}
VICTIM=1

for arg in "$@"; do
	case $arg in
	-quick | --quick)
		ENTRIES=200000
		REPS=1
		;;
	-keep | --keep) KEEP=1 ;;
	-h | -help | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "bench-resync: unknown argument $arg (-quick, -keep, -help)" >&2
		exit 2
		;;
	esac
done
case $CONFIG in /*) ;; *) CONFIG=$PWD/$CONFIG ;; esac

exec 3>&2
say() { echo "bench-resync: $*" >&3; }
die() {
	say "$*"
	exit 1
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ftkv-bench-resync.XXXXXX")
COORD_PID=
WRITER_PID=
WIPER_PID=

stop_all() {
	local k kids=()
	if [ -n "$WIPER_PID" ]; then
		kill "$WIPER_PID" 2>/dev/null || true
		wait "$WIPER_PID" 2>/dev/null || true
		WIPER_PID=
	fi
	if [ -n "$WRITER_PID" ]; then
		kill -INT "$WRITER_PID" 2>/dev/null || true
		wait "$WRITER_PID" 2>/dev/null || true
		WRITER_PID=
	fi
	[ -n "$COORD_PID" ] || return 0
	while read -r k; do [ -n "$k" ] && kids+=("$k"); done < <(pgrep -P "$COORD_PID" 2>/dev/null || true)
	kill -TERM "$COORD_PID" 2>/dev/null || true
	for _ in $(seq 150); do
		kill -0 "$COORD_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$COORD_PID" 2>/dev/null || true
	wait "$COORD_PID" 2>/dev/null || true
	for k in "${kids[@]}"; do kill -KILL "$k" 2>/dev/null || true; done
	COORD_PID=
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	stop_all
	if [ "$KEEP" = 1 ] || [ "$status" != 0 ]; then
		rm -rf "$WORK"/run.*/data "$WORK"/run.*/server_*
		say "logs and results kept in $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

make -s --no-print-directory -C "$ROOT" build >&2

# The JSON helpers print nothing or 0 for a field that is missing (or
# null), and never fail (set -e).

# num FIELD FILE: the first number named FIELD in a JSON file.
num() { { grep -o "\"$1\":[0-9.e+-]*" "$2" || true; } | head -n 1 | cut -d: -f2; }

# sum_entries ARRAY FILE: the sum of "entries" in the JSON array ARRAY.
sum_entries() {
	{ grep -o "\"$1\":\[[^]]*\]" "$2" || true; } | { grep -o '"entries":[0-9]*' || true; } | cut -d: -f2 | awk '{s += $1} END {print s + 0}'
}

# max_took ARRAY FILE: the longest "took_ms" in the JSON array ARRAY.
max_took() {
	{ grep -o "\"$1\":\[[^]]*\]" "$2" || true; } | { grep -o '"took_ms":[0-9.]*' || true; } | cut -d: -f2 | awk '$1 > m {m = $1} END {print m + 0}'
}

# pid_of PORT ID: server ID's pid in the cluster's status (empty if none).
pid_of() {
	{ "$BIN/client" -h 127.0.0.1 -p "$1" status --json 2>/dev/null || true; } | { grep -o "{\"id\":$2,[^}]*" || true; } |
		{ grep -o '"pid":[0-9]*' || true; } | cut -d: -f2
}

median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# run SYSTEM: one measurement (SYSTEM log or none); appends a line
# "SYSTEM serving_s catch_up_s sent_entries send_ms replayed replay_ms" to
# $WORK/rows.
run() {
	local system=$1 dir addr= port
	dir=$(mktemp -d "$WORK/run.XXXXXX")
	local dd=(-data-dir "$dir/data")
	[ "$system" = none ] && dd=(-data-dir none)
	: >"$dir/delay"
	(cd "$dir" && FTKV_TEST_START_DELAY="$dir/delay" exec "$BIN/coord" -c 0 -s 0 -C "$CONFIG" -no-stdin \
		-l "$dir/ftkv.log" "${dd[@]}" </dev/null >"$dir/coord.out" 2>&1) &
	COORD_PID=$!
	for _ in $(seq 300); do
		addr=$(grep -o 'clients connect to [0-9.]*:[0-9]*' "$dir/coord.out" 2>/dev/null | awk '{print $4}' || true)
		[ -n "$addr" ] && break
		kill -0 "$COORD_PID" 2>/dev/null || die "bin/coord exited: $(cat "$dir/coord.out")"
		sleep 0.1
	done
	[ -n "$addr" ] || die "the cluster did not become ready within 30s (see $dir/ftkv.log)"
	port=${addr##*:}
	for _ in $(seq 300); do
		[ "$("$BIN/client" -h 127.0.0.1 -p "$port" status --json 2>/dev/null | grep -o '"state":"serving"' | wc -l)" -ge 3 ] && break
		sleep 0.1
	done
	# Only the respawn reads it: every server has started by now.
	echo "$VICTIM $OUTAGE" >"$dir/delay"
	"$BIN/bench" -h 127.0.0.1 -p "$port" -c "$LOAD_CONNS" -ratio 0 -keys 2000000 -preload=false \
		-duration 600s -json >"$dir/writer.json" 2>"$dir/writer.err" &
	WRITER_PID=$!
	if [ "$system" = wiped ]; then
		# Once the victim is replaced, and while its successor waits out
		# the outage (before it opens its directory), its disk is lost.
		local old
		old=$(pid_of "$port" "$VICTIM")
		[ -n "$old" ] || die "no pid for server $VICTIM in the status; logs in $dir"
		(
			for _ in $(seq 12000); do
				pid=$(pid_of "$port" "$VICTIM")
				if [ -n "$pid" ] && [ "$pid" != "$old" ] && [ "$pid" != 0 ]; then
					rm -rf "$dir/data/server_$VICTIM"
					echo "wiped $dir/data/server_$VICTIM (pid $old -> $pid)" >"$dir/wiped"
					exit 0
				fi
				sleep 0.05
			done
		) &
		WIPER_PID=$!
	fi
	if ! timeout -k 5 600 "$BIN/bench" -mode reseed -h 127.0.0.1 -p "$port" -entries "$ENTRIES" \
		-victim "$VICTIM" -server-log "$dir/ftkv.log" -recover 120s -json >"$dir/reseed.json" 2>"$dir/reseed.err"; then
		die "bench -mode reseed failed ($system): $(tail -n 2 "$dir/reseed.err"); logs in $dir"
	fi
	stop_all
	if [ "$system" = wiped ] && [ ! -s "$dir/wiped" ]; then
		die "the victim's data directory was never wiped; logs in $dir"
	fi
	local errs
	errs=$(num errors "$dir/writer.json")
	[ "${errs:-1}" = 0 ] || die "the writer had failed operations ($system): $(grep -o '"first_error":"[^"]*"' "$dir/writer.json" || cat "$dir/writer.err"); logs in $dir"
	local sent ms
	if [ "$system" = log ] && [ "$(sum_entries partial_resync "$dir/reseed.json")" != 0 ]; then
		sent=$(sum_entries partial_resync "$dir/reseed.json")
		ms=$(max_took partial_resync "$dir/reseed.json")
		if [ "$(sum_entries seeding_sent "$dir/reseed.json")" != 0 ]; then
			say "  ($system: a full re-seeding was sent too: $(grep -o '"seeding_sent":\[[^]]*\]' "$dir/reseed.json"))"
			sent=$((sent + $(sum_entries seeding_sent "$dir/reseed.json")))
		fi
	else
		sent=$(sum_entries seeding_sent "$dir/reseed.json")
		ms=$(max_took seeding_sent "$dir/reseed.json")
	fi
	local row
	row="$system $(num serving_s "$dir/reseed.json") $(num catch_up_s "$dir/reseed.json") $sent $ms $(sum_entries recovered "$dir/reseed.json") $(max_took recovered "$dir/reseed.json") $(num entries "$dir/reseed.json") $(num ops_per_sec "$dir/writer.json")"
	echo "$row" >>"$WORK/rows"
	say "  $row"
	if [ "$KEEP" = 1 ]; then
		rm -rf "$dir/data" "$dir"/server_* # the logs, not the data
	else
		rm -rf "$dir"
	fi
}

echo "catching up after an outage under load — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1); data on $(df -P "$WORK" | awk 'NR==2 {print $1}') ($(findmnt -n -o FSTYPE --target "$WORK" 2>/dev/null || echo '?'))"
echo "ftkv $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); not pinned; $ENTRIES entries of 100 B loaded, then kill -9 of server $VICTIM held down $OUTAGE; a writer at -c $LOAD_CONNS throughout; $REPS repetitions, medians"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
: >"$WORK/rows"
for rep in $(seq "$REPS"); do
	say "repetition $rep of $REPS"
	read -r -a order <<<"$SYSTEMS"
	if [ $((rep % 2)) = 0 ]; then
		for ((i = 0, j = ${#order[@]} - 1; i < j; i++, j--)); do
			t=${order[i]} order[i]=${order[j]} order[j]=$t
		done
	fi
	for system in "${order[@]}"; do run "$system"; done
done

echo
printf '  %-33s %13s %12s %14s %10s %12s %10s %12s %10s\n' "catch-up by" "kill->serving" "catch-up" "entries sent" "send" "replayed" "replay" "held" "writer/s"
for system in $SYSTEMS; do
	col() { awk -v s="$system" -v c="$1" '$1 == s {print $c}' "$WORK/rows" | median; }
	case $system in
	log) name="partial resync (fsync always)" ;;
	wiped) name="full re-seeding (disk lost)" ;;
	none) name="full re-seeding (-data-dir none)" ;;
	esac
	printf '  %-33s %12.2fs %11.2fs %14.0f %8.0fms %12.0f %8.0fms %12.0f %10.0f\n' "$name" "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)" "$(col 7)" "$(col 8)" "$(col 9)"
done
echo
echo "kill->serving includes the $OUTAGE outage; catch-up is from the first status showing the server past starting (its own log replayed) to serving;"
echo "entries sent: by both neighbours (partial resync: the writes it missed; full re-seeding: every entry); send: the longer of the two."
