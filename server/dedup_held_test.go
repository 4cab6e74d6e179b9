package server

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"ftkv/wire"
)

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestMismatchRecordsHoldBounded: one client whose floor stays at 1 sends
// a failing compare-and-swap after each fresh 1 MB value of the key; each
// MISMATCH record keeps the value it saw for a retry. Those records pinned
// every replaced value on the primary and the secondary (a review: 1.2 GB
// on each after 600 rounds). Now its writes are refused (retryable) once
// its records hold maxHeldBytes, and the heap of both servers stays within
// about twice that: 39-49 MiB measured, against 2 MiB more for each round
// without the bound (the limit was 16 MiB over twice the bound once: a CI
// run measured 48.5 MiB).
func TestMismatchRecordsHoldBounded(t *testing.T) {
	a, _ := pairOfTwo(t, "", false)
	cn := dialConn(t, a.client, false)
	const rounds = 64
	base := liveHeap()
	mismatches, refused := pinMismatches(t, cn, rounds, func(int) uint64 { return 777 })
	grew := int64(liveHeap()) - int64(base)
	t.Logf("%d rounds: %d mismatches remembered, %d refused; the heap of both servers grew by %.1f MiB", rounds, mismatches, refused, float64(grew)/(1<<20))
	if limit := int64(2*maxHeldBytes + 32<<20); grew > limit {
		t.Fatalf("the heap grew by %.1f MiB for one client's %d mismatch records, want at most %.0f MiB", float64(grew)/(1<<20), mismatches, float64(limit)/(1<<20))
	}
	if refused == 0 {
		t.Fatalf("no write of the client refused after %d remembered mismatches of 1 MB", mismatches)
	}
}

// TestMismatchRecordsHoldBoundedAcrossClients: as above, but each round's
// compare-and-swap comes from a client of its own, so no client reaches
// maxHeldBytes. Each MISMATCH record pinned its 1 MB value on both servers
// for the session TTL (10 minutes): 256 clients held 512 MiB, and a
// client can make as many client ids as it likes (up to max_sessions,
// 100,000). Now, once all records together hold maxHeldTotal, a further
// MISMATCH answer is not remembered: the answer reaches the client all
// the same, and a retry of it is compared again (a failed
// compare-and-swap changed nothing, so running it again is safe).
func TestMismatchRecordsHoldBoundedAcrossClients(t *testing.T) {
	a, b := pairOfTwo(t, "", false)
	cn := dialConn(t, a.client, false)
	const rounds = 192
	base := liveHeap()
	mismatches, refused := pinMismatches(t, cn, rounds, func(i int) uint64 { return 1000 + uint64(i) })
	grew := int64(liveHeap()) - int64(base)
	t.Logf("%d clients: %d mismatches, %d refused; the heap of both servers grew by %.1f MiB", rounds, mismatches, refused, float64(grew)/(1<<20))
	for _, s := range []*testServer{a, b} {
		if h := s.dd.held.Load(); h > maxHeldTotal+1<<20 {
			t.Fatalf("server %d's records hold %d bytes of values, want at most %d (and 1 MB beyond)", s.cfg.ID, h, maxHeldTotal)
		}
	}
	if refused != 0 {
		t.Fatalf("%d compare-and-swaps refused; want every one answered MISMATCH", refused)
	}
	if limit := int64(2*maxHeldTotal + 48<<20); grew > limit {
		t.Fatalf("the heap grew by %.1f MiB for %d clients' mismatch records, want at most %.0f MiB", float64(grew)/(1<<20), mismatches, float64(limit)/(1<<20))
	}
	// The last client's write, retried: compared again against the key's
	// value (or answered from its record, had it been kept), never
	// refused as forgotten.
	k := []byte(keysOf("pinned", 0, 2, 1)[0])
	ans, err := cn.doRetry(&wire.Frame{Op: wire.OpCAS, Key: k, Value: []byte("new"), Aux: []byte("not it"), Flags: wire.FlagOldPresent | wire.FlagRetry,
		Client: 1000 + rounds, Seq: rounds, Floor: 1}, 10*time.Second)
	if err != nil || ans.Status != wire.StatusMismatch || !bytes.Equal(ans.Value, bytes.Repeat([]byte{byte(rounds % 256)}, 1<<20)) {
		t.Fatalf("a retry of the last client's compare-and-swap: %v %v (%d bytes); want MISMATCH and the key's value", err, ans.Status, len(ans.Value))
	}
}

// pinMismatches runs rounds of: put a fresh 1 MB value of one key, then a
// compare-and-swap of it from client clientOf(round) (seq round, its
// floor 1) that fails, whose MISMATCH record keeps the value it saw. It
// returns how many were answered MISMATCH with that value and how many
// refused as too many for the client (UNAVAILABLE, retryable). Other
// UNAVAILABLE answers (the shard changing hands on a loaded machine) are
// retried, as a client would.
func pinMismatches(t *testing.T, cn *conn, rounds int, clientOf func(int) uint64) (mismatches, refused int) {
	t.Helper()
	k := []byte(keysOf("pinned", 0, 2, 1)[0])
	do := func(f *wire.Frame) wire.Frame {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ans, err := cn.do(f, 10*time.Second)
			if err != nil {
				t.Fatalf("%s: %v", f.Op, err)
			}
			if ans.Status != wire.StatusUnavailable || bytes.Contains(ans.Value, []byte("too many")) || time.Now().After(deadline) {
				return ans
			}
			time.Sleep(10 * time.Millisecond)
			f.Flags |= wire.FlagRetry
		}
	}
	for i := 1; i <= rounds; i++ {
		v := bytes.Repeat([]byte{byte(i)}, 1<<20)
		if ans := do(&wire.Frame{Op: wire.OpPut, Key: k, Value: v}); ans.Status != wire.StatusOK {
			t.Fatalf("round %d: put: %v %s", i, ans.Status, ans.Value)
		}
		ans := do(&wire.Frame{Op: wire.OpCAS, Key: k, Value: []byte("new"), Aux: []byte("not it"), Flags: wire.FlagOldPresent,
			Client: clientOf(i), Seq: uint64(i), Floor: 1})
		switch {
		case ans.Status == wire.StatusMismatch && bytes.Equal(ans.Value, v):
			mismatches++
		case ans.Status == wire.StatusUnavailable:
			refused++
		default:
			t.Fatalf("round %d: cas answered %v %.40q", i, ans.Status, ans.Value)
		}
	}
	return mismatches, refused
}
