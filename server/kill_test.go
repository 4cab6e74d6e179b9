package server

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftkv/wire"
)

// TestKill9RecoversAcknowledgedWrites runs two real server processes
// (bin/server built from cmd/server) with data dirs, -fsync always and
// -fsync-secondary, and a small -snapshot-bytes so that snapshots and log
// truncation run under the load; concurrent writers (puts, appends,
// deletes) keep a ledger of what was acknowledged; both processes are
// killed with SIGKILL at once, restarted on the same directories, and
// every acknowledged write is read back from each shard's primary and
// found in both copies (the shutdown dumps).
func TestKill9RecoversAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and spawns bin/server")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "server")
	if out, err := exec.Command("go", "build", "-o", bin, "ftkv/cmd/server").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fc := startFakeCoord(t)
	dirs := []string{filepath.Join(tmp, "data0"), filepath.Join(tmp, "data1")}
	dumps := filepath.Join(tmp, "dumps")
	if err := os.MkdirAll(dumps, 0o755); err != nil {
		t.Fatal(err)
	}
	spawn := func(id uint32, inc uint64) (*exec.Cmd, *testServer) {
		t.Helper()
		cmd := exec.Command(bin, "-id", strconv.Itoa(int(id)), "-inc", strconv.FormatUint(inc, 10), "-coord", fc.ln.Addr().String(),
			"-data-dir", dirs[id], "-fsync", "always", "-fsync-secondary", "-snapshot-bytes", "65536", "-dir", dumps,
			"-failure-timeout", "300ms", "-loops", "1", "-log", filepath.Join(tmp, fmt.Sprintf("server%d.log", id)))
		cmd.Env = append(os.Environ(), "FTKV_SECRET="+testSecret)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if hb, ok := fc.last(id); ok && hb.Incarnation == inc {
				return cmd, &testServer{client: hb.Addr, peer: hb.PeerAddr, ctl: hb.CtlAddr}
			}
			if time.Now().After(deadline) {
				t.Fatalf("server %d incarnation %d did not heartbeat (log in %s)", id, inc, tmp)
			}
		}
	}
	view := func(epoch uint64, inc uint64, ss ...*testServer) {
		var ms []wire.Member
		for id, s := range ss {
			ms = append(ms, wire.Member{ID: uint32(id), Incarnation: inc, State: wire.StateServing,
				Host: "localhost", Addr: s.client, PeerAddr: s.peer, CtlAddr: s.ctl})
		}
		pushView(t, wire.View{Epoch: epoch, Servers: ms,
			Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, ss...)
	}
	ca, a := spawn(0, 1)
	cb, b := spawn(1, 1)
	view(1, 1, a, b)

	// Each writer owns its keys and writes one at a time: the ledger has
	// each key's acknowledged value ("" = absent) and, for the one write
	// in flight at the kill, the value it would have made.
	type outcome struct {
		acked, maybe string
		inflight     bool
	}
	var mu sync.Mutex
	ledger := map[string]*outcome{}
	var acked int
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		shard := w % 2
		srv := []*testServer{a, b}[shard]
		keys := keysOf(fmt.Sprintf("k%d", w), shard, 2, 200)
		cn := dialConn(t, srv.client, false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			cur := map[string]string{}
			for i := 0; ; i++ {
				k := keys[i%len(keys)]
				f := &wire.Frame{Op: wire.OpPut, Client: uint64(100 + w), Seq: uint64(i + 1), Floor: uint64(i + 1), Key: []byte(k)}
				nv := fmt.Sprintf("v%d-%d", w, i)
				switch i % 7 {
				case 3:
					f.Op, f.Value, nv = wire.OpAppend, []byte("+"+nv), cur[k]+"+"+nv
				case 5:
					f.Op, nv = wire.OpDelete, ""
				default:
					f.Value = []byte(nv)
				}
				// UNAVAILABLE (a lease lapsing under the load) is retried
				// with the same sequence number, as a client does: only
				// the kill ends a writer.
				ans, err := cn.doRetry(f, 5*time.Second)
				mu.Lock()
				o := ledger[k]
				if o == nil {
					o = &outcome{}
					ledger[k] = o
				}
				if err != nil || ans.Status != wire.StatusOK {
					o.maybe, o.inflight = nv, true // the kill: this write may or may not have been applied
					mu.Unlock()
					return
				}
				o.acked = nv
				acked++
				mu.Unlock()
				cur[k] = nv
			}
		}()
	}
	// Until a snapshot was taken under the load (1.5 s on a quiet
	// machine; a loaded one wrote 291 writes and none in that time).
	time.Sleep(1500 * time.Millisecond)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		snaps := 0
		for _, d := range dirs {
			s, _ := snapshots(d)
			snaps += len(s)
		}
		mu.Lock()
		n := acked
		mu.Unlock()
		if snaps > 0 && n >= 1000 {
			break
		}
	}
	for _, c := range []*exec.Cmd{ca, cb} {
		_ = c.Process.Signal(syscall.SIGKILL)
	}
	wg.Wait()
	_ = ca.Wait()
	_ = cb.Wait()
	snaps := 0
	for _, d := range dirs {
		s, _ := snapshots(d)
		snaps += len(s)
	}
	t.Logf("%d writes acknowledged before the kill; %d keys; snapshots on disk: %d", acked, len(ledger), snaps)
	if acked < 200 || snaps == 0 {
		t.Fatalf("load too light to prove anything: %d writes, %d snapshots", acked, snaps)
	}

	_, a = spawn(0, 2)
	_, b = spawn(1, 2)
	view(2, 2, a, b)
	check := func(where, k, got string, present bool) {
		t.Helper()
		o := ledger[k]
		if !present {
			got = ""
		}
		if got != o.acked && (!o.inflight || got != o.maybe) {
			t.Errorf("%s: key %s is %q, acknowledged %q (in flight at the kill: %q)", where, k, got, o.acked, o.maybe)
		}
	}
	cns := []*conn{dialConn(t, a.client, false), dialConn(t, b.client, false)}
	for k := range ledger {
		ans, err := cns[shardOf(k, 2)].doRetry(&wire.Frame{Op: wire.OpGet, Key: []byte(k)}, 5*time.Second)
		if err != nil || (ans.Status != wire.StatusOK && ans.Status != wire.StatusNotFound) {
			t.Fatalf("get %s: %v %v %s", k, err, ans.Status, ans.Value)
		}
		check("get after the restart", k, string(ans.Value), ans.Status == wire.StatusOK)
	}
	// Both copies: the restarted servers dump their tables on a shutdown order.
	for _, s := range []*testServer{a, b} {
		cn := dialConn(t, s.ctl, true)
		if ans, err := cn.do(&wire.Frame{Op: wire.OpShutdown}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
			t.Fatalf("shutdown: %v %v", err, ans.Status)
		}
	}
	for id := 0; id < 2; id++ {
		for _, role := range []string{"primary", "secondary"} {
			m, err := ReadDump(filepath.Join(dumps, fmt.Sprintf("server_%d.%s", id, role)))
			if err != nil {
				t.Fatal(err)
			}
			for k := range ledger {
				if shard := shardOf(k, 2); (role == "primary") == (shard == id) {
					v, ok := m[k]
					check(fmt.Sprintf("server %d %s copy", id, role), k, string(v), ok)
				}
			}
		}
	}
}
