package coord

import (
	"os"
	"path/filepath"
	"testing"

	"ftkv/timing"

	"github.com/rs/zerolog"
)

// TestRaftDirMadePrivate: the Raft directory keeps the cluster secret (in
// raft.db and in the snapshots hashicorp/raft writes 0755/0644). A -d that
// already existed open to other users stayed so (an attack: a local user
// read the secret from a snapshot and shut a server down with it), so
// opening it makes it and its snapshots directory the owner's only.
func TestRaftDirMadePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "raft")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	n, err := openRaft(Options{DataDir: dir, Cluster: &Cluster{}, Timing: timing.Default()}, &fsm{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	for _, p := range []string{dir, filepath.Join(dir, "snapshots")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v after opening: open to other users", p, fi.Mode().Perm())
		}
	}
}
