#!/usr/bin/env bash
# Runs a subset of the existing end-to-end suites with TLS on every link
# and client authentication on (FTKV_TEST_SECURE=1: the test harness gives
# every cluster certificates and an admin user, and every client it hands
# out speaks TLS and logs in): failover, linearizability and chaos checked
# with porcupine (the short form), exactly-once appends, a coordinator
# kill, a group of coordinators, and remote spawning over ssh on namespace
# hosts (skipped with a line without root; FTKV_REQUIRE_NETNS=1 fails
# instead); with FTKV_CHAOS_DURATION set also the chaos of a group of
# coordinators on namespace hosts (~40s for 20s). Under the race detector unless FTKV_SECURE_RACE=0. Prints one
# line per test and the total time; bounded by go test's -timeout.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
tests='TestFailover|TestTwoFailures$|TestStopPrimary$|TestRepeatedCrashes$'
tests+='|TestLinearizable$|TestChaos$|TestChaosCoordGroup$|TestAppendExactlyOnce$'
tests+='|TestCoordinatorKill$|TestCoordGroupLeaderKill$|TestCoordGroupLeaderCutFromServers$|TestRemote|TestChaosCoordGroupNetns$'
race=(-race)
[ "${FTKV_SECURE_RACE:-1}" = 0 ] && race=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
rc=0
FTKV_TEST_SECURE=1 go test "${race[@]}" -count=1 -timeout 20m -v -run "$tests" ./internal/e2e >"$out" 2>&1 || rc=$?
# One line per test (top-level only), then the verdict.
grep -E '^(--- (PASS|FAIL|SKIP)|    [a-z_]+\.go:[0-9]+: SKIP)' "$out" || true
if [ "$rc" -ne 0 ]; then
  echo "test-secure: FAILED (go test exit $rc); output of each failed test (at most 120 lines each):"
  # (-v interleaves nothing here: the tests run one after another.)
  for name in $(sed -n 's/^--- FAIL: \([A-Za-z0-9_]*\).*/\1/p' "$out"); do
    awk -v n="$name" '$0 == "=== RUN   " n {on = 1} on {print} on && index($0, "--- FAIL: " n " ") == 1 {exit}' "$out" |
      grep -vE '^(=== (RUN|PAUSE|CONT)|    --- PASS)' | tail -120
  done
  echo "test-secure: the end of go test's output:"
  grep -vE '^(=== (RUN|PAUSE|CONT)|    --- PASS)' "$out" | tail -30
fi
echo "test-secure: $(grep -cE '^--- PASS' "$out") passed, $(grep -cE '^--- FAIL' "$out") failed, $(grep -cE '^--- SKIP' "$out") skipped in $(($(date +%s) - start))s"
exit "$rc"
