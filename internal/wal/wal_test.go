package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func rec(i int) func(dst []byte) []byte {
	return func(dst []byte) []byte { return binary.BigEndian.AppendUint64(dst, uint64(i)) }
}

// open opens dir on fsys and returns the log and the records it replayed.
func open(t *testing.T, fsys FS, pol Policy) (*Log, []uint64, Recovery) {
	t.Helper()
	var got []uint64
	l, r, err := Open("d", Options{FS: fsys, Policy: pol, SegmentSize: 1 << 10, Interval: 20 * time.Millisecond}, func(b []byte) error {
		got = append(got, binary.BigEndian.Uint64(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, got, r
}

// appendSync appends records from..to-1, one batch each, and waits.
func appendN(t *testing.T, l *Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		ch := make(chan error, 1)
		l.Append(func(w *Writer) { w.Record(rec(i)) }, func(err error) { ch <- err })
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
}

// waitSynced waits until nothing written to m would be lost in a crash,
// with no further append: the interval's sync (20 ms here) has run. It
// slept 100 ms and assumed it had: a sync goroutine left unscheduled
// that long under make test's load lost records for it. 10 s at most.
func waitSynced(t *testing.T, m *StrictMemFS) {
	t.Helper()
	synced := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, f := range m.files {
			if !f.linked || f.synced < len(f.data) {
				return false
			}
		}
		return true
	}
	for start := time.Now(); !synced(); time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("written records not synced 10 s after the last append (interval 20 ms)")
		}
	}
}

func want(t *testing.T, got []uint64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("replayed %d records, want %d", len(got), n)
	}
	for i, v := range got {
		if v != uint64(i) {
			t.Fatalf("record %d is %d", i, v)
		}
	}
}

func TestReopenReplaysInOrder(t *testing.T) {
	m := NewStrictMemFS()
	l, got, _ := open(t, m, SyncAlways)
	want(t, got, 0)
	appendN(t, l, 0, 200) // several segments of 1 KiB
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := m.List("d")
	if len(names) < 3 {
		t.Fatalf("segments %v: want several", names)
	}
	l, got, r := open(t, m, SyncAlways)
	defer l.Close()
	want(t, got, 200)
	if r.Reason != "" {
		t.Fatalf("clean log recovered with %q", r.Reason)
	}
}

func TestDamagedLogEndsAtLastWholeBatch(t *testing.T) {
	cases := []struct {
		name    string
		damage  func(m *StrictMemFS, segs []string)
		records int
	}{
		{"torn tail", func(m *StrictMemFS, segs []string) {
			last := "d/" + segs[len(segs)-1]
			b, _ := m.ReadFile(last)
			m.Set(last, b[:len(b)-3])
		}, 199},
		{"torn header", func(m *StrictMemFS, segs []string) {
			last := "d/" + segs[len(segs)-1]
			b, _ := m.ReadFile(last)
			m.Set(last, append(b, 1, 2, 3))
		}, 200},
		{"corrupt tail", func(m *StrictMemFS, segs []string) {
			last := "d/" + segs[len(segs)-1]
			b, _ := m.ReadFile(last)
			m.Corrupt(last, len(b)-1, []byte{0xff ^ b[len(b)-1]})
		}, 199},
		{"corrupt middle", func(m *StrictMemFS, segs []string) {
			// the 3rd batch of the first segment: everything from there on goes
			m.Corrupt("d/"+segs[0], 2*(batchHeader+12)+batchHeader+5, []byte{0xee})
		}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := NewStrictMemFS()
			l, _, _ := open(t, m, SyncAlways)
			appendN(t, l, 0, 200)
			l.Close()
			segs, _ := m.List("d")
			before := map[string][]byte{}
			for _, n := range segs {
				before[n], _ = m.ReadFile("d/" + n)
			}
			c.damage(m, segs)
			damaged, _ := m.ReadFile("d/" + segs[0])
			l, got, r := open(t, m, SyncAlways)
			want(t, got, c.records)
			if c.records < 200 && r.Reason == "" {
				t.Fatal("damage not reported")
			}
			// Damage with whole segments after it is corruption, not a
			// torn tail: what recovery cut off is kept aside, as it was.
			if c.name != "corrupt middle" {
				if len(r.SetAside) != 0 {
					t.Fatalf("a torn tail set %v aside", r.SetAside)
				}
			} else {
				if r.SetAsideErr != nil || len(r.SetAside) != len(segs) || r.Removed != len(segs)-1 {
					t.Fatalf("set aside %v (%v), %d segments removed, want all %d segments kept", r.SetAside, r.SetAsideErr, r.Removed, len(segs))
				}
				for k, n := range segs {
					if !strings.HasPrefix(r.SetAside[k], "d/"+n+".") || !strings.HasSuffix(r.SetAside[k], damagedSuffix) {
						t.Fatalf("segment %s kept as %s", n, r.SetAside[k])
					}
					b, err := m.ReadFile(r.SetAside[k])
					w := before[n]
					if k == 0 {
						w = damaged
					}
					if err != nil || string(b) != string(w) {
						t.Fatalf("the copy kept of %s: %d bytes (%v), want %d", n, len(b), err, len(w))
					}
				}
			}
			// The log goes on after the damage: appends and a reopen work.
			appendN(t, l, c.records, c.records+10)
			l.Close()
			l, got, r = open(t, m, SyncAlways)
			l.Close()
			want(t, got, c.records+10)
			if r.Reason != "" {
				t.Fatalf("second recovery: %s", r.Reason)
			}
		})
	}
}

func TestGroupCommitSharesFsyncs(t *testing.T) {
	m := NewStrictMemFS()
	l, _, _ := open(t, m, SyncAlways)
	defer l.Close()
	// A sync takes as long as a fast disk's: writers arriving meanwhile
	// share the next one, however busy the machine is.
	m.SlowSyncs(time.Millisecond)
	before := m.Syncs()
	const writers, each = 50, 40
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				ch := make(chan error, 1)
				l.Append(func(wr *Writer) { wr.Record(rec(i)) }, func(err error) { ch <- err })
				if err := <-ch; err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	syncs := m.Syncs() - before
	t.Logf("%d appends, %d fsyncs", writers*each, syncs)
	if syncs >= writers*each/2 {
		t.Fatalf("%d fsyncs for %d appends from %d writers: no group commit", syncs, writers*each, writers)
	}
}

// TestPolicyOnCrash appends, crashes the file system (unsynced bytes
// vanish) and reopens: with SyncAlways every acknowledged record is back.
func TestPolicyOnCrash(t *testing.T) {
	for _, pol := range []Policy{SyncAlways, SyncEverySec, SyncNo} {
		t.Run(pol.String(), func(t *testing.T) {
			m := NewStrictMemFS()
			l, _, _ := open(t, m, pol)
			appendN(t, l, 0, 100)
			m.Crash() // the machine dies with the log open
			l2, got, _ := open(t, m, pol)
			defer l2.Close()
			switch pol {
			case SyncAlways:
				want(t, got, 100)
			case SyncNo:
				if len(got) == 100 {
					t.Fatal("fsync no lost nothing in a crash: the file layer does not drop unsynced data")
				}
			}
			t.Logf("%s: %d of 100 acknowledged records survived", pol, len(got))
			l.Close()
		})
	}
	// everysec: after the period everything is synced.
	m := NewStrictMemFS()
	l, _, _ := open(t, m, SyncEverySec)
	appendN(t, l, 0, 50)
	waitSynced(t, m)
	m.Crash()
	l2, got, _ := open(t, m, SyncEverySec)
	defer l2.Close()
	want(t, got, 50)
	l.Close()
}

func TestDiskErrorIsNeverSuccess(t *testing.T) {
	for _, c := range []struct{ w, s error }{{errors.New("ENOSPC"), nil}, {nil, errors.New("EIO")}} {
		t.Run(fmt.Sprint(c.w, c.s), func(t *testing.T) {
			m := NewStrictMemFS()
			l, _, _ := open(t, m, SyncAlways)
			defer l.Close()
			appendN(t, l, 0, 3)
			m.Fail(c.w, c.s)
			for i := 0; i < 3; i++ {
				ch := make(chan error, 1)
				l.Append(func(w *Writer) { w.Record(rec(9)) }, func(err error) { ch <- err })
				if err := <-ch; err == nil {
					t.Fatal("append acknowledged after a disk error")
				}
			}
			m.Fail(nil, nil) // the error is sticky: the log stays failed
			ch := make(chan error, 1)
			l.Append(func(w *Writer) { w.Record(rec(9)) }, func(err error) { ch <- err })
			if err := <-ch; err == nil || l.Err() == nil {
				t.Fatal("log recovered by itself from a disk error")
			}
		})
	}
}

func TestRotateAndRemove(t *testing.T) {
	m := NewStrictMemFS()
	l, _, _ := open(t, m, SyncAlways)
	appendN(t, l, 0, 100)
	id, err := l.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 100, 110)
	if err := l.RemoveBefore(id); err != nil {
		t.Fatal(err)
	}
	if l.Size() > 10*(batchHeader+12) {
		t.Fatalf("size %d after removing old segments", l.Size())
	}
	l.Close()
	var got []uint64
	l, _, err = Open("d", Options{FS: m}, func(b []byte) error { got = append(got, binary.BigEndian.Uint64(b)); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if len(got) != 10 || got[0] != 100 {
		t.Fatalf("after removal replayed %v", got)
	}
}

// TestStartSkipsSegmentsASnapshotCovers: a crash between a snapshot and
// RemoveBefore leaves the old segments; Open with Start replays only the
// segments from Start on, removes the older ones, and appends after them.
func TestStartSkipsSegmentsASnapshotCovers(t *testing.T) {
	m := NewStrictMemFS()
	l, _, _ := open(t, m, SyncAlways)
	appendN(t, l, 0, 100)
	id, err := l.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 100, 110)
	l.Close()
	replay := func(got *[]uint64) func([]byte) error {
		return func(b []byte) error { *got = append(*got, binary.BigEndian.Uint64(b)); return nil }
	}
	var got []uint64
	l, _, err = Open("d", Options{FS: m, Start: id}, replay(&got))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[0] != 100 {
		t.Fatalf("from segment %d replayed %v", id, got)
	}
	appendN(t, l, 110, 115)
	l.Close()
	names, _ := m.List("d")
	for _, n := range names {
		if n < fmt.Sprintf("%016x.wal", id) {
			t.Fatalf("segment %s older than %d left behind", n, id)
		}
	}
	got = nil
	l, _, err = Open("d", Options{FS: m, Start: id}, replay(&got))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if len(got) != 15 || got[14] != 114 {
		t.Fatalf("after reopen replayed %v", got)
	}
	// A Start past every segment (all removed): appends go to Start.
	l2, _, err := Open("e", Options{FS: m, Start: 7}, replay(&got))
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if id, _ := l2.Rotate(); id != 8 {
		t.Fatalf("first rotate after Start 7 gave segment %d, want 8", id)
	}
}

// TestAppendLazy: with SyncAlways, lazily appended records cost no fsync
// of their own (a crash right after may lose them), the next Append's
// sync covers them, and the interval syncs them when no Append comes.
func TestAppendLazy(t *testing.T) {
	m := NewStrictMemFS()
	l, _, _ := open(t, m, SyncAlways)
	lazy := func(from, to int) {
		for i := from; i < to; i++ {
			ch := make(chan error, 1)
			l.AppendLazy(func(w *Writer) { w.Record(rec(i)) }, func(err error) { ch <- err })
			if err := <-ch; err != nil {
				t.Fatal(err)
			}
		}
	}
	before := m.Syncs()
	lazy(0, 10)
	if n := m.Syncs() - before; n > 1 { // (the interval's sync may come)
		t.Fatalf("%d fsyncs for 10 lazy appends", n)
	}
	appendN(t, l, 10, 11) // synced, and with it what was written before
	m.Crash()
	l2, got, _ := open(t, m, SyncAlways)
	want(t, got, 11)
	l.Close()

	// Lazy records alone are synced within the interval (20ms here).
	i := 11
	ch := make(chan error, 1)
	l2.AppendLazy(func(w *Writer) { w.Record(rec(i)) }, func(err error) { ch <- err })
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	waitSynced(t, m)
	m.Crash()
	l3, got, _ := open(t, m, SyncAlways)
	defer l3.Close()
	want(t, got, 12)
	l2.Close()
}

// TestReplayedRecordsAreDurable: records written but not synced when the
// process died (lazily appended: in the page cache) are replayed at the
// next start, where the server acts on them (it answers a retry of such
// a write from its record, a copy may lead from them): Open makes them
// durable before it returns, so a power cut after the restart does not
// take them back. (A review, reading the code: a copy chosen to lead at
// restart could acknowledge retries of writes no disk held.)
func TestReplayedRecordsAreDurable(t *testing.T) {
	m := NewStrictMemFS()
	// No interval sync during the test: only Open may make them durable.
	opt := Options{FS: m, Policy: SyncAlways, SegmentSize: 1 << 10, Interval: time.Hour}
	var got []uint64
	replay := func(b []byte) error {
		got = append(got, binary.BigEndian.Uint64(b))
		return nil
	}
	l, _, err := Open("d", opt, replay)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 0, 5) // synced
	for i := 5; i < 100; i++ {
		ch := make(chan error, 1)
		l.AppendLazy(func(w *Writer) { w.Record(rec(i)) }, func(err error) { ch <- err })
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	// The process is killed (no Close); it restarts.
	got = nil
	l2, _, err := Open("d", opt, replay)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	want(t, got, 100)
	// A power cut after the restart.
	m.Crash()
	got = nil
	l3, _, err := Open("d", opt, replay)
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if len(got) != 100 {
		t.Fatalf("replayed %d records after a power cut that followed a restart, want the 100 the restart replayed", len(got))
	}
	want(t, got, 100)
}

// TestLogStateReadWhileAppendsHoldTheLock: Size and Err answer while an
// append holds the log's lock. An append copies its records under that
// lock, and large ones on a starved CPU held it for hundreds of
// milliseconds: a server's heartbeat report, which reads both, took as
// long, and a live server under a load of 1 MiB writes fell silent as if
// wedged (its report's gathering is bounded by half the failure timeout)
// and was failed over.
func TestLogStateReadWhileAppendsHoldTheLock(t *testing.T) {
	l, _, _ := open(t, NewStrictMemFS(), SyncAlways)
	defer l.Close()
	appendN(t, l, 0, 3)
	entered, release := make(chan struct{}), make(chan struct{})
	go l.Append(func(w *Writer) {
		close(entered)
		<-release // (a long copy)
		w.Record(rec(3))
	}, func(error) {})
	<-entered
	defer close(release)
	done := make(chan int64)
	go func() {
		_ = l.Err()
		done <- l.Size()
	}()
	select {
	case n := <-done:
		if n <= 0 {
			t.Errorf("Size %d after three records", n)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Size and Err waited for an append that holds the log's lock")
	}
}
