package server

import (
	"bytes"
	"testing"
)

func TestTableVersionsAndValues(t *testing.T) {
	tb := newTable()
	tb.set("a", []byte("one"), 1)
	if v, ok := tb.get([]byte("a")); !ok || string(v) != "one" {
		t.Fatalf("get a = %q %v", v, ok)
	}
	if tb.merge("a", []byte("old"), 1, false, false) {
		t.Fatal("merge of an equal version applied")
	}
	if !tb.merge("a", []byte("two"), 5, false, false) {
		t.Fatal("merge of a newer version not applied")
	}
	if v, _ := tb.get([]byte("a")); string(v) != "two" {
		t.Fatalf("a = %q after merge", v)
	}
	// Empty and binary values survive as they are.
	tb.set("empty", []byte{}, 2)
	if v, ok := tb.get([]byte("empty")); !ok || len(v) != 0 {
		t.Fatalf("empty value: %q %v", v, ok)
	}
	bin := []byte{0, 1, 0, 255}
	tb.set("bin\x00key", bin, 3)
	if v, ok := tb.get([]byte("bin\x00key")); !ok || !bytes.Equal(v, bin) {
		t.Fatalf("binary value: %q %v", v, ok)
	}
	// A delete while seeding leaves a tombstone that refuses older writes.
	if !tb.merge("a", nil, 7, true, true) {
		t.Fatal("delete not applied")
	}
	if tb.merge("a", []byte("stale"), 6, false, true) {
		t.Fatal("a write older than the delete resurrected the key")
	}
	if _, ok := tb.get([]byte("a")); ok {
		t.Fatal("deleted key still present")
	}
	if tb.len() != 2 {
		t.Fatalf("len %d, want 2", tb.len())
	}
	n := 0
	_ = tb.each(func(k string, v []byte, ver uint64) error { n++; return nil })
	if n != 2 {
		t.Fatalf("each visited %d entries", n)
	}
}

// The table counts its records' bytes through every write, delete and
// reset (the collector's tuning reads it).
func TestTableBytes(t *testing.T) {
	tb := newTable()
	want := func(what string, n int) {
		t.Helper()
		if got := tb.bytes.Load(); got != int64(n) {
			t.Fatalf("%s: %d bytes, want %d", what, got, n)
		}
	}
	rec := func(k, v string) int { return recHeader + len(k) + len(v) }
	tb.set("a", []byte("one"), 1)
	want("set a", rec("a", "one"))
	tb.set("a", []byte("three"), 2)
	want("set a again", rec("a", "three"))
	tb.merge("b", []byte("bb"), 3, false, false)
	want("merge b", rec("a", "three")+rec("b", "bb"))
	tb.merge("b", []byte("longer"), 2, false, false) // older: not applied
	want("older merge of b", rec("a", "three")+rec("b", "bb"))
	tb.mergeRec(makeRec([]byte("a"), []byte("x")), 4, false)
	want("mergeRec a", rec("a", "x")+rec("b", "bb"))
	tb.merge("b", nil, 5, true, false)
	want("delete b", rec("a", "x"))
	tb.merge("zz", nil, 6, true, true) // delete of an absent key
	want("delete of an absent key", rec("a", "x"))
	for i := range 1000 {
		tb.set(itoa(i), []byte("v"), uint64(10+i))
	}
	tb.reset()
	want("reset", 0)
}
