package server

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// The record warm touches for a key is that key's own, the one its lookup
// compares: otherwise warming would fetch the wrong cache lines.
func TestWarmCandidateIsTheKeysRecord(t *testing.T) {
	tb := newTable()
	const n = 100_000
	for i := range n {
		tb.set(fmt.Sprintf("key-%d", i), []byte("v"), uint64(i+1))
	}
	own, absent := 0, 0
	for i := range n {
		k := []byte(fmt.Sprintf("key-%d", i))
		h := hashKey(k)
		st := tb.stripeOf(h)
		st.mu.RLock()
		p := st.m.candidate(h)
		r, _ := st.m.get(k, h)
		st.mu.RUnlock()
		if p == r.ptr() {
			own++
		}
		// A key never stored: its candidate, if any, is some other key's.
		k = []byte(fmt.Sprintf("missing-%d", i))
		h = hashKey(k)
		st = tb.stripeOf(h)
		st.mu.RLock()
		if p := st.m.candidate(h); p == nil {
			absent++
		} else if recAt(p).key() == string(k) {
			t.Fatalf("candidate of a missing key %q is a record of that key", k)
		}
		st.mu.RUnlock()
	}
	// Only a tag collision earlier in the key's probe run (1 in 128 per
	// slot passed; runs grow long as a map fills towards 7/8 before it
	// doubles) or a run longer than candidate looks points elsewhere.
	if own < n*9/10 {
		t.Fatalf("candidate is the key's own record for %d of %d keys", own, n)
	}
	if absent < n*9/10 {
		t.Fatalf("missing keys: no candidate for only %d of %d", absent, n)
	}
}

// warm changes nothing and runs beside writers and readers of the same
// table (under -race: it reads only under the stripes' locks); a batch
// that covers every stripe takes each lock once.
func TestWarmBesideWritersAndReaders(t *testing.T) {
	tb := newTable()
	const n = 20_000
	key := func(i int) string { return fmt.Sprintf("k%d", i) }
	for i := range n {
		tb.set(key(i), []byte("v0"), 1)
	}
	var wg sync.WaitGroup
	stop := time.Now().Add(300 * time.Millisecond)
	for w := range 2 { // writers: new versions, deletes, new keys (growth)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := uint64(2); time.Now().Before(stop); v++ {
				i := int(v*7+uint64(w)) % n
				tb.merge(key(i), []byte(fmt.Sprint(v)), v, v%5 == 0, false)
				tb.merge(fmt.Sprintf("new-%d-%d", w, v), []byte("x"), v, false, false)
			}
		}()
	}
	for range 2 { // warmers: batches of all sizes, up to more than warmBatch
		wg.Add(1)
		go func() {
			defer wg.Done()
			hs := make([]uint64, 0, 2*warmBatch)
			for j := 0; time.Now().Before(stop); j++ {
				hs = hs[:0]
				for k := range j % (2 * warmBatch) {
					hs = append(hs, hashKey([]byte(key((j+k)%n))))
				}
				tb.warm(hs)
			}
		}()
	}
	wg.Add(1)
	go func() { // a reader
		defer wg.Done()
		for i := 0; time.Now().Before(stop); i++ {
			tb.get([]byte(key(i % n)))
		}
	}()
	wg.Wait()

	// Warming a fresh table's keys leaves every value as it was.
	tb = newTable()
	for i := range n {
		tb.set(key(i), []byte(key(i)), 1)
	}
	var hs []uint64
	for i := range warmBatch {
		hs = append(hs, hashKey([]byte(key(i))))
	}
	tb.warm(hs)
	// A stripe held by someone else (a writer, a snapshot's encoding) is
	// left out: warm never waits for it.
	held := tb.stripeOf(hs[0])
	held.mu.Lock()
	returned := make(chan struct{})
	go func() { tb.warm(hs); close(returned) }()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("warm waited for a stripe another goroutine holds")
	}
	held.mu.Unlock()
	for i := range n {
		if v, ok := tb.get([]byte(key(i))); !ok || string(v) != key(i) {
			t.Fatalf("after warm: %s = %q %v", key(i), v, ok)
		}
	}
}
