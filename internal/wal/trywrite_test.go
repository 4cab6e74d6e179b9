package wal

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTryWriteKeepsOrder: streams of records, each written by TryWrite
// when it can and by Append otherwise (as a primary does), while other
// streams append at the same time, a Rotate runs and the segment fills
// up: every record is recovered, and each stream's in the order written.
// A record tried after one still queued must not overtake it: recovery
// replays a shard's writes by index and skips an older one found later.
func TestTryWriteKeepsOrder(t *testing.T) {
	for _, pol := range []Policy{SyncEverySec, SyncNo} {
		t.Run(pol.String(), func(t *testing.T) {
			dir := t.TempDir()
			l, _, _ := openOS(t, dir, Options{Policy: pol, SegmentSize: 64 << 10})
			const streams, n = 4, 3000
			tried := make([]int, streams)
			var wg sync.WaitGroup
			for s := range streams {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range n {
						fill := func(w *Writer) {
							w.Record(func(dst []byte) []byte {
								return binary.BigEndian.AppendUint64(dst, uint64(s)<<32|uint64(i))
							})
						}
						if s%2 == 0 && l.TryWrite(0, fill, func() {}) {
							tried[s]++
							continue
						}
						ch := make(chan error, 1)
						l.Append(fill, func(err error) { ch <- err })
						if i%7 != 0 { // mostly not waiting: later records are tried while it is queued
							continue
						}
						if err := <-ch; err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			if _, err := l.Rotate(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			// Closed before the test ends: its spare segment, made in
			// the background, is otherwise still being written when the
			// test's directory is removed.
			l2, got, _ := openOS(t, dir, Options{Policy: pol, SegmentSize: 64 << 10})
			if err := l2.Close(); err != nil {
				t.Fatal(err)
			}
			next := make([]uint64, streams)
			for _, v := range got {
				s, i := v>>32, v&0xffffffff
				if i != next[s] {
					t.Fatalf("stream %d: record %d recovered where %d was due", s, i, next[s])
				}
				next[s]++
			}
			for s := range streams {
				if next[s] != n {
					t.Fatalf("stream %d: %d records recovered, want %d", s, next[s], n)
				}
			}
			if tried[0]+tried[2] == 0 {
				t.Fatal("TryWrite never wrote: the test tried nothing")
			}
			t.Logf("%s: %d and %d of %d records written by TryWrite", pol, tried[0], tried[2], n)
		})
	}
}

// TestTryWriteRefusesAlways: with SyncAlways a record counts only once
// synced, so TryWrite (which does not sync) never writes.
func TestTryWriteRefusesAlways(t *testing.T) {
	l, _, _ := openOS(t, t.TempDir(), Options{Policy: SyncAlways})
	defer l.Close()
	if l.TryWrite(0, func(w *Writer) { w.Record(rec(1)) }, func() { t.Error("then ran") }) {
		t.Fatal("TryWrite wrote with SyncAlways")
	}
}

// TestTryWriteThenBeforeRotate: a snapshot rotates the log, then copies
// the tables and deletes the segments before the new one; a record
// written by TryWrite must have its effect (then) in the tables before a
// Rotate issued meanwhile returns, or the snapshot misses it and its
// segment is deleted.
func TestTryWriteThenBeforeRotate(t *testing.T) {
	l, _, _ := openOS(t, t.TempDir(), Options{Policy: SyncEverySec})
	defer l.Close()
	inThen := make(chan struct{})
	var applied atomic.Bool
	go l.TryWrite(0, func(w *Writer) { w.Record(rec(1)) }, func() {
		close(inThen)
		time.Sleep(100 * time.Millisecond)
		applied.Store(true)
	})
	<-inThen
	if _, err := l.Rotate(); err != nil {
		t.Fatal(err)
	}
	if !applied.Load() {
		t.Fatal("Rotate returned before the effect of a record written before it was applied")
	}
}
