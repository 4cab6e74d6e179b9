package server

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestDumpRoundTrip(t *testing.T) {
	a, b := newTable(), newTable()
	want := map[string][]byte{
		"":            []byte("empty key"),
		"nul\x00key":  []byte("v\x00al"),
		"empty value": {},
		"big":         bytes.Repeat([]byte{0xff}, 70000),
	}
	i := 0
	for k, v := range want {
		if i%2 == 0 {
			a.set(k, v, 1)
		} else {
			b.set(k, v, 1)
		}
		i++
	}
	p := filepath.Join(t.TempDir(), "server_0.primary")
	if err := writeDump(p, []*table{a, b}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDump(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("%q = %q, want %q", k, got[k], v)
		}
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Fatal("temporary file left behind")
	}
}

func TestDumpEmpty(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d")
	if err := writeDump(p, nil); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDump(p)
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestReadDumpRejectsGarbage(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	tb := newTable()
	tb.set("k", []byte("v"), 1)
	if err := writeDump(good, []*table{tb}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(good)
	cases := map[string][]byte{
		"magic":     append([]byte("NOTADUMP"), raw[8:]...),
		"truncated": raw[:len(raw)-1],
		"trailing":  append(append([]byte{}, raw...), 0),
		"short":     raw[:10],
	}
	for name, b := range cases {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, b, 0o644)
		if _, err := ReadDump(p); !errors.Is(err, ErrBadDump) {
			t.Errorf("%s: err = %v, want ErrBadDump", name, err)
		}
	}
}

func TestDedupFloorPrunes(t *testing.T) {
	d := newDedup()
	for s := uint64(1); s <= 10; s++ {
		d.put(7, s, &outcome{done: true})
	}
	if o, stale := d.lookup(7, 5, 1); o == nil || stale {
		t.Fatal("record 5 must be remembered while the floor is 1")
	}
	if _, stale := d.lookup(7, 11, 6); stale {
		t.Fatal("seq 11 is above the floor")
	}
	if n := d.size(); n != 5 {
		t.Fatalf("%d records after floor 6, want 5 (6..10)", n)
	}
	if _, stale := d.lookup(7, 3, 6); !stale {
		t.Fatal("seq 3 is below the floor: a retry of it cannot happen")
	}
}

func TestDedupSnapshotRestore(t *testing.T) {
	a := newDedup()
	a.mu.Lock()
	a.put(7, 3, &outcome{done: true, status: 2, flags: 1, value: []byte("cur\x00")})
	a.put(7, 4, &outcome{}) // in flight: travels with its REPL frame
	a.put(9, 1, &outcome{done: true})
	a.mu.Unlock()
	b := newDedup()
	for _, c := range a.snapshot() {
		if err := b.restore(c); err != nil {
			t.Fatal(err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	o, _ := b.lookup(7, 3, 1)
	if o == nil || !o.done || o.status != 2 || o.flags != 1 || string(o.value) != "cur\x00" {
		t.Fatalf("record (7,3) = %+v", o)
	}
	if o, _ := b.lookup(7, 4, 1); o != nil {
		t.Fatal("an unfinished record was copied")
	}
	if o, _ := b.lookup(9, 1, 1); o == nil || !o.done {
		t.Fatal("record (9,1) missing")
	}
}
