package wal

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestScanAcrossItsBuffer: segments are read through a buffer of scanBuf
// bytes; batches that straddle its end, and a batch larger than it, are
// read whole, in order, on recovery and by ReadAll; a batch torn past the
// first buffer's worth ends the log there, with only its bytes dropped.
func TestScanAcrossItsBuffer(t *testing.T) {
	dir := t.TempDir()
	l, _, _ := openOS(t, dir, Options{Policy: SyncAlways, SegmentSize: 8 << 20})
	// Records of 8 + size bytes: the value, then filler.
	sizes := []int{3, 5000, scanBuf - 100, 77, scanBuf + 12345, 1, 2 * scanBuf, 40000, 9}
	var written int
	for i, size := range sizes {
		ch := make(chan error, 1)
		l.Append(func(w *Writer) {
			w.Record(func(dst []byte) []byte {
				dst = binary.BigEndian.AppendUint64(dst, uint64(i))
				return append(dst, bytes.Repeat([]byte{byte(i + 1)}, size)...)
			})
		}, func(err error) { ch <- err })
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
		written += batchHeader + 4 + 8 + size
	}
	check := func(what string, b []byte, i int) {
		t.Helper()
		if len(b) != 8+sizes[i] || !bytes.Equal(b[8:], bytes.Repeat([]byte{byte(i + 1)}, sizes[i])) {
			t.Fatalf("%s: record %d is %d bytes or damaged, want %d", what, i, len(b), 8+sizes[i])
		}
	}
	var got []uint64
	if err := l.ReadAll(func(b []byte) error {
		i := len(got)
		got = append(got, binary.BigEndian.Uint64(b))
		check("ReadAll", b, i)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want(t, got, len(sizes))
	crashed := copyDir(t, dir)
	l.Close()

	// Tear the last batch: its last 3 bytes never reached the disk.
	seg := filepath.Join(crashed, "0000000000000001.wal")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[written-3:written], []byte{0, 0, 0})
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	n := 0
	l2, r, err := Open(crashed, Options{Policy: SyncAlways, SegmentSize: 8 << 20}, func(b []byte) error {
		check("recovery", b, n)
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if n != len(sizes)-1 {
		t.Fatalf("recovered %d records, want %d (all but the torn one)", n, len(sizes)-1)
	}
	if last := int64(batchHeader + 4 + 8 + sizes[len(sizes)-1]); r.Reason == "" || r.Truncated != last-3 {
		t.Fatalf("recovery %+v: want the torn batch reported and its %d written bytes dropped", r, last-3)
	}
}

// TestDamagedLengthAllocatesNothing: a batch header whose length is
// garbage (up to maxBatch, past the file's end: stale blocks after a
// crash) ends the log as a torn batch without the scan allocating that
// length first (a review saw 1 GiB allocated for a 300-byte segment).
func TestDamagedLengthAllocatesNothing(t *testing.T) {
	dir := t.TempDir()
	l, _, _ := openOS(t, dir, Options{Policy: SyncAlways, NoPrealloc: true})
	appendN(t, l, 0, 10)
	l.Close()
	seg := filepath.Join(dir, "0000000000000001.wal")
	f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var h [batchHeader + 4]byte
	binary.BigEndian.PutUint32(h[:], maxBatch-1)
	binary.BigEndian.PutUint64(h[8:], 11)
	copy(h[batchHeader:], "junk")
	if _, err := f.Write(h[:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l2, got, r := openOS(t, dir, Options{Policy: SyncAlways, NoPrealloc: true})
	runtime.ReadMemStats(&after)
	l2.Close()
	want(t, got, 10)
	if r.Reason == "" || r.Truncated != int64(len(h)) {
		t.Fatalf("recovery %+v: want the damaged batch reported and its %d bytes dropped", r, len(h))
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("recovering a %d-byte tail allocated %d MiB", len(h), grew>>20)
	}
}
