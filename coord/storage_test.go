package coord

import (
	"strings"
	"testing"
)

func TestStorageLines(t *testing.T) {
	c, err := ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 0 0\ndata_dir /var/lib/ftkv\nfsync everysec\nfsync_secondary yes\nsnapshot_bytes 1048576\n"))
	if err != nil {
		t.Fatal(err)
	}
	st := c.Storage.override(Storage{})
	got := strings.Join(st.Args(3), " ")
	if want := "-data-dir /var/lib/ftkv/server_3 -fsync everysec -fsync-secondary -snapshot-bytes 1048576"; got != want {
		t.Fatalf("server flags %q, want %q", got, want)
	}
	// A flag wins over the line.
	if got := strings.Join(c.Storage.override(Storage{Fsync: "no"}).Args(0), " "); !strings.Contains(got, "-fsync no") {
		t.Fatalf("flag did not override the line: %q", got)
	}
	// Defaults: a log under ftkv-data, fsync always; "none" turns it off.
	if got := strings.Join(Storage{}.override(Storage{}).Args(1), " "); got != "-data-dir ftkv-data/server_1 -fsync always" {
		t.Fatalf("default server flags %q", got)
	}
	if got := (Storage{DataDir: NoDataDir}).override(Storage{}).Args(1); got != nil {
		t.Fatalf("data_dir none gave flags %q", got)
	}
	// snapshot_bytes takes the client limits' suffixes (it took digits
	// only: a black-box tester), and a negative number for never.
	for val, want := range map[string]int64{"300k": 300 << 10, "64MiB": 64 << 20, "1gb": 1 << 30, "-1": -1, "4096": 4096} {
		c, err := ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 0 0\nsnapshot_bytes "+val+"\n"))
		if err != nil || c.Storage.SnapshotBytes != want {
			t.Errorf("snapshot_bytes %s: %d, %v; want %d", val, c.Storage.SnapshotBytes, err, want)
		}
	}
	for _, bad := range []string{"fsync sometimes", "fsync_secondary maybe", "snapshot_bytes lots", "snapshot_bytes -1k", "snapshot_bytes 5x", "data_dir /tmp/$HOME"} {
		_, err := ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 0 0\n"+bad+"\n"))
		if err == nil || !strings.HasPrefix(err.Error(), "c.txt:3: ") {
			t.Errorf("%q: error %v, want one naming c.txt:3", bad, err)
		}
	}
	if err := (Storage{Fsync: "sometimes"}).Validate(); err == nil || !strings.Contains(err.Error(), "-fsync") {
		t.Errorf("bad -fsync flag: %v", err)
	}
}

// TestSchedLine: the sched line reaches the servers as -sched, the flag
// wins over it, and neither set passes nothing (the server's default).
func TestSchedLine(t *testing.T) {
	c, err := ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 0 0\nsched normal\n"))
	if err != nil {
		t.Fatal(err)
	}
	args := func(line, flag string) string {
		co := &Coordinator{opts: Options{Cluster: &Cluster{Sched: line}, SchedFlag: flag}}
		return strings.Join(serverArgs(SpawnSpec{ID: 0, Sched: co.schedPolicy()}, "127.0.0.1"), " ")
	}
	if got := args(c.Sched, ""); !strings.Contains(got, "-sched normal") {
		t.Errorf("sched normal line: server flags %q", got)
	}
	if got := args("normal", "batch"); !strings.Contains(got, "-sched batch") || strings.Contains(got, "normal") {
		t.Errorf("-sched batch over the line: server flags %q", got)
	}
	if got := args("", ""); strings.Contains(got, "-sched") {
		t.Errorf("no sched line or flag: server flags %q, want no -sched", got)
	}
	_, err = ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 0 0\nsched fifo\n"))
	if err == nil || err.Error() != `c.txt:3: sched must be batch or normal, got "fifo"` {
		t.Errorf("sched fifo: %v", err)
	}
	if err := (&Options{SchedFlag: "idle"}).Validate(); err == nil || !strings.HasPrefix(err.Error(), "-sched ") {
		t.Errorf("-sched idle: %v", err)
	}
}
