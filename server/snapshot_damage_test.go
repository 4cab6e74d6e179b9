package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestDamagedSnapshotSetAside: a snapshot is read in pieces, its
// checksum first; a whole one loads every entry, across sections. A
// damaged one (a byte flipped anywhere, cut short, a bad header) loads
// nothing: the copies it held are lost here (the log segments it covers
// are gone), so it and the log are set aside in damaged-<time> for the
// operator and the server starts with no copy and reports none, to be
// re-seeded like a server whose data directory was lost. It refused to
// start, and a cluster starting again stayed down for it (an attack).
func TestDamagedSnapshotSetAside(t *testing.T) {
	const keys = 30_000 // about 4 MiB: several sections of snapChunk
	dir := t.TempDir()
	cfg := Config{ID: 0, CoordAddr: "127.0.0.1:1", Secret: testSecret, DataDir: dir, SnapshotBytes: -1, Logger: zerolog.Nop()}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	val := []byte(strings.Repeat("v", 100))
	logFrames(s, keys, val)
	_ = s.dur.log.Close()
	if s, err = New(cfg); err != nil { // the tables from the log
		t.Fatal(err)
	}
	if _, err := s.snapshot(); err != nil {
		t.Fatal(err)
	}
	_ = s.dur.log.Close()
	snaps, err := filepath.Glob(filepath.Join(dir, snapPrefix+"*"))
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots %v (%v): want one", snaps, err)
	}
	whole, err := os.ReadFile(snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(whole) < 3*snapChunk {
		t.Fatalf("snapshot of %d bytes: want several sections", len(whole))
	}
	var startLogged func(t *testing.T, damage func([]byte) []byte, logged *strings.Builder) (*Server, error)

	start := func(t *testing.T, damage func([]byte) []byte) (*Server, error) {
		t.Helper()
		return startLogged(t, damage, nil)
	}
	startLogged = func(t *testing.T, damage func([]byte) []byte, logged *strings.Builder) (*Server, error) {
		t.Helper()
		d := t.TempDir()
		if err := os.CopyFS(d, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		b := damage(append([]byte(nil), whole...))
		if err := os.WriteFile(filepath.Join(d, filepath.Base(snaps[0])), b, 0o644); err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.DataDir = d
		if logged != nil {
			c.Logger = zerolog.New(logged)
		}
		return New(c)
	}
	s2, err := start(t, func(b []byte) []byte { return b })
	if err != nil {
		t.Fatalf("whole snapshot: %v", err)
	}
	if n := s2.tableFor(0).len(); n != keys {
		t.Fatalf("whole snapshot loaded %d keys, want %d", n, keys)
	}
	if v, ok := s2.tableFor(0).get([]byte("key-00029999")); !ok || string(v) != string(val) {
		t.Fatalf("last key %q %v", v, ok)
	}
	_ = s2.dur.log.Close()

	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		want   string
	}{
		{"flipped in the middle", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }, "checksum mismatch"},
		{"flipped near the end", func(b []byte) []byte { b[len(b)-10] ^= 0x80; return b }, "checksum mismatch"},
		{"cut short", func(b []byte) []byte { return b[:len(b)-snapChunk] }, "checksum mismatch"},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, "bad header"},
		{"too short", func(b []byte) []byte { return b[:10] }, "bad header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logged strings.Builder
			s3, err := startLogged(t, tc.damage, &logged)
			if err != nil {
				t.Fatalf("did not start with a damaged snapshot: %v", err)
			}
			defer s3.dur.log.Close()
			if n := s3.tableFor(0).len(); n != 0 {
				t.Errorf("loaded %d keys from a damaged snapshot", n)
			}
			if idx := s3.dur.indexes(); len(idx) != 0 {
				t.Errorf("reports copies %v: want none", idx)
			}
			if !strings.Contains(logged.String(), "is damaged") || !strings.Contains(logged.String(), tc.want) {
				t.Errorf("log %q: want it to say the snapshot is damaged (%s)", logged.String(), tc.want)
			}
			kept, _ := filepath.Glob(filepath.Join(s3.cfg.DataDir, "damaged-*", filepath.Base(snaps[0])))
			wal, _ := filepath.Glob(filepath.Join(s3.cfg.DataDir, "damaged-*", "wal"))
			if len(kept) != 1 || len(wal) != 1 {
				t.Errorf("set aside: snapshot %v, log %v; want both under damaged-*", kept, wal)
			}
		})
	}
}
