package e2e

import (
	"bytes"
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
// bytes flipped; then a few pages zeroed whole). Starting the coordinator
// again must either work or end with one clear line naming the damage:
// bbolt panicked with a stack trace ("invalid page type", "index out of
// range") on some flipped pages, faulted on some zeroed ones, and looped
// without end (growing by gigabytes) on others: a zeroed page points back
// at page 0.
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
	type damage struct {
		page int
		zero bool
	}
	var damages []damage
	for off := 2 * 4096; off+64 <= len(orig); off += 4096 { // (pages 0 and 1: bbolt's two meta pages, checksummed)
		damages = append(damages, damage{page: off / 4096})
	}
	for page := 2; page <= 9 && (page+1)*4096 <= len(orig); page++ {
		damages = append(damages, damage{page: page, zero: true})
	}
	for _, d := range damages {
		off := d.page * 4096
		b := bytes.Clone(orig)
		for i := off; i < off+64; i++ {
			b[i] ^= 0x5a
		}
		if d.zero {
			clear(b[off : off+4096])
		}
		if err := os.WriteFile(db, b, 0o600); err != nil {
			t.Fatal(err)
		}
		code, stderr := runCoordOnce(t, c, "-C", c.ConfigPath, "-c", "0", "-s", "0", "-l", filepath.Join(c.Dir, "damaged.log"))
		if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
			t.Errorf("page %d damaged (zeroed %v): exit %d with a stack trace:\n%.600s", d.page, d.zero, code, stderr)
			continue
		}
		if code != 0 {
			checkOneLine(t, "damaged page", stderr)
		}
		if strings.Contains(stderr, "damaged") {
			named++
		}
		t.Logf("page %d damaged (zeroed %v): exit %d, %s", d.page, d.zero, code, strings.TrimSpace(lastLines(stderr, 1)))
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
	return runCoordWith(t, c, c.Dir, strings.NewReader(""), 30*time.Second, args...)
}

// TestCoordRaftDirOfAnotherMember: coordinator 1 killed and its Raft
// directory replaced by a copy of coordinator 0's
// (a restore from the wrong backup). Started as -id 1 it would carry 0's
// votes and log as its own (two members voting as one can elect two
// leaders in one term): it must refuse with one line naming the
// directory's member and exit 2, a config that does not match its data.
// Its own directory whose raft.db is gone (its votes lost) is refused too.
func TestCoordRaftDirOfAnotherMember(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Coordinators: 3})
	c.WaitRecovered(t, recoverTimeout)
	c.KillCoordK(t, 1)
	d0, d1 := filepath.Join(c.Dir, "ftkv-coord-0"), filepath.Join(c.Dir, "ftkv-coord-1")
	if err := os.RemoveAll(d1); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", d0, d1).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	code, stderr := runCoordOnce(t, c, "-C", c.ConfigPath, "-id", "1", "-d", d1, "-l", filepath.Join(c.Dir, "copy.log"))
	t.Logf("-id 1 on a copy of coordinator 0's directory: exit %d: %s", code, stderr)
	if code != 2 || !strings.Contains(stderr, "coordinator 0") {
		t.Errorf("exit %d, stderr %q; want 2 and a line naming coordinator 0's directory", code, stderr)
	}
	checkOneLine(t, "copied directory", stderr)

	// Its own claim, but its store gone: its votes are lost.
	if err := os.WriteFile(filepath.Join(d1, "MEMBER"), []byte("ftkv coordinator 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(d1, "raft.db")); err != nil {
		t.Fatal(err)
	}
	code, stderr = runCoordOnce(t, c, "-C", c.ConfigPath, "-id", "1", "-d", d1, "-l", filepath.Join(c.Dir, "copy.log"))
	t.Logf("-id 1 on its directory without raft.db: exit %d: %s", code, stderr)
	if code == 0 || !strings.Contains(stderr, "missing or empty") {
		t.Errorf("exit %d, stderr %q; want a failure saying the store is missing", code, stderr)
	}
	checkOneLine(t, "store missing", stderr)
}
