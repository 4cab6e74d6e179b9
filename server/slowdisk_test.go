package server

import (
	"bytes"
	"testing"
	"time"

	"ftkv/timing"
	"ftkv/wire"
)

// TestSecondarySlowDiskDoesNotHoldAcks: without fsync_secondary a
// secondary acknowledges a write once applied; its log catches up on its
// own. Its log wrote a large write on the event loop when the log was
// idle, before the acknowledgement: with a slow disk every write of 1 MiB
// was acknowledged only once the disk had taken it, and the link, silent
// for as long, reported "cannot replicate" (the coordinator fails such a
// secondary: spurious failovers under heavy writes of 1 MiB values).
//
// The secondary's disk here takes no large write at all until the test
// is done: every write must be acknowledged all the same. (It measured
// a disk of 1 s per MiB against 600 ms once; a fresh-clone CI run, race
// detector and the end-to-end suite beside it, took 617 ms for a write
// that had not waited.)
func TestSecondarySlowDiskDoesNotHoldAcks(t *testing.T) {
	gate := newDiskGate()
	a, _ := pairOfTwo(t, "always", false, func(c *Config) {
		if c.ID == 1 {
			c.walFS = slowFS{held: gate}
		}
		// Leases of a second, as below: a CI run beside the end-to-end
		// suite starved the heartbeats past the 300 ms timeout's lease
		// ("shard is changing hands; retry" for the third write).
		c.Timing = timing.New(time.Second)
	})
	defer gate.release()
	cn := dialConn(t, a.client, false)
	keys := keysOf("big", 0, 2, 3)
	val := bytes.Repeat([]byte("v"), 1<<20-512)
	for _, k := range keys {
		start := time.Now()
		// (UNAVAILABLE, a lease lapsing on a loaded machine, is retried
		// with the same client and sequence number, as a client does.)
		ans, err := cn.write(&wire.Frame{Op: wire.OpPut, Key: []byte(k), Value: val}, 10*time.Second)
		if err != nil || ans.Status != wire.StatusOK {
			t.Fatalf("put %s while the secondary's disk takes no large write: %v %v %s (after %s)",
				k, err, ans.Status, ans.Value, time.Since(start).Round(time.Millisecond))
		}
		t.Logf("a 1 MiB write acknowledged in %s; the secondary's disk has taken none of it", time.Since(start).Round(time.Millisecond))
	}
	// The secondary's log did try to write them (else this test proves
	// nothing), and takes them once the disk does.
	select {
	case <-gate.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the secondary's log never wrote the 1 MiB writes")
	}
	gate.release()
	for _, k := range keys {
		ans, err := cn.doRetry(&wire.Frame{Op: wire.OpGet, Key: []byte(k)}, 10*time.Second)
		if err != nil || ans.Status != wire.StatusOK || len(ans.Value) != len(val) {
			t.Fatalf("get %s: %v %v (%d bytes)", k, err, ans.Status, len(ans.Value))
		}
	}
}

// TestPrimarySlowDiskDoesNotHoldItsLoop: at fsync everysec a primary's
// log wrote a commit's records on the event loop that read the
// acknowledgement, holding the shard's lock, when the log was idle. With
// a slow disk, a write of 1 MiB held that loop until the disk took it:
// every other client of the loop waited (a read of another key too).
// The write itself is answered once written, as before.
//
// The primary's disk here takes no large write until the read of another
// key has been answered (it measured a disk of 1 s per MiB against
// thresholds once: a test of timing, not of behaviour).
func TestPrimarySlowDiskDoesNotHoldItsLoop(t *testing.T) {
	gate := newDiskGate()
	a, _ := pairOfTwo(t, "everysec", false, func(c *Config) {
		if c.ID == 0 {
			c.walFS = slowFS{held: gate}
		}
		// Leases of a second: a CI run beside the end-to-end suite (race
		// detector, two cores) once starved this process's heartbeats
		// and pings past the 300 ms timeout's lease ("primary lost its
		// lease; retry").
		c.Timing = timing.New(time.Second)
	})
	defer gate.release()
	keys := keysOf("loop", 0, 2, 2)
	small := dialConn(t, a.client, false)
	// (UNAVAILABLE, a lease lapsing on a loaded machine, is retried with
	// the same client and sequence number, as a client does.)
	if ans, err := small.write(&wire.Frame{Op: wire.OpPut, Key: []byte(keys[1]), Value: []byte("small")}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("put: %v %v %s", err, ans.Status, ans.Value)
	}
	big := dialConn(t, a.client, false)
	done := make(chan error, 1)
	go func() {
		ans, err := big.write(&wire.Frame{Op: wire.OpPut, Key: []byte(keys[0]), Value: bytes.Repeat([]byte("v"), 1<<20-512)}, 20*time.Second)
		if err == nil && ans.Status != wire.StatusOK {
			t.Errorf("big put: %v %s", ans.Status, ans.Value)
		}
		done <- err
	}()
	select {
	case <-gate.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the primary's log never wrote the 1 MiB write")
	}
	// (A loop held by the disk answers nothing: retrying UNAVAILABLE
	// does not hide it.)
	ans, err := small.doRetry(&wire.Frame{Op: wire.OpGet, Key: []byte(keys[1])}, 10*time.Second)
	if err != nil || ans.Status != wire.StatusOK || string(ans.Value) != "small" {
		t.Fatalf("a read of another key while the disk holds a 1 MiB write: %v %v %q", err, ans.Status, ans.Value)
	}
	select {
	case err := <-done:
		t.Fatalf("the 1 MiB write answered (%v) before its log write could end", err)
	default:
	}
	gate.release()
	if err := <-done; err != nil {
		t.Fatalf("big put: %v", err)
	}
}
