package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
)

// TestCoordDamagedRaftStore: the coordinator's Raft store (ftkv-coord/
// raft.db) of a cluster that ran, damaged one 4 KiB page at a time (64
// bytes flipped). Starting the coordinator again must either work or end
// with one clear line naming the damage: bbolt panicked with a stack trace
// ("invalid page type", "index out of range") on some pages.
func TestCoordDamagedRaftStore(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	c.WaitRecovered(t, 10*time.Second)
	c.KillEverything(t)
	db := filepath.Join(c.Dir, "ftkv-coord", "raft.db")
	orig, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for off := 2 * 4096; off+64 <= len(orig); off += 4096 { // (pages 0 and 1: bbolt's two meta pages, checksummed)
		b := bytes.Clone(orig)
		for i := off; i < off+64; i++ {
			b[i] ^= 0x5a
		}
		if err := os.WriteFile(db, b, 0o600); err != nil {
			t.Fatal(err)
		}
		code, stderr := runCoordOnce(t, c, "-C", c.ConfigPath, "-c", "0", "-s", "0", "-l", filepath.Join(c.Dir, "damaged.log"))
		if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
			t.Errorf("page %d damaged: exit %d with a stack trace:\n%.600s", off/4096, code, stderr)
			continue
		}
		if code != 0 {
			checkOneLine(t, "damaged page", stderr)
		}
		if strings.Contains(stderr, "damaged") {
			named++
		}
		t.Logf("page %d damaged: exit %d, %s", off/4096, code, strings.TrimSpace(lastLines(stderr, 1)))
	}
	if named == 0 {
		t.Errorf("no damaged page was named as such")
	}
}

// runCoordOnce runs bin/coord in c's directory with stdin at its end (a
// start that succeeds stops the cluster in order at once) and returns
// its exit status and stderr.
func runCoordOnce(t *testing.T, c *testcluster.Cluster, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, "coord"), args...)
	cmd.Dir = c.Dir
	cmd.Stdin = strings.NewReader("")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("coord %q still running after 30s (killed); stderr:\n%s", args, errb.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), errb.String()
	}
	if err != nil {
		t.Fatalf("coord %q: %v", args, err)
	}
	return 0, errb.String()
}
