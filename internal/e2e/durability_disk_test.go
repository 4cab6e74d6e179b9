package e2e

// End-to-end tests of the servers' write-ahead logs against the disk: a
// data_dir that fills up, and a log whose tail is torn or damaged when the
// cluster starts again on it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
	"ftkv/wire"
)

// mountTmpfs mounts a tmpfs of size (e.g. "2m") on a fresh directory and
// unmounts it when the test ends (after the cluster, whose cleanup is
// registered later and so runs first). It skips the test when not root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	return mountTmpfsAt(t, filepath.Join(t.TempDir(), "disk"), size)
}

// mountTmpfsAt is mountTmpfs on dir, which it makes.
func mountTmpfsAt(t *testing.T, dir, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (CI runs as root): skipped")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs even as root (%v: %s): skipped", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			// A process of the cluster may still hold a file open.
			t.Logf("umount %s: %v: %s; detaching it lazily", dir, err, strings.TrimSpace(string(out)))
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// freeBytes is the space left on the file system of dir.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return int64(st.Bavail) * st.Bsize
}

// keepFull appends to a filler file on dir whenever the file system has
// room, until stop is closed: space a server frees (recovery truncating
// the torn batch a failed write left) is taken again at once, so the disk
// stays full while the test checks that writes are refused.
func keepFull(t *testing.T, dir string, stop <-chan struct{}) (done <-chan struct{}) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "filler"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("filler: %v", err)
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		defer f.Close()
		page := make([]byte, 4096)
		for {
			for {
				if _, err := f.Write(page); err != nil {
					break // ENOSPC: full again
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return ch
}

// rawPut sends one Put of value to shard's primary as a hand-made frame
// and returns its answer: the server's own words, which the client turns
// into a retry and a generic "unavailable".
func rawPut(st *client.ClusterStatus, shard int, key string, value []byte) (wire.Frame, error) {
	p := st.Shards[shard].Primary
	var addr string
	for _, s := range st.Servers {
		if s.ID == p {
			addr = s.Addr
		}
	}
	if addr == "" {
		return wire.Frame{}, fmt.Errorf("shard %d has no primary (%d) in the status", shard, p)
	}
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return wire.Frame{}, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	req := wire.Append(nil, &wire.Frame{Op: wire.OpPut, ID: 1, Epoch: st.Epoch, Key: []byte(key), Value: value})
	if _, err := nc.Write(req); err != nil {
		return wire.Frame{}, err
	}
	return readFrame(bufio.NewReader(nc))
}

// exitsExplained checks that every server exit the coordinator logged
// followed a decision of the coordinator to fail that server (a failover
// view naming it, or a re-seeding it gave up on), and that no process
// wrote anything but log records (a panic, a fatal error, an exit
// message): a server that exits on its own because its disk is full has
// crashed. It returns a summary of the exits.
func exitsExplained(t *testing.T, log string, killed map[int]bool) string {
	t.Helper()
	failing := map[int]bool{} // nodes the coordinator decided to fail
	exits := map[int]int{}
	for _, line := range strings.Split(log, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r struct {
			Role, Message, Why string
			Node, PID          *int
			Down               []int
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Errorf("a process wrote something other than a log record (crash?): %.300s", line)
			continue
		}
		switch {
		case r.Role == "coord" && r.Message == "view published":
			for _, id := range r.Down {
				failing[id] = true
			}
		case r.Role == "coord" && r.Message == "re-seeding failed" && r.Node != nil:
			failing[*r.Node] = true
		case r.Role == "coord" && r.Message == "server process exited" && r.Node != nil:
			if !failing[*r.Node] && (r.PID == nil || !killed[*r.PID]) {
				t.Errorf("server %d exited without the coordinator failing it first (crashed?): %s", *r.Node, line)
			}
			failing[*r.Node] = false
			exits[*r.Node]++
		}
	}
	return fmt.Sprint(exits)
}

// brokenLogs returns the servers whose status shows a disk error (their
// log failed): what the operator looks for.
func brokenLogs(t *testing.T, c *testcluster.Cluster) []int {
	t.Helper()
	var out []int
	for _, s := range c.Status(t).Servers {
		if s.DiskError {
			out = append(out, s.ID)
		}
	}
	return out
}

// TestDiskFullRefusesWrites fills the servers' data_dir (one 2 MiB tmpfs
// for the three) under load and checks that no server crashes, that every
// write acknowledged before is still readable, that writes are refused
// once the disk is full, and with what words.
//
// What happens, and what the operator must do: a server whose log fails
// to write logs "write-ahead log failed: refusing writes and no longer
// acknowledging replication" with the system's error (no space left on
// device) and from then on answers every write UNAVAILABLE "disk error:
// write not durable; refused" (the Go client retries that until its
// context ends, then returns the deadline with "shard unavailable" as the
// last error, or STALE_EPOCH / WRONG_SERVER from a primary that could not
// apply a view because its secondary's log failed). Its error is sticky: freeing space does not make it take
// writes again. As a secondary it stops acknowledging, so the coordinator
// fails it and respawns it; the new incarnation recovers its log
// (truncating the batch the failed write tore), is re-seeded, and fails
// again while the disk is still full: a respawn every few seconds. As a
// primary it is not failed while it still heartbeats: its shard refuses
// writes (reads are served), and the shard it is the secondary of cannot
// link to it again ("secondary refused link: UNAVAILABLE disk error"),
// until the server is restarted. So the operator frees space (or grows
// the volume), then restarts every server whose status shows disk_error
// (kill its pid: the coordinator fails it over to its copy and respawns
// it on the same data directory), or stops and starts the whole cluster
// (the logs are recovered on start).
func TestDiskFullRefusesWrites(t *testing.T) {
	disk := mountTmpfs(t, "2m")
	t.Logf("running as root: the servers' data_dir is a 2 MiB tmpfs at %s", disk)
	const n = 3
	cfg := fmt.Sprintf("%d\n%sdata_dir %s\nfsync always\n", n, strings.Repeat("localhost 0 0 0\n", n), disk)
	c := testcluster.Start(t, testcluster.Options{Config: cfg})
	cl := c.Client()
	before := c.Status(t)

	const opTimeout = 5 * time.Second
	l := newLedger("full", opTimeout)
	t.Cleanup(l.cancel)

	// Load until the first write is refused: the disk is full.
	value := strings.Repeat("v", 1024)
	var (
		mu       sync.Mutex
		firstErr error
	)
	full := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-full:
					return
				default:
				}
				k := fmt.Sprintf("full/%d/%d", g, i)
				if err := l.put(cl, k, k+value); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						close(full)
					}
					mu.Unlock()
					return
				}
			}
		}(g)
	}
	select {
	case <-full:
	case <-time.After(2 * time.Minute):
		l.cancel()
		t.Fatalf("no write refused after 2 min (%d acknowledged, %d bytes free)", l.Acked(), freeBytes(t, disk))
	}
	wg.Wait()
	acked := l.Acked()
	t.Logf("first refused write after %d acknowledged, %d bytes free: %v", acked, freeBytes(t, disk), firstErr)
	if acked < 100 {
		t.Fatalf("a write was refused after only %d acknowledged (2 MiB hold ~900): %v", acked, firstErr)
	}

	// Keep the disk full and write to every shard: values larger than a
	// page, which no slack of a half-written page can hold.
	stopFill := make(chan struct{})
	fillDone := keepFull(t, disk, stopFill)
	big := strings.Repeat("b", 16<<10)
	lf := newLedger("full/after", 2*time.Second)
	var clientErrs []string
	diskWords := 0
	for round := 0; round < 2; round++ {
		for sh := 0; sh < n; sh++ {
			k := keysOnShard(n, sh, round+1, "full/after")[round]
			err := lf.put(cl, k, big)
			if err == nil {
				t.Errorf("Put %q (shard %d, 16 KiB) on a full disk returned nil", k, sh)
				continue
			}
			clientErrs = append(clientErrs, err.Error())
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, client.ErrUnavailable) {
				t.Errorf("Put %q on a full disk: %v, want unavailable (the deadline)", k, err)
			}
			// The primary's own answer, asked again while the view
			// moves (a failover in progress answers WRONG_SERVER).
			for try := 0; try < 4; try++ {
				st := c.Status(t)
				p := st.Shards[sh].Primary
				f, err := rawPut(st, sh, keysOnShard(n, sh, round+1, "full/raw")[round], []byte(big))
				if err == nil && f.Status == wire.StatusOK {
					t.Errorf("shard %d: raw Put to its primary %d on a full disk answered OK", sh, p)
					break
				}
				if err == nil && f.Status == wire.StatusUnavailable {
					if strings.Contains(string(f.Value), "disk error") {
						diskWords++
					} else {
						t.Logf("shard %d: raw Put to its primary %d: UNAVAILABLE %q", sh, p, f.Value)
					}
					break
				}
				t.Logf("shard %d: raw Put to its primary %d: %s %q, %v; asking again", sh, p, f.Status, f.Value, err)
				time.Sleep(time.Second)
			}
		}
	}
	if len(clientErrs) > 0 {
		t.Logf("client errors on a full disk, e.g. %q", clientErrs[0])
	}
	if diskWords == 0 {
		t.Errorf("no primary answered a write on a full disk with UNAVAILABLE %q", "disk error: write not durable; refused")
	}
	if !strings.Contains(c.Log(), "no space left on device") {
		t.Errorf("no server logged the system's error (no space left on device)")
	}
	if len(brokenLogs(t, c)) == 0 {
		t.Errorf("no server's status shows disk_error on a full disk:\n%s", testcluster.StatusJSON(c.Status(t)))
	}

	// Every acknowledged write is still readable while the disk is full.
	l.verify(t, cl, nil)
	lf.verify(t, cl, nil)
	close(stopFill)
	<-fillDone

	// Free space: the filler goes and the volume grows.
	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "remount,size=64m", disk).CombinedOutput(); err != nil {
		t.Fatalf("remount %s bigger: %v: %s", disk, err, strings.TrimSpace(string(out)))
	}
	t.Logf("space freed: %d bytes free", freeBytes(t, disk))
	refusing := func(tag string) []int {
		var out []int
		for sh := 0; sh < n; sh++ {
			k := keysOnShard(n, sh, 1, "full/freed/"+tag)[0]
			if err := l.put(cl, k, "after"); err != nil {
				out = append(out, sh)
			}
		}
		return out
	}
	var still []int
	killed := map[int]bool{} // pids of servers this test killed
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		if still = refusing(fmt.Sprint(i)); len(still) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(still) == 0 {
		t.Logf("once space was freed every shard took writes again by itself")
	} else {
		// The operator's part: restart each server whose log failed,
		// one at a time, letting the cluster recover in between.
		t.Logf("20s after space was freed shards %v still refuse writes; restarting the servers whose log failed", still)
		for _, id := range brokenLogs(t, c) {
			v := c.KillServer(t, id)
			killed[v.PID] = true
			t.Logf("restarted server %d (pid %d, incarnation %d): its log had failed", id, v.PID, v.Incarnation)
			c.WaitRecovered(t, 60*time.Second, v)
		}
		deadline = time.Now().Add(30 * time.Second)
		for i := 0; ; i++ {
			if still = refusing(fmt.Sprint("r", i)); len(still) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("30s after the servers whose log failed were restarted shards %v still refuse writes", still)
			}
		}
		t.Logf("after restarting them every shard takes writes again")
	}
	l.verify(t, cl, nil)

	after := c.Status(t)
	for _, s := range before.Servers {
		now := statusServer(after, s.ID)
		t.Logf("server %d: pid %d -> %d (incarnation %d -> %d), %s", s.ID, s.PID, now.PID, s.Incarnation, now.Incarnation, now.State)
	}
	t.Logf("server exits, each after the coordinator failed it: %s", exitsExplained(t, c.Log(), killed))
}

// statusServer is server id's entry in st (zero if absent).
func statusServer(st *client.ClusterStatus, id int) client.ServerStatus {
	for _, s := range st.Servers {
		if s.ID == id {
			return s
		}
	}
	return client.ServerStatus{}
}

// walBatch is one batch of a write-ahead log segment: its offset and its
// payload's length (internal/wal: a 16-byte header of payload length,
// CRC-32C and sequence, then the payload).
type walBatch struct{ off, n int }

// walBatches splits a segment's bytes into batches; it fails the test if
// the segment does not end on a batch boundary (it was written whole).
func walBatches(t *testing.T, data []byte) []walBatch {
	t.Helper()
	const header = 16
	var out []walBatch
	for off := 0; off < len(data); {
		if len(data)-off < header {
			t.Fatalf("segment ends in a batch header at offset %d", off)
		}
		if bytes.Equal(data[off:off+header], make([]byte, header)) {
			break // a preallocated segment's zeros: nothing written there
		}
		n := int(binary.BigEndian.Uint32(data[off:]))
		if n > len(data)-off-header {
			t.Fatalf("segment ends in a batch of %d bytes at offset %d", n, off)
		}
		out = append(out, walBatch{off, n})
		off += header + n
	}
	return out
}

// newestSegment returns the path of the newest segment of dir that holds
// at least one batch.
func newestSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(segs) // fixed-width hex names sort by number
	for i := len(segs) - 1; i >= 0; i-- {
		if fi, err := os.Stat(segs[i]); err == nil && fi.Size() > 0 {
			return segs[i]
		}
	}
	t.Fatalf("no segment with data in %s (found %v)", dir, segs)
	return ""
}

// logRecovered is a server's "log recovered" record.
type logRecovered struct {
	Node      int    `json:"node"`
	Inc       uint64 `json:"inc"`
	Damage    string `json:"damage"`
	Truncated int64  `json:"truncated_bytes"`
	Removed   int    `json:"removed_segments"`
	Message   string `json:"message"`
}

// recoveries returns the "log recovered" records of log.
func recoveries(log string) []logRecovered {
	var out []logRecovered
	for _, line := range strings.Split(log, "\n") {
		var r logRecovered
		if json.Unmarshal([]byte(line), &r) == nil && r.Message == "log recovered" {
			out = append(out, r)
		}
	}
	return out
}

// TestTornLogTailRecovered (issue 13, 1e): a cluster writes keys, stops
// (in order, or every process killed), and the newest log segment of
// server 0 is damaged at its end: its last bytes cut off (a write torn by
// a crash), garbage appended, or a byte flipped in its last batch. The
// last batch holds the last write to shard 0, whose primary server 0 is:
// its copy loses that write, the secondary's copy (server 1) has it. The
// cluster started again on the same directory must come up, server 0
// must log what it truncated ("damage" in "log recovered"), every
// acknowledged key must be readable with its value, and still be once
// server 1 is killed (server 0's copy was repaired from server 1's).
func TestTornLogTailRecovered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kill   bool // kill -9 every process, else a clean shutdown
		damage string
		reason string // what the recovery must say
	}{
		{"shutdown/truncate-tail", false, "truncate", "torn batch"},
		{"shutdown/garbage-tail", false, "garbage", "torn batch"},
		{"kill/flip-last-batch", true, "flip", "batch checksum mismatch"},
		{"kill/truncate-tail", true, "truncate", "torn batch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 3
			c := testcluster.Start(t, testcluster.Options{N: n})
			cl := c.Client()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			want := map[string]string{}
			put := func(k string) {
				v := fmt.Sprintf("value of %s", k)
				if err := cl.Put(ctx, k, []byte(v)); err != nil {
					t.Fatalf("Put %q: %v", k, err)
				}
				want[k] = v
			}
			for _, k := range keysOnShards(n, 30, "torn") {
				put(k)
			}
			// The last writes go to shard 0 one at a time: each is a
			// batch of its own at the end of server 0's log.
			last := keysOnShard(n, 0, 5, "torn-last")
			for _, k := range last {
				put(k)
			}
			lastKey := last[len(last)-1]
			cl.Close()

			if tc.kill {
				for _, v := range c.KillEverything(t) {
					testcluster.Eventually(t, 10*time.Second, fmt.Sprintf("server %d (pid %d) gone", v.ID, v.PID), func() bool {
						return testcluster.PIDGone(v.PID) || !c.Owns(v.PID)
					})
				}
			} else if err := c.Shutdown(20 * time.Second); err != nil {
				t.Fatalf("clean shutdown: %v", err)
			}

			seg := newestSegment(t, filepath.Join(c.Dir, "ftkv-data", "server_0", "wal"))
			data, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			batches := walBatches(t, data)
			lb := batches[len(batches)-1]
			if !bytes.Contains(data[lb.off:], []byte(lastKey)) {
				t.Fatalf("the last batch of %s (offset %d, %d bytes) does not hold the last key %q", seg, lb.off, lb.n, lastKey)
			}
			var wantTrunc int64
			switch tc.damage {
			case "truncate":
				// (a killed server's segment still has its preallocated
				// zeros after the last batch: the cut is in the batch)
				const cut = 7
				err, wantTrunc = os.Truncate(seg, int64(lb.off+16+lb.n-cut)), int64(16+lb.n-cut)
			case "garbage":
				junk := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 25)
				err, wantTrunc = os.WriteFile(seg, append(data, junk...), 0o644), int64(len(junk))
			case "flip":
				data[lb.off+16+lb.n/2] ^= 0x40
				err, wantTrunc = os.WriteFile(seg, data, 0o644), int64(16+lb.n)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s of %d bytes (%d batches); the last (%d bytes at offset %d) holds %q",
				tc.damage, filepath.Base(seg), len(data), len(batches), 16+lb.n, lb.off, lastKey)

			from := len(c.Log())
			c.RestartCoord(t) // refuses to start: the test fails here
			c.WaitFor(t, 60*time.Second, "every server serving after the restart", func(st *client.ClusterStatus) error {
				for _, s := range st.Servers {
					if s.State != "serving" {
						return fmt.Errorf("server %d is %s", s.ID, s.State)
					}
				}
				return nil
			})
			after := c.Log()[from:]

			// Server 0 says what it dropped; the others found no damage.
			var found bool
			for _, r := range recoveries(after) {
				switch {
				case r.Node == 0 && r.Damage != "":
					found = true
					if !strings.Contains(r.Damage, tc.reason) || r.Truncated != wantTrunc {
						t.Errorf("server 0 recovered with damage %q, %d bytes truncated; want %q, %d bytes", r.Damage, r.Truncated, tc.reason, wantTrunc)
					}
				case r.Damage != "":
					t.Errorf("server %d (incarnation %d) found damage nobody made: %q", r.Node, r.Inc, r.Damage)
				}
			}
			if !found {
				t.Errorf("server 0's \"log recovered\" record after the restart has no \"damage\" field; records: %+v", recoveries(after))
			}
			for _, line := range strings.Split(after, "\n") {
				if strings.Contains(line, "most complete copy") {
					t.Logf("coordinator: %s", line)
				}
			}

			// Every acknowledged key is there, the last one included
			// (server 0's copy lost it; server 1's has it).
			cl = c.Client()
			var lost []string
			for k, v := range want {
				got, err := cl.Get(ctx, k)
				if err != nil || string(got) != v {
					lost = append(lost, fmt.Sprintf("%q: %q, %v", k, got, err))
				}
			}
			if len(lost) > 0 {
				sort.Strings(lost)
				// If the last key is what is missing, the restart chose
				// server 0's damaged copy of shard 0 over server 1's whole
				// one: the coordinator's restart path, not the log.
				t.Errorf("after the restart %d of %d acknowledged keys are wrong or missing (RESTART PATH if it is %q: the damaged copy was chosen):\n%s",
					len(lost), len(want), lastKey, strings.Join(lost, "\n"))
			}
			// Server 0's copy was repaired, not just passed over: with
			// server 1 (the other copy of shard 0) killed, the last key
			// is still there.
			v := c.KillServer(t, 1)
			c.WaitRecovered(t, recoverTimeout, v)
			if got, err := cl.Get(ctx, lastKey); err != nil || string(got) != want[lastKey] {
				t.Errorf("with server 1 killed after the restart, %q = %q, %v; want %q (server 0's damaged copy was not re-seeded)", lastKey, got, err, want[lastKey])
			}
			// And the cluster takes writes again, on every shard.
			checkServes(t, cl, "torn-after", 30)
		})
	}
}

// TestRestartWithOneDiskFull: server 1's data directory is a small tmpfs
// that fills up while the cluster runs (server 1 is failed over, its
// copies fall behind), then every process is killed and the coordinator
// started again while that disk is still full. The cluster must start
// with servers 0 and 2 serving every shard, as it ran before the kill:
// server 1's stale copies were to be re-seeded, its log failed on the
// first write, its partner's link was refused ("disk error"), and the
// start waited for the first view for the whole re-seeding limit (2
// minutes), then started again, four times, then gave up (an attack).
// Once the disk has room, server 1 comes back, and every acknowledged
// put is there.
func TestRestartWithOneDiskFull(t *testing.T) {
	base := t.TempDir()
	disk := mountTmpfsAt(t, filepath.Join(base, "server_1"), "16m")
	c := testcluster.Start(t, testcluster.Options{Config: fmt.Sprintf("3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\ndata_dir %s\n", base)})
	cls := dialClients(c, 2)
	c.WaitRecovered(t, 10*time.Second)
	l := startLedger(t, cls, 4, "ledger-disk-full-restart", restartOpTimeout)
	waitProgress(t, c, "ledger before the disk fills", l.AckedCount, 300, time.Second)
	stop := make(chan struct{})
	filled := keepFull(t, disk, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-filled
	}()
	c.WaitFor(t, 30*time.Second, "server 1 failed over for its disk", func(*client.ClusterStatus) error {
		if !strings.Contains(c.Log(), "its log failed (disk error)") {
			return errors.New("not yet")
		}
		return nil
	})
	waitProgress(t, c, "ledger with server 1 out", l.AckedCount, 300, time.Second)
	c.KillEverything(t)
	start := time.Now()
	c.RestartCoord(t)
	waitProgress(t, c, "ledger after the restart with server 1's disk full", l.AckedCount, 300, 2*time.Second)
	t.Logf("writes acknowledged again %s after the restart began with server 1's disk full", time.Since(start).Round(time.Millisecond))
	close(stop)
	<-filled
	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	allServing(t, c, 60*time.Second)
	waitProgress(t, c, "ledger with server 1 back", l.AckedCount, 100, time.Second)
	checkLedger(t, l, cls[0])
}
