package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftkv/internal/testkit/nethost"
	"ftkv/internal/testkit/testcluster"
)

// slowSSH puts an ssh client in a new directory (to go first in the
// coordinator's PATH) that runs the real one and, while the file "slow"
// in that directory exists, holds the answer of a server's start script
// for hold before it passes it on, after creating "started". It returns
// the directory.
func slowSSH(t *testing.T, hold time.Duration) string {
	t.Helper()
	real, err := exec.LookPath("ssh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
out=$(%s "$@"); rc=$?
case "$*" in *ftkv-pid*) if [ -e %s/slow ]; then touch %s/started; sleep %g; fi;; esac
printf '%%s\n' "$out"
exit $rc
`, real, dir, dir, hold.Seconds())
	if err := os.WriteFile(filepath.Join(dir, "ssh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// serversOn lists the bin/server processes of server id on host i.
func serversOn(h *nethost.Hosts, i, id int) []int {
	var out []int
	for _, pid := range h.PIDs(i) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(b), "\x00")
		if len(args) >= 3 && filepath.Base(args[0]) == "server" && args[1] == "-id" && args[2] == fmt.Sprint(id) {
			out = append(out, pid)
		}
	}
	return out
}

// TestRemoteShutdownDuringRespawn: the coordinator is stopped (ctrl+d)
// while it respawns a server over ssh, after the host started the server
// and before the pid came back. The stop did not know that process; the
// coordinator exited, and the server ran on, on its host, with nobody to
// stop it. Now the stop waits for the spawn under way, which kills the
// incarnation it started.
func TestRemoteShutdownDuringRespawn(t *testing.T) {
	const n = 3
	h := nethost.Up(t, n)
	const hold = 3 * time.Second
	dir := slowSSH(t, hold)
	c := startRemote(t, h, n, "", testcluster.Options{
		Wrap: []string{"env", "PATH=" + dir + ":" + os.Getenv("PATH")},
	})
	c.WaitRecovered(t, 30*time.Second)
	must(t, os.WriteFile(filepath.Join(dir, "slow"), nil, 0o644))
	const victim = 1
	v := remoteVictim(t, c, h, victim)
	testcluster.Eventually(t, remoteRecover, "the respawn's start script ran", func() bool {
		_, err := os.Stat(filepath.Join(dir, "started"))
		return err == nil
	})
	if got := serversOn(h, victim+1, victim); len(got) != 1 || got[0] == v.PID {
		t.Fatalf("server %d on host %d: pids %v, want one new incarnation (killed: %d)", victim, victim+1, got, v.PID)
	}
	start := time.Now()
	if err := c.Shutdown(30 * time.Second); err != nil {
		t.Errorf("coordinator exit: %v", err)
	}
	t.Logf("coordinator exited %s after ctrl+d", time.Since(start).Round(time.Millisecond))
	// Past the hold: a spawn the coordinator left behind has finished.
	time.Sleep(hold + time.Second)
	for i := 1; i <= n; i++ {
		for id := 0; id < n; id++ {
			if pids := serversOn(h, i, id); len(pids) > 0 {
				t.Errorf("server %d still runs on host %d (pids %v) after the coordinator exited", id, i, pids)
			}
		}
	}
	if !t.Failed() {
		t.Logf("ran: ctrl+d during a respawn over ssh left no server running")
	}
}
