package gateway

import (
	"testing"
	"time"
)

// TestClosedWaiterLeavesTheBudget: a connection waiting for the fetch
// budget (its GET of a 1 MiB value) that closes leaves the queue within
// parkMax, and once the fetches under way end nothing stays counted.
func TestClosedWaiterLeavesTheBudget(t *testing.T) {
	st := newMemStore()
	st.m["big"] = make([]byte, maxValue)
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute })
	if !g.fetches.acquire(fetchBudget, func() bool { return false }) {
		t.Fatal("acquire")
	}
	nc := sendNew(t, g.Addr(), cmd("GET", "big")+cmd("MGET", "big", "big")+cmd("GETSET", "big", "x"), time.Minute)
	waiting := func() int {
		g.fetches.mu.Lock()
		defer g.fetches.mu.Unlock()
		return len(g.fetches.wait)
	}
	for end := time.Now().Add(3 * time.Second); waiting() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the GET did not wait for the budget")
		}
	}
	nc.Close()
	for end := time.Now().Add(3 * time.Second); waiting() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the closed connection's fetch still waits")
		}
	}
	g.fetches.release(fetchBudget)
	time.Sleep(200 * time.Millisecond)
	g.fetches.mu.Lock()
	out := g.fetches.out
	g.fetches.mu.Unlock()
	if out != 0 {
		t.Fatalf("%d bytes still counted in the fetch budget", out)
	}
	if st.m["big"] == nil || len(st.m["big"]) != maxValue {
		t.Fatal("GETSET of a closed connection wrote")
	}
}
