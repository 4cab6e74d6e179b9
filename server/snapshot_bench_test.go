package server

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/internal/wal"
	"ftkv/timing"
	"ftkv/wire"
)

// TestSnapshotCost (FTKV_SNAP_BENCH=1) measures, in one run: the time to
// snapshot 1M keys (100 B values); replicated puts/s through two servers
// (fsync always, 50 connections) without and with snapshots of 1M keys
// running back to back; the rate at which recovery loads a snapshot and
// replays log entries.
func TestSnapshotCost(t *testing.T) {
	if os.Getenv("FTKV_SNAP_BENCH") == "" {
		t.Skip("set FTKV_SNAP_BENCH=1")
	}
	const keys = 1_000_000
	val := make([]byte, 100)

	// Recovery from the log: 1M REPL frames, 1000 per record.
	dir := t.TempDir()
	s, err := New(Config{ID: 0, CoordAddr: "127.0.0.1:1", Secret: testSecret, DataDir: dir, SnapshotBytes: -1, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	logFrames(s, keys, val)
	_ = s.dur.log.Close()
	start := time.Now()
	s, err = New(Config{ID: 0, CoordAddr: "127.0.0.1:1", Secret: testSecret, DataDir: dir, SnapshotBytes: -1, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if s.tableFor(0).len() != keys {
		t.Fatalf("recovered %d keys", s.tableFor(0).len())
	}
	t.Logf("log replay: %d entries in %v: %.2fM entries/s (log %d MiB)", keys, el.Round(time.Millisecond), keys/el.Seconds()/1e6, s.dur.log.Size()>>20)

	// Snapshot of those 1M keys, then recovery from it.
	st, err := s.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot: %d keys, %d MiB in %v", st.keys, st.bytes>>20, st.took.Round(time.Millisecond))
	_ = s.dur.log.Close()
	start = time.Now()
	s, err = New(Config{ID: 0, CoordAddr: "127.0.0.1:1", Secret: testSecret, DataDir: dir, SnapshotBytes: -1, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	el = time.Since(start)
	t.Logf("snapshot load: %d entries in %v: %.2fM entries/s", s.tableFor(0).len(), el.Round(time.Millisecond), float64(s.tableFor(0).len())/el.Seconds()/1e6)
	_ = s.dur.log.Close()

	// Throughput without and with snapshots running.
	fc := startFakeCoord(t)
	// (a failure timeout of 2 s: a lease must not lapse on a loaded machine.)
	noSnap := func(c *Config) { c.SnapshotBytes = -1; c.Timing = timing.New(2 * time.Second) }
	a, _ := startDurableServer(t, fc, 0, t.TempDir(), "always", false, noSnap)
	b, _ := startDurableServer(t, fc, 1, t.TempDir(), "always", false, noSnap)
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	for _, srv := range []*testServer{a, b} {
		tb := srv.tableFor(int(srv.cfg.ID))
		for i := 0; i < keys/2; i++ {
			tb.set(fmt.Sprintf("pre-%08d", i), val, 1)
		}
	}
	run := func(snap bool) float64 {
		var n atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(3 * time.Second)
		snaps := 0
		if snap {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					if _, err := a.snapshot(); err != nil {
						t.Error(err)
						return
					}
					snaps++
				}
			}()
		}
		putLoad(t, []*testServer{a, b}, 50, stop, val, &n, &wg)
		wg.Wait()
		if snap {
			t.Logf("%d snapshots of server 0 (500k keys) during the run", snaps)
		}
		return float64(n.Load()) / 3
	}
	base := run(false)
	with := run(true)
	t.Logf("puts/s (fsync always): %.0f without snapshots, %.0f with snapshots back to back: %.2fx", base, with, with/base)
}

// logFrames appends REPL frames of shard 0 for keys key-00000000,
// key-00000001, … (indexes from 1), each of value val, to s's log, 1000 a
// record, and waits until they are written.
func logFrames(s *Server, keys int, val []byte) {
	var wg sync.WaitGroup
	for i := 0; i < keys; i += 1000 {
		from := i
		wg.Add(1)
		s.dur.log.Append(func(w *wal.Writer) {
			w.Record(func(dst []byte) []byte {
				dst = appendRecHeader(dst, recFrames, 0)
				for j := from; j < min(from+1000, keys); j++ {
					dst = wire.Append(dst, &wire.Frame{Op: wire.OpRepl, ID: uint64(j + 1), Epoch: 1, Key: []byte(fmt.Sprintf("key-%08d", j)), Value: val})
				}
				return dst
			})
		}, func(error) { wg.Done() })
	}
	wg.Wait()
}
