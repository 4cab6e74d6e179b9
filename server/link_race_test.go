package server

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/internal/wal"
	"ftkv/timing"
	"ftkv/wire"
)

// slowFS is the OS's file system with a log whose fsync (sync, when
// set; nanoseconds) can be slowed, or whose large writes (held, when
// set: a disk that cannot keep up, the kernel throttling a writer by the
// pages it dirties) wait until the test lets them go.
type slowFS struct {
	wal.OSFS
	sync *atomic.Int64
	held *diskGate
}

// diskGate holds every write of at least 512 KiB to a log until open is
// closed; entered gets one token per write held (never blocking).
type diskGate struct {
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
}

// release lets the held writes (and every later one) go on; again: nothing.
func (g *diskGate) release() {
	g.once.Do(func() { close(g.open) })
}

func newDiskGate() *diskGate {
	return &diskGate{entered: make(chan struct{}, 64), open: make(chan struct{})}
}

type slowFile struct {
	wal.File
	fs slowFS
}

func (fs slowFS) Create(name string) (wal.File, error) {
	f, err := fs.OSFS.Create(name)
	if err != nil {
		return nil, err
	}
	return slowFile{File: f, fs: fs}, nil
}

// Adopt is OSFS's, the segment slowed too.
func (fs slowFS) Adopt(prepared, name string) (wal.File, error) {
	f, err := fs.OSFS.Adopt(prepared, name)
	if err != nil {
		return nil, err
	}
	return slowFile{File: f, fs: fs}, nil
}

func (f slowFile) Sync() error {
	if f.fs.sync != nil {
		time.Sleep(time.Duration(f.fs.sync.Load()))
	}
	return f.File.Sync()
}

func (f slowFile) Write(p []byte) (int, error) {
	if g := f.fs.held; g != nil && len(p) >= 1<<19 {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		<-g.open
	}
	return f.File.Write(p)
}

// TestSecondaryAddedWhileAloneWriteCommits: a primary leading its shard
// alone has a write committing (its fsync is slow) when the view gives the
// shard a re-seeding secondary; the write commits while the link's HELLO
// is being answered. The secondary must still get every write: the link
// comes up and stays up, later writes are acknowledged, and the
// secondary's copy ends equal to the primary's. (The kill-everything test
// saw a shard stall for good: "gap in the replication log" on every
// reconnect.)
func TestSecondaryAddedWhileAloneWriteCommits(t *testing.T) {
	var delay atomic.Int64
	// The primary commits alone on its coordinator's lease: a failure
	// timeout of 1 s (a lease of 800 ms) keeps a scheduling stall of
	// make test's load from lapsing it mid-test, which answers the write
	// "lost its lease; retry" (rightly; it is not what is tested here).
	a, b := startAlone(t, t.TempDir(), func(c *Config) {
		c.walFS = slowFS{sync: &delay}
		c.Timing = timing.New(time.Second)
	})
	keys := keysOf("race", 0, 2, 3)
	put := func(cn *conn, k string) error {
		ans, err := cn.write(&wire.Frame{Op: wire.OpPut, Key: []byte(k), Value: []byte("v-" + k)}, 10*time.Second)
		if err == nil && ans.Status != wire.StatusOK {
			t.Errorf("put %s: %v %s", k, ans.Status, ans.Value)
		}
		return err
	}
	if err := put(dialConn(t, a.client, false), keys[0]); err != nil {
		t.Fatal(err)
	}
	// The second write commits alone, slowly; the link is dialled
	// meanwhile and used only after that write committed.
	delay.Store(int64(150 * time.Millisecond))
	slow := dialConn(t, a.client, false)
	done := make(chan error, 1)
	go func() { done <- put(slow, keys[1]) }()
	time.Sleep(30 * time.Millisecond)
	slowDial := func(int) { time.Sleep(300 * time.Millisecond) }
	linkDialed.Store(&slowDial)
	defer linkDialed.Store(nil)
	mb := member(b, b.peer)
	mb.State = wire.StateReseeding
	pushView(t, wire.View{Epoch: 2, Servers: []wire.Member{member(a, a.peer), mb},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: -1}}}, a, b)
	linkDialed.Store(nil)
	delay.Store(0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := put(dialConn(t, a.client, false), keys[2]); err != nil {
		t.Fatalf("a write after the secondary joined: %v", err)
	}
	// The first two writes reach b with the re-seeding's snapshot, which
	// runs in the background: the copy is whole once it is done.
	a.mu.Lock()
	p := a.prims[0]
	a.mu.Unlock()
	if err := p.seedResult(b.cfg.Incarnation, 20*time.Second); err != nil {
		t.Fatalf("re-seeding b: %v", err)
	}
	for _, k := range keys {
		if v, ok := b.tableFor(0).get([]byte(k)); !ok || string(v) != "v-"+k {
			t.Errorf("the secondary's copy of %s: %q %v", k, v, ok)
		}
	}
}
