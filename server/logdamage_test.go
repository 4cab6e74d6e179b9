package server

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/wire"
)

// TestLogDamagedInTheMiddleNotChosen: a server's log damaged in its
// middle (whole segments after the damage) recovers up to the damage
// only, so its copies may miss acknowledged writes: it must report none
// of them as complete (never chosen as a shard's copy; re-seeded from
// another, or the shard is unavailable). A black-box test deleted the
// other copy's directory and the cluster served the cut copy: 694
// acknowledged writes lost, old values read.
func TestLogDamagedInTheMiddleNotChosen(t *testing.T) {
	// Segments of 4 KiB: whole segments follow the damage. One segment
	// (the default 16 MiB): whole batches follow it in the same segment,
	// which a torn tail never has (the black-box test's first case).
	t.Run("segments after it", func(t *testing.T) { logDamagedInTheMiddle(t, 4<<10) })
	t.Run("batches after it", func(t *testing.T) { logDamagedInTheMiddle(t, 0) })
}

func logDamagedInTheMiddle(t *testing.T, segment int64) {
	fc := startFakeCoord(t)
	dirs := []string{abandonedDir(t), abandonedDir(t)}
	small := func(cfg *Config) { cfg.walSegment = segment }
	a, _ := startDurableServer(t, fc, 0, dirs[0], "always", false, small)
	b, _ := startDurableServer(t, fc, 1, dirs[1], "always", false, small)
	v := wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}
	pushView(t, v, a, b)
	cn := dialConn(t, a.client, false)
	keys := keysOf("d", 0, 2, 40)
	for i := range 400 {
		f := &wire.Frame{Op: wire.OpPut, Client: 7, Seq: uint64(i + 1), Floor: uint64(i + 1), Key: []byte(keys[i%len(keys)]),
			Value: []byte(fmt.Sprintf("value-%04d-%s", i, make([]byte, 40)))}
		if ans, err := cn.doRetry(f, 10*time.Second); err != nil || ans.Status != wire.StatusOK { // (UNAVAILABLE retried, as a client does)
			t.Fatalf("put %d: %v %v", i, err, ans.Status)
		}
	}
	a.dur.snapMu.Lock() // an abrupt stop: no snapshot from now on
	defer a.dur.snapMu.Unlock()
	segs, _ := filepath.Glob(filepath.Join(dirs[0], "wal", "*.wal"))
	if segment > 0 && len(segs) < 3 || segment == 0 && len(segs) != 1 {
		t.Fatalf("%d log segments of %d bytes", len(segs), segment)
	}
	// A byte flipped in the middle of what the first segment holds.
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	used := int64(len(data))
	for used > 0 && data[used-1] == 0 {
		used-- // a preallocated segment's zeros
	}
	f, err := os.OpenFile(segs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	at := used / 2
	buf := make([]byte, 1)
	if _, err := f.ReadAt(buf, at); err != nil {
		t.Fatal(err)
	}
	buf[0] ^= 0xff
	if _, err := f.WriteAt(buf, at); err != nil {
		t.Fatal(err)
	}
	f.Close()

	log := &syncBuf{}
	s, err := New(Config{ID: 0, Incarnation: 2, CoordAddr: "127.0.0.1:1", Secret: testSecret, walSegment: segment,
		DataDir: dirs[0], Fsync: "always", Logger: zerolog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	if idx := s.dur.indexes(); len(idx) != 0 {
		t.Fatalf("a log cut in its middle reports complete copies %+v (the writes after the damage are missing)\n%s", idx, grepLines(log.String(), "damaged"))
	}
	if !s.dur.isPartial(0) {
		t.Fatal("shard 0's copy, cut at the damage, is not marked for re-seeding")
	}
	// The damage is set aside now and the log looks whole: a second
	// start (before any re-seeding) must still know the copies are cut.
	_ = s.dur.log.Close()
	s2, err := New(Config{ID: 0, Incarnation: 3, CoordAddr: "127.0.0.1:1", Secret: testSecret, walSegment: segment,
		DataDir: dirs[0], Fsync: "always", Logger: zerolog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.dur.log.Close()
	if idx := s2.dur.indexes(); len(idx) != 0 {
		t.Fatalf("the start after the one that found the damage reports complete copies %+v", idx)
	}
}
