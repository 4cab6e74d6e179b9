package server

import (
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"ftkv/timing"
	"ftkv/wire"
)

// fakeConn records every answer written to it.
type fakeConn struct {
	gnet.Conn
	name string
	mu   sync.Mutex
	got  []wire.Frame
}

func (c *fakeConn) EventLoop() gnet.EventLoop { return nil }
func (c *fakeConn) SafeContext() any          { return nil }
func (c *fakeConn) AsyncWrite(b []byte, _ gnet.AsyncCallback) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(b) > 0 {
		f, n, err := wire.Decode(b, 0)
		if err != nil {
			panic(err)
		}
		c.got = append(c.got, f)
		b = b[n:]
	}
	return nil
}
func (c *fakeConn) answers() []wire.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]wire.Frame(nil), c.got...)
}

func put(c gnet.Conn, id, client, seq uint64, key, val string) *entry {
	rc := makeRec([]byte(key), []byte(val))
	return &entry{wreq: wreq{c: c, id: id, op: wire.OpPut, client: client, seq: seq, floor: 1,
		rec: rc, key: rc.key(), value: rc.value()}}
}

func testPrimary(t *testing.T) (*primary, *leaseTracker) {
	tm := timing.Default()
	// A lease renewed once, here, for longer than any test runs: with
	// tm.Lease (400 ms) a loaded machine's stall between this and a test's
	// sequence calls lapsed it, and every write was refused "shard is
	// changing hands; retry" (the tests lose the lease on purpose with
	// releaseStuck an hour on).
	lt := newLeaseTracker(time.Minute)
	env := &primaryEnv{tm: tm, dd: newDedup(), coordLease: lt, noteIndex: func(int, uint64) {}, log: zerolog.Nop()}
	p := newPrimary(env, 0, newTable(), 0, time.Time{})
	t.Cleanup(func() {
		select {
		case <-p.stop:
		default:
			close(p.stop)
		}
	})
	p.waitLink = true // a secondary is configured but unreachable: writes stay in flight
	lt.answered(lt.sending(time.Now()), true)
	return p, lt
}

// A retry in the same batch, after the lease was lost and after the
// commit is answered once each, and the write is applied once.
func TestRetryWaitsAndIsAnsweredOnce(t *testing.T) {
	p, _ := testPrimary(t)
	orig, r1, r2, r3 := &fakeConn{name: "orig"}, &fakeConn{name: "r1"}, &fakeConn{name: "r2"}, &fakeConn{name: "r3"}
	// the original and a retry in the same batch
	p.sequence([]*entry{put(orig, 1, 7, 1, "k", "v"), put(r1, 2, 7, 1, "k", "v")}, nil)
	if len(orig.answers())+len(r1.answers()) != 0 {
		t.Fatalf("answered before commit: %v %v", orig.answers(), r1.answers())
	}
	// lease lost: both told to retry
	p.releaseStuck(time.Now().Add(time.Hour))
	if a := orig.answers(); len(a) != 1 || a[0].Status != wire.StatusUnavailable {
		t.Fatalf("orig after releaseStuck: %+v", a)
	}
	if a := r1.answers(); len(a) != 1 || a[0].Status != wire.StatusUnavailable {
		t.Fatalf("r1 after releaseStuck: %+v", a)
	}
	// a retry comes back here and waits for the write still in flight
	p.sequence([]*entry{put(r2, 3, 7, 1, "k", "v")}, nil)
	if len(r2.answers()) != 0 {
		t.Fatalf("r2 answered early: %+v", r2.answers())
	}
	p.commitUpTo(1, nil)
	if a := r2.answers(); len(a) != 1 || a[0].Status != wire.StatusOK || a[0].ID != 3 {
		t.Fatalf("r2 after commit: %+v", a)
	}
	if len(orig.answers()) != 1 || len(r1.answers()) != 1 {
		t.Fatalf("answered twice: %+v %+v", orig.answers(), r1.answers())
	}
	// done: a later retry is answered from the record, not applied again
	p.sequence([]*entry{put(r3, 4, 7, 1, "k", "other")}, nil)
	if a := r3.answers(); len(a) != 1 || a[0].Status != wire.StatusOK {
		t.Fatalf("r3: %+v", a)
	}
	if v, _ := p.t.get([]byte("k")); string(v) != "v" {
		t.Fatalf("value %q", v)
	}
}

// A closed primary tells its waiting clients to retry and forgets their
// records, so the next primary applies the retry.
func TestCloseForgetsAndAnswers(t *testing.T) {
	p, _ := testPrimary(t)
	orig, r1 := &fakeConn{}, &fakeConn{}
	p.sequence([]*entry{put(orig, 1, 9, 5, "k", "v")}, nil)
	p.sequence([]*entry{put(r1, 2, 9, 5, "k", "v")}, nil)
	p.close()
	for _, c := range []*fakeConn{orig, r1} {
		if a := c.answers(); len(a) != 1 || a[0].Status != wire.StatusUnavailable {
			t.Fatalf("after close: %+v", a)
		}
	}
	// a new primary on the same server (same dedup) applies the retry anew
	p2 := newPrimary(p.env, 0, p.t, 1, time.Time{})
	defer close(p2.stop)
	r2 := &fakeConn{}
	p2.sequence([]*entry{put(r2, 3, 9, 5, "k", "v")}, nil)
	if a := r2.answers(); len(a) != 1 || a[0].Status != wire.StatusOK {
		t.Fatalf("retry at the new primary: %+v", a)
	}
}

// A write sequenced by a primary that was closed a moment before (an
// event loop still had the old view) is told to retry, and its retry at
// the shard's next primary on this server is applied (found by review:
// the record was never finished nor forgotten, so every retry got
// UNAVAILABLE until the client's floor passed it).
func TestSequenceAfterClose(t *testing.T) {
	p, _ := testPrimary(t)
	p.close()
	orig := &fakeConn{}
	p.sequence([]*entry{put(orig, 1, 11, 1, "k", "v")}, nil)
	if a := orig.answers(); len(a) != 1 || a[0].Status != wire.StatusUnavailable {
		t.Fatalf("a write sequenced after close: %+v, want one UNAVAILABLE", a)
	}
	p2 := newPrimary(p.env, 0, p.t, 1, time.Time{})
	defer close(p2.stop)
	p2.waitLink = false // no secondary: commits at once
	r := &fakeConn{}
	p2.sequence([]*entry{put(r, 10, 11, 1, "k", "v")}, nil)
	if a := r.answers(); len(a) != 1 || a[0].Status != wire.StatusOK {
		t.Fatalf("the retry at the next primary: %+v, want OK", a)
	}
}

// A client with max_session_records writes remembered (one of them stuck,
// the others piling up behind its floor) gets a retryable UNAVAILABLE for
// the next write, not a final error: once the stuck write is answered the
// floor rises and the retry goes through (found by review: BAD_REQUEST
// failed the client's writes to healthy shards while one shard failed over).
func TestTooManyRecordsIsRetryable(t *testing.T) {
	p, _ := testPrimary(t)
	p.env.dd.configure(SessionConfig{MaxRecords: 2})
	c := &fakeConn{}
	p.sequence([]*entry{put(c, 1, 21, 1, "a", "1"), put(c, 2, 21, 2, "b", "2")}, nil)
	p.sequence([]*entry{put(c, 3, 21, 3, "c", "3")}, nil)
	a := c.answers()
	if len(a) != 1 || a[0].ID != 3 {
		t.Fatalf("answers %+v, want one to request 3", a)
	}
	if a[0].Status != wire.StatusUnavailable {
		t.Fatalf("the write over the per-client cap got %s %q, want UNAVAILABLE (retry)", a[0].Status, a[0].Value)
	}
}
