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
