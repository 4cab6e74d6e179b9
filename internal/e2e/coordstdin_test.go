package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
)

// TestCoordBackgroundOfTerminal: `bin/coord … &` typed in an interactive
// shell starts the cluster and keeps it running in the background; it
// stops on kill. (It read its stdin, the terminal, from the background,
// and the terminal stopped it before it spawned a server: bash's jobs
// said "Stopped (tty input)", and clients met a refused connection: a
// new user's walkthrough.) The shell runs on a pseudo-terminal that
// script(1) opens (util-linux, in every Debian).
func TestCoordBackgroundOfTerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) not installed (util-linux): no pseudo-terminal to run an interactive shell on")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	t.Log("runs: an interactive bash on a pseudo-terminal (script)")
	bin := testcluster.Bin(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cluster.txt")
	if err := os.WriteFile(cfg, []byte("3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready.txt")
	// (A stopped job is continued by bash's kill, and then stops on
	// SIGTERM.)
	session := fmt.Sprintf(`cd %[1]s
%[2]s -c 0 -s 0 -C %[3]s -data-dir none -l coord.log 2>%[4]s &
for i in $(seq 150); do grep -q ready %[4]s && break; sleep 0.1; done
jobs %%1
cat %[4]s
kill -TERM %%1
wait %%1; echo "exit $?"
`, dir, filepath.Join(bin, "coord"), cfg, ready)
	if err := os.WriteFile(filepath.Join(dir, "session.sh"), []byte(session), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "-q", "-e", "-c", "bash --norc -i "+filepath.Join(dir, "session.sh"), "/dev/null")
	cmd.Env = append(os.Environ(), "PS1=$ ")
	out, err := cmd.CombinedOutput()
	t.Logf("the shell's session:\n%s", out)
	if err != nil {
		t.Fatalf("script: %v", err)
	}
	s := string(out)
	if strings.Contains(s, "Stopped") || !strings.Contains(s, "Running") {
		t.Errorf("the coordinator started in the background is not running (jobs above)")
	}
	if !strings.Contains(s, "3 servers ready; clients connect to") {
		t.Errorf("no ready line: the cluster did not start")
	}
	if !strings.Contains(s, "exit 0") {
		t.Errorf("the coordinator did not exit 0 on SIGTERM")
	}
}
