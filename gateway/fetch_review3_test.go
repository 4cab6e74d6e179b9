package gateway

import (
	"testing"
	"time"
)

// TestClosedWaiterLeavesTheBudget: a connection waiting for the fetch
// budget (its GET of a 1 MiB value) that closes leaves the queue within
// parkMax, its reads after it are not run, its write after them is (as
// Redis runs what a client sent before it closed), and once the fetches
// under way end nothing stays counted.
func TestClosedWaiterLeavesTheBudget(t *testing.T) {
	st := newMemStore()
	st.m["big"] = make([]byte, maxValue)
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute })
	if !g.fetches.acquire(fetchBudget, func() bool { return false }) {
		t.Fatal("acquire")
	}
	nc := sendNew(t, g.Addr(), cmd("GET", "big")+cmd("MGET", "big", "big")+cmd("SET", "after", "x"), time.Minute)
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
	for end := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st.mu.Lock()
		v := st.m["after"]
		st.mu.Unlock()
		if string(v) == "x" {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the SET the closed connection sent after its GETs did not run")
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
	if q := g.queued.Load(); q != 0 {
		t.Fatalf("%d bytes of commands still counted in flight", q)
	}
}
