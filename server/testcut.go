package server

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// TestCutReplEnv names a file through which end-to-end tests cut
// replication links, to partition a primary from its secondary while both
// still reach the coordinator (no other fault a test can inject on
// loopback does that). Each line of the file is "<primary id> <secondary
// id> <secondary incarnation>": while it is there, that primary neither
// keeps nor opens a replication link to that incarnation. Unset (always,
// outside tests), nothing is read.
const TestCutReplEnv = "FTKV_TEST_CUT_REPL"

// testCutFile is the file TestCutReplEnv names, read once at start.
var testCutFile = os.Getenv(TestCutReplEnv)

var errTestCut = errors.New("replication link cut by the test (" + TestCutReplEnv + ")")

// replCut reports whether the test has cut the link from primary server
// id to sec.
func replCut(id uint32, sec target) bool {
	if sec.addr == "" {
		return false
	}
	for _, f := range testLines(testCutFile) {
		if len(f) != 3 {
			continue
		}
		from, err1 := strconv.ParseUint(f[0], 10, 32)
		to, err2 := strconv.ParseUint(f[1], 10, 32)
		inc, err3 := strconv.ParseUint(f[2], 10, 64)
		if err1 == nil && err2 == nil && err3 == nil && uint32(from) == id && uint32(to) == sec.id && inc == sec.inc {
			return true
		}
	}
	return false
}

// testLines is the fields of each line of a test hook's file (none when
// name is "" or the file cannot be read).
func testLines(name string) [][]string {
	if name == "" {
		return nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil
	}
	var out [][]string
	for _, line := range strings.Split(string(b), "\n") {
		out = append(out, strings.Fields(line))
	}
	return out
}

// TestStartDelayEnv names a file through which end-to-end tests make a
// server slow to report, as one rebuilding its tables from a large log
// is, and scripts/bench-resync.sh holds a respawned server down for an
// outage: each line "<server id> <duration>"; a server listed there
// waits that long before it recovers its log (and so before it first
// reports), with or without a data directory. Unset (always, outside
// tests and benchmarks), nothing is read.
const TestStartDelayEnv = "FTKV_TEST_START_DELAY"

// testStartDelay is how long the test makes server id wait at its start.
func testStartDelay(id uint32) time.Duration {
	for _, f := range testLines(os.Getenv(TestStartDelayEnv)) {
		if len(f) != 2 {
			continue
		}
		sid, err1 := strconv.ParseUint(f[0], 10, 32)
		d, err2 := time.ParseDuration(f[1])
		if err1 == nil && err2 == nil && uint32(sid) == id {
			return d
		}
	}
	return 0
}

// TestDropViewEnv names a file through which end-to-end tests lose the
// views the coordinator pushes to a server (its control port blocked,
// say, while its heartbeats still flow): each line "<server id>"; while
// it is there, that server neither applies nor answers a SETVIEW. Unset
// (always, outside tests), nothing is read.
const TestDropViewEnv = "FTKV_TEST_DROP_VIEW"

var testDropViewFile = os.Getenv(TestDropViewEnv)

// viewDropped reports whether the test makes server id lose its SETVIEWs.
func viewDropped(id uint32) bool {
	for _, f := range testLines(testDropViewFile) {
		if len(f) == 1 {
			if sid, err := strconv.ParseUint(f[0], 10, 32); err == nil && uint32(sid) == id {
				return true
			}
		}
	}
	return false
}
