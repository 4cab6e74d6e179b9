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
	k := []byte(keysOf("pinned", 0, 2, 1)[0])
	const rounds = 64
	base := liveHeap()
	mismatches, refused := 0, 0
	for i := 1; i <= rounds; i++ {
		v := bytes.Repeat([]byte{byte(i)}, 1<<20)
		if ans, err := cn.do(&wire.Frame{Op: wire.OpPut, Key: k, Value: v}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
			t.Fatalf("round %d: put: %v %v %s", i, err, ans.Status, ans.Value)
		}
		ans, err := cn.do(&wire.Frame{Op: wire.OpCAS, Key: k, Value: []byte("new"), Aux: []byte("not it"), Flags: wire.FlagOldPresent,
			Client: 777, Seq: uint64(i), Floor: 1}, 10*time.Second)
		switch {
		case err != nil:
			t.Fatalf("round %d: cas: %v", i, err)
		case ans.Status == wire.StatusMismatch && bytes.Equal(ans.Value, v):
			mismatches++
		case ans.Status == wire.StatusUnavailable:
			refused++
		default:
			t.Fatalf("round %d: cas answered %v %.40q", i, ans.Status, ans.Value)
		}
	}
	grew := int64(liveHeap()) - int64(base)
	t.Logf("%d rounds: %d mismatches remembered, %d refused; the heap of both servers grew by %.1f MiB", rounds, mismatches, refused, float64(grew)/(1<<20))
	if limit := int64(2*maxHeldBytes + 32<<20); grew > limit {
		t.Fatalf("the heap grew by %.1f MiB for one client's %d mismatch records, want at most %.0f MiB", float64(grew)/(1<<20), mismatches, float64(limit)/(1<<20))
	}
	if refused == 0 {
		t.Fatalf("no write of the client refused after %d remembered mismatches of 1 MB", mismatches)
	}
}
