package wal

import (
	"encoding/binary"
	"errors"
	"io"
	"sync/atomic"
	"testing"
)

// countReads is the OS file system counting the files opened to be read.
type countReads struct {
	OSFS
	n atomic.Int64
}

func (c *countReads) OpenRead(name string) (io.ReadCloser, error) {
	c.n.Add(1)
	return c.OSFS.OpenRead(name)
}

func (c *countReads) ReadFile(name string) ([]byte, error) {
	c.n.Add(1)
	return c.OSFS.ReadFile(name)
}

// TestReadFromReadsOnlyTheRecentEnd: ReadFrom hands over every record from
// the newest segment holding a record it was asked for, in order, and
// reads the log's segments from the newest back only that far (a partial
// resync after a short outage reads the end of a long log, not all of
// it); when no record matches, it says so, having read each segment once.
func TestReadFromReadsOnlyTheRecentEnd(t *testing.T) {
	fsys := &countReads{}
	l, _, _ := openOS(t, t.TempDir(), Options{Policy: SyncAlways, SegmentSize: 1 << 10, FS: fsys})
	defer l.Close()
	appendN(t, l, 0, 400)
	segs, err := l.segments()
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 10 {
		t.Fatalf("%d segments; the test wants many", len(segs))
	}
	value := func(r []byte) uint64 { return binary.BigEndian.Uint64(r) }

	fsys.n.Store(0)
	var got []uint64
	err = l.ReadFrom(func(r []byte) bool { return value(r) <= 390 }, func(r []byte) error {
		got = append(got, value(r))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0] > 390 || got[len(got)-1] != 399 {
		t.Fatalf("read %v: want a run that starts at or before 390 and ends at 399", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("read %v: not in order, or a record missing", got)
		}
	}
	if got[0] < 300 {
		t.Fatalf("read from record %d: more than the segment holding 390", got[0])
	}
	// The newest segment or two back, then forward from the match.
	if n := fsys.n.Load(); n > 6 {
		t.Fatalf("%d segment reads of %d segments to find record 390 near the end", n, len(segs))
	}

	fsys.n.Store(0)
	got = got[:0]
	err = l.ReadFrom(func([]byte) bool { return false }, func(r []byte) error {
		got = append(got, value(r))
		return nil
	})
	if !errors.Is(err, ErrNoStart) || len(got) != 0 {
		t.Fatalf("no record to start from: %v, %d records read; want ErrNoStart and none", err, len(got))
	}
	if n := fsys.n.Load(); n != int64(len(segs)) {
		t.Fatalf("%d segment reads to find no start in %d segments: want each read once", n, len(segs))
	}

	// ReadAll, for scale: every segment.
	fsys.n.Store(0)
	if err := l.ReadAll(func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := fsys.n.Load(); n != int64(len(segs)) {
		t.Fatalf("ReadAll read %d segments of %d", n, len(segs))
	}
}
