package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
)

// TestFailedRespawnIsLoggedAsFailed: a respawned server that exits before
// it reports (its fixed port taken by another program, a binary that
// refuses to start; here a wrapper that exits 1) is a failed respawn. The
// coordinator's log must say so ("respawn failed", with the exit status)
// and never "server respawned" for that incarnation: a black-box run saw
// "server process exited" followed by "server respawned" for each of 7
// failed attempts in a row, and no "respawn failed" at all, while the
// server stayed down.
func TestFailedRespawnIsLoggedAsFailed(t *testing.T) {
	dir := t.TempDir()
	block := filepath.Join(dir, "nostart")
	wrapper := filepath.Join(dir, "server-wrapper.sh")
	script := fmt.Sprintf("#!/bin/sh\nif [ -e %q ]; then echo 'wrapper: refusing to start' >&2; exit 1; fi\nexec %q \"$@\"\n",
		block, filepath.Join(testcluster.Bin(t), "server"))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, testcluster.Options{N: 3, Args: []string{"-server-bin", wrapper}})
	c.WaitRecovered(t, 10*time.Second)

	if err := os.WriteFile(block, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	v := c.KillServer(t, 1)
	// Wait for at least two failed respawns of server 1 (the first
	// respawn comes at once, the next after a back-off).
	exited := regexp.MustCompile(`"node":1,"inc":(\d+),"pid":\d+[^\n]*"message":"server process exited"`)
	deadline := time.Now().Add(15 * time.Second)
	var failedIncs []string
	for {
		failedIncs = nil
		for _, m := range exited.FindAllStringSubmatch(c.Log(), -1) {
			failedIncs = append(failedIncs, m[1])
		}
		if len(failedIncs) >= 3 { // the killed one and two failed respawns
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server 1 exited %d times within 15 s, want 3:\n%s", len(failedIncs), grepLines(c.Log(), `"node":1,`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // (the lines that follow an exit)
	log := c.Log()
	for _, inc := range failedIncs[1:] {
		if regexp.MustCompile(fmt.Sprintf(`"node":1,"inc":%s,[^\n]*"message":"server respawned"`, inc)).MatchString(log) {
			t.Errorf("incarnation %s of server 1 exited during its start, yet the log says \"server respawned\":\n%s",
				inc, grepLines(log, `"node":1,`))
		}
		if !regexp.MustCompile(fmt.Sprintf(`"error":"[^"]*exit[^"]*"[^\n]*"node":1[^\n]*"inc":%s[^\n]*"message":"respawn failed"`, inc)).MatchString(log) {
			t.Errorf("incarnation %s of server 1 exited during its start: no \"respawn failed\" line with its exit status:\n%s",
				inc, grepLines(log, `"node":1,`))
		}
	}

	// Once the server can start again it is respawned, and says so.
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	c.WaitRecovered(t, 30*time.Second, v)
	if !strings.Contains(c.Log(), `"message":"server respawned"`) {
		t.Errorf("the successful respawn is not logged:\n%s", grepLines(c.Log(), `"node":1,`))
	}
}
