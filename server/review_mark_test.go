package server

// Review tests of a35cfb2 (recSeedDone marks: a copy is recovered at its
// highest mark).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/internal/wal"
	"ftkv/wire"
)

// killFS simulates a kill -9 of the process at a chosen point of its log:
// once a write holding trigger has reached the file, every later write
// (and sync) of the log is lost, as if the process had died right then.
type killFS struct {
	wal.OSFS
	trigger *atomic.Pointer[[]byte]
	dead    *atomic.Bool
}

type killFile struct {
	wal.File
	fs killFS
}

func (fs killFS) Create(name string) (wal.File, error) {
	f, err := fs.OSFS.Create(name)
	if err != nil {
		return nil, err
	}
	return killFile{File: f, fs: fs}, nil
}

func (fs killFS) Adopt(prepared, name string) (wal.File, error) {
	f, err := fs.OSFS.Adopt(prepared, name)
	if err != nil {
		return nil, err
	}
	return killFile{File: f, fs: fs}, nil
}

func (f killFile) Write(p []byte) (int, error) {
	if f.fs.dead.Load() {
		return len(p), nil
	}
	n, err := f.File.Write(p)
	if tr := f.fs.trigger.Load(); tr != nil && bytes.Contains(p, *tr) {
		f.fs.dead.Store(true)
	}
	return n, err
}

func (f killFile) Sync() error {
	if f.fs.dead.Load() {
		return nil
	}
	return f.File.Sync()
}

// TestReviewResyncEndMarkBeforeItsFrames: a partial resync's writes and
// its end marker reach the secondary in one read; the end marker (a
// recSeedDone at the index the resync reaches) is appended to its log
// before the read's frames. The process dies once the marker is written
// and before the frames are. Started again, the copy must not claim the
// resync's index (a35cfb2 recovers it at the highest mark): it lacks the
// writes. Then a partial resync from that claim sends nothing, and once
// the primary dies the copy serves without them.
func TestReviewResyncEndMarkBeforeItsFrames(t *testing.T) {
	for i := 0; i < 5; i++ {
		if !t.Run(fmt.Sprint(i), resyncEndMarkBeforeItsFrames) {
			return
		}
	}
}

var reviewFsync = "everysec"

func resyncEndMarkBeforeItsFrames(t *testing.T) {
	sc := newDeadB(t, 10)
	a, stopA := sc.a, sc.stopA
	// Writes while b is dead: the resync must carry them.
	cn := dialConn(t, a.client, false)
	missed := keysOf("missed", 1, 2, 5)
	for _, k := range missed {
		putOK(t, cn, k, "m-"+k)
		sc.model[k] = "m-" + k
	}
	a.mu.Lock()
	p := a.prims[1]
	a.mu.Unlock()
	p.mu.Lock()
	covered := p.committed
	p.mu.Unlock()
	// The kill point: b2's log has written the end of the resync of shard 1.
	var trig atomic.Pointer[[]byte]
	var dead atomic.Bool
	pat := binary.BigEndian.AppendUint64(appendRecHeader(nil, recSeedDone, 1), covered)
	trig.Store(&pat)
	b2, stopB2 := startDurableServer(t, sc.fc, 1, sc.dirB, reviewFsync, testSyncSecondary, func(c *Config) {
		c.Incarnation = 2
		// The read's goroutine is descheduled for a moment right after
		// it appended the end of the resync (its log line), before it
		// appends the read's frames: the log's goroutine writes the end
		// alone meanwhile.
		c.Logger = zerolog.New(stallWriter{sc.logB, "re-seeding complete"}).Level(zerolog.InfoLevel)
		c.walFS = killFS{trigger: &trig, dead: &dead}
	})
	sc.a, sc.b2, sc.stopA, sc.stopB2 = a, b2, stopA, stopB2
	// The link to b2 goes through a proxy that delivers each burst in one
	// piece (as a busy event loop reads it): the resync's writes and its
	// end marker arrive in one read.
	proxy := coalescingProxy(t, b2.peer)
	mb := member(b2, proxy)
	mb.State = wire.StateReseeding
	pushView(t, wire.View{Epoch: 3, Servers: []wire.Member{member(a, a.peer), mb},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: 1}}}, a, b2)
	waitWhole(t, b2, 20*time.Second)
	time.Sleep(300 * time.Millisecond)
	if !dead.Load() {
		t.Skip("the resync's end was not logged as expected")
	}
	stopServer(stopB2, b2)
	dumpWAL(t, sc.dirB)
	b3, stopB3 := startDurableServer(t, sc.fc, 1, sc.dirB, "always", testSyncSecondary, func(c *Config) {
		c.Incarnation = 3
		c.Logger = zerolog.New(sc.logB).Level(zerolog.InfoLevel)
	})
	lacks := 0
	for _, k := range missed {
		if _, ok := b3.tableFor(1).get([]byte(k)); !ok {
			lacks++
		}
	}
	claim := indexOf(b3.dur.indexes(), 1)
	t.Logf("b3 recovered shard 1 at %d (the resync reached %d), lacking %d of %d writes the resync carried", claim, covered, lacks, len(missed))
	if lacks > 0 && claim >= covered {
		t.Errorf("b3's copy of shard 1 claims index %d but lacks %d of the %d writes up to it", claim, lacks, len(missed))
	}
	// What that claim leads to: a partial resync from it, a's death, b3 leads.
	m := member(b3, b3.peer)
	m.State = wire.StateReseeding
	pushView(t, wire.View{Epoch: 4, Servers: []wire.Member{member(a, a.peer), m},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: 1}}}, a, b3)
	waitWhole(t, b3, 20*time.Second)
	stopServer(stopA, a)
	leadAlone(t, 5, b3, a)
	bad := 0
	for _, k := range missed {
		if v, st := getVal(t, b3, k); st != wire.StatusOK || v != "m-"+k {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("b3, promoted, serves %d of %d acknowledged writes wrong (lost)\n%s", bad, len(missed),
			grepLines(sc.logA.String(), "resync", "re-seeding"))
	}
	_ = stopB3
}

// coalescingProxy forwards connections to target; what the dialer sends
// is delivered in bursts: bytes are held until 30 ms pass with none.
func coalescingProxy(t *testing.T, target string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				u, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				go func() {
					buf := make([]byte, 64<<10)
					for {
						n, err := u.Read(buf)
						if n > 0 {
							c.Write(buf[:n])
						}
						if err != nil {
							c.Close()
							return
						}
					}
				}()
				var pending []byte
				buf := make([]byte, 64<<10)
				for {
					c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
					n, err := c.Read(buf)
					pending = append(pending, buf[:n]...)
					if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
						if len(pending) > 0 {
							u.Write(pending)
							pending = pending[:0]
						}
						continue
					}
					if err != nil {
						u.Write(pending)
						u.Close()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func dumpWAL(t *testing.T, dir string) {
	cp := t.TempDir()
	if err := os.CopyFS(cp, os.DirFS(dir+"/wal")); err != nil {
		t.Log(err)
		return
	}
	l, _, err := wal.Open(cp, wal.Options{Policy: wal.SyncAlways}, func(r []byte) error {
		kind, shard, body := r[0], binary.BigEndian.Uint32(r[1:]), r[5:]
		switch kind {
		case recFrames:
			var ids []uint64
			for len(body) >= wire.HeaderSize {
				m := int(binary.BigEndian.Uint32(body)) + 4
				ids = append(ids, binary.BigEndian.Uint64(body[8:]))
				body = body[m:]
			}
			t.Logf("shard %d frames %v", shard, ids)
		case recSeedDone, recReset:
			t.Logf("shard %d kind %d at %d", shard, kind, binary.BigEndian.Uint64(body))
		default:
			t.Logf("shard %d kind %d (%d bytes)", shard, kind, len(body))
		}
		return nil
	})
	if err == nil {
		l.Close()
	}
}

// stallWriter passes log lines on, and sleeps 50 ms after one holding at.
type stallWriter struct {
	w  *syncBuf
	at string
}

func (s stallWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if bytes.Contains(p, []byte(s.at)) {
		time.Sleep(50 * time.Millisecond)
	}
	return n, err
}

// TestReviewSnapshotRightAfterPromotion: a is promoted (idle) for shard 1
// and snapshots at once (the snapshot records the mark as the copy's
// index); a dies and restarts on its directory: its copy must be
// recovered at the jumped index with every write; b2 is then caught up
// from a2, a2 dies, and b2 promoted serves every write.
func TestReviewSnapshotRightAfterPromotion(t *testing.T) {
	sc := newIdleScene(t)
	a := sc.a
	_, jumped := promotedMark(t, a)
	if _, err := a.snapshot(); err != nil {
		t.Fatal(err)
	}
	sc.stopA()
	closePrimaries(a)
	a2, stopA2 := startDurableServer(t, sc.fc, 0, sc.dirA, "always", testSyncSecondary, func(c *Config) {
		c.Incarnation = 2
		c.Logger = zerolog.New(sc.logA).Level(zerolog.InfoLevel)
	})
	if got := indexOf(a2.dur.indexes(), 1); got != jumped {
		t.Errorf("a2 recovered shard 1 at %d, want %d", got, jumped)
	}
	checkTables(t, "a2 recovered", a2.Server, sc.model)
	leadAlone(t, 3, a2, sc.b2)
	m := member(sc.b2, sc.b2.peer)
	m.State = wire.StateReseeding
	pushView(t, wire.View{Epoch: 4, Servers: []wire.Member{member(a2, a2.peer), m},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: 1}}}, a2, sc.b2)
	waitWhole(t, sc.b2, 20*time.Second)
	k := keysOf("aftersnap", 1, 2, 1)[0]
	putOK(t, dialConn(t, a2.client, false), k, "s")
	sc.model[k] = "s"
	time.Sleep(200 * time.Millisecond)
	checkTables(t, "b2 caught up", sc.b2.Server, sc.model)
	stopServer(stopA2, a2)
	leadAlone(t, 5, sc.b2, a2)
	for k, want := range sc.model {
		if v, st := getVal(t, sc.b2, k); st != wire.StatusOK || v != want {
			t.Errorf("b2 promoted: %s = %q %v, want %q", k, v, st, want)
		}
	}
	noGap(t, sc.logA, sc.logB)
	t.Logf("%s", grepLines(sc.logA.String(), "resync", "re-seeding"))
}

// TestReviewTwoPromotionsHandBackKillAll: a is promoted (idle) for shard
// 1, b2 is resynced; a dies and b2 is promoted (idle) for shard 0; a2 is
// resynced from b2 and shard 0 is handed back to a2 at once; writes on
// both shards; then every process dies. Each server recovered from its
// directory: the copy a restart chooses (the higher index; the home one
// on a tie) holds every acknowledged write, and the resyncs were partial.
func TestReviewTwoPromotionsHandBackKillAll(t *testing.T) {
	sc := newIdleScene(t)
	sc.reseedView(t, 3)
	sc.wantResyncs(t)
	a, b2 := sc.a, sc.b2
	sc.stopA()
	closePrimaries(a)
	leadAlone(t, 4, b2, a)
	a2, _ := startDurableServer(t, sc.fc, 0, sc.dirA, "always", testSyncSecondary, func(c *Config) {
		c.Incarnation = 2
		c.Logger = zerolog.New(sc.logA).Level(zerolog.InfoLevel)
	})
	m := member(a2, a2.peer)
	m.State = wire.StateReseeding
	pushView(t, wire.View{Epoch: 5, Servers: []wire.Member{m, member(b2, b2.peer)},
		Shards: []wire.Placement{{Primary: 1, Secondary: 0}, {Primary: 1, Secondary: 0}}}, a2, b2)
	waitWhole(t, a2, 20*time.Second)
	// Hand-back of shard 0 to a2 right away.
	pushView(t, wire.View{Epoch: 6, Servers: []wire.Member{member(a2, a2.peer), member(b2, b2.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a2, b2)
	for sh, srv := range []*testServer{a2, b2} {
		cn := dialConn(t, srv.client, false)
		for _, k := range keysOf(fmt.Sprintf("afterhb%d", sh), sh, 2, 5) {
			putOK(t, cn, k, "h-"+k)
			sc.model[k] = "h-" + k
		}
	}
	t.Logf("b2's decisions:\n%s", grepLines(sc.logB.String(), "resync", "re-seeding"))
	if strings.Contains(sc.logB.String(), "partial resync impossible") {
		t.Errorf("a2 was re-seeded in full")
	}
	for _, srv := range []*testServer{a2, b2} {
		srv.dur.snapMu.Lock()
		defer srv.dur.snapMu.Unlock()
	}
	type rec struct {
		idx map[int]uint64
		s   *Server
	}
	var got []rec
	for id, dir := range []string{sc.dirA, sc.dirB} {
		s, err := New(Config{ID: uint32(id), Incarnation: 9, CoordAddr: "127.0.0.1:1", Secret: testSecret,
			DataDir: dir, Fsync: "always", Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		r := rec{idx: map[int]uint64{}, s: s}
		for _, d := range s.dur.indexes() {
			r.idx[int(d.Shard)] = d.Index
		}
		t.Logf("server %d recovered %v", id, r.idx)
		got = append(got, r)
		defer s.dur.log.Close()
	}
	for sh := 0; sh < 2; sh++ {
		home, other := got[sh], got[(sh+1)%2]
		lead := home
		if other.idx[sh] > home.idx[sh] {
			lead = other
		}
		sub := map[string]string{}
		for k, v := range sc.model {
			if shardOf(k, 2) == sh {
				sub[k] = v
			}
		}
		checkTables(t, fmt.Sprintf("shard %d's chosen copy", sh), lead.s, sub)
	}
}

// TestReviewPromotionMarkAfterAppliedWrites: b, the secondary of shard 0,
// applied (and acknowledged) writes whose log records are lazy when a
// dies and b is promoted at once; b dies right once its promotion mark is
// written. Recovered, b's copy claims the mark, so it must hold every
// write a acknowledged.
func TestReviewPromotionMarkAfterAppliedWrites(t *testing.T) {
	for _, fsync := range []string{"always", "everysec", "no"} {
		t.Run(fsync, func(t *testing.T) {
			fc := startFakeCoord(t)
			dirA, dirB := abandonedDir(t), abandonedDir(t)
			var trig atomic.Pointer[[]byte]
			var dead atomic.Bool
			a, stopA := startDurableServer(t, fc, 0, dirA, fsync, testSyncSecondary)
			b, stopB := startDurableServer(t, fc, 1, dirB, fsync, testSyncSecondary, func(c *Config) {
				c.walFS = killFS{trigger: &trig, dead: &dead}
			})
			pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
				Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
			model := map[string]string{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			keys := keysOf("applied", 0, 2, 4000)
			for g := 0; g < 4; g++ {
				cn := dialConn(t, a.client, false)
				wg.Go(func() {
					for i := g; i < len(keys); i += 4 {
						k := keys[i]
						ans, err := cn.do(&wire.Frame{Op: wire.OpPut, Key: []byte(k), Value: []byte("v-" + k)}, 2*time.Second)
						if err != nil {
							return
						}
						if ans.Status == wire.StatusOK {
							mu.Lock()
							model[k] = "v-" + k
							mu.Unlock()
						}
					}
				})
			}
			time.Sleep(150 * time.Millisecond)
			stopServer(stopA, a) // writes in flight
			wg.Wait()
			x := b.lastApplied(0)
			pat := binary.BigEndian.AppendUint64(appendRecHeader(nil, recSeedDone, 0), x+LineageGap)
			trig.Store(&pat)
			leadAlone(t, 2, b, a)
			for deadline := time.Now().Add(5 * time.Second); !dead.Load(); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the promotion's mark was never written")
				}
			}
			stopServer(stopB, b)
			s, err := New(Config{ID: 1, Incarnation: 9, CoordAddr: "127.0.0.1:1", Secret: testSecret,
				DataDir: dirB, Fsync: fsync, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.dur.log.Close()
			t.Logf("b recovered %+v (applied %d, mark %d)", s.dur.indexes(), x, x+LineageGap)
			checkTables(t, "b recovered", s, model)
		})
	}
}
