package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMidSizeValuesNeverWaitForTheBudget: with the fetch budget spent (by
// clients of 1 MiB values), a client GETting a 30 KB value, under
// smallFetch, is answered at once: small fetches never wait. (A new
// connection's first GET is capped at capFloor, 16 KiB; over it, the
// estimate jumped to 1 MiB and the GET, then the next four with the
// estimate halving, waited their turn behind the large fetches.)
func TestMidSizeValuesNeverWaitForTheBudget(t *testing.T) {
	st := newMemStore()
	mid := strings.Repeat("m", 30000)
	st.m["mid"] = []byte(mid)
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute })
	// The budget spent by fetches under way (a hog's).
	if !g.fetches.acquire(fetchBudget, func() bool { return false }) {
		t.Fatal("acquire")
	}
	released := make(chan struct{})
	go func() {
		select {
		case <-released:
		case <-time.After(5 * time.Second):
		}
		g.fetches.release(fetchBudget)
	}()
	defer close(released)
	want := fmt.Sprintf("$30000\r\n%s\r\n", mid)
	for _, name := range []string{"GET", "STRLEN", "GETSET"} {
		nc := dialRESP(t, g.Addr())
		for i := range 5 {
			args := []string{name, "mid"}
			if name == "GETSET" {
				args = append(args, mid)
			}
			t0 := time.Now()
			got := readAnswer(t, nc, cmd(args...))
			if name != "STRLEN" && got != want || name == "STRLEN" && got != ":30000\r\n" {
				t.Fatalf("%s %d: %.40q", name, i, got)
			}
			if d := time.Since(t0); d > time.Second {
				t.Errorf("%s of a 30 KB value #%d on a new connection took %v: it waited for the fetch budget", name, i+1, d)
			}
		}
		nc.Close()
	}
}
