package gateway

import (
	"fmt"
	"net"
	"strings"
	"sync"
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

// TestSetNXFetchesWithinTheBudget: SETNX of a key holding 1 MiB fetches
// the current value (CompareAndSwapCurrent answers it on a mismatch),
// which the fetch budget must bound as a GET's: 100 new connections at
// once, each sending one SETNX, made the gateway fetch 100 MiB at once
// (a new connection's estimate is 64 bytes, so cas held nothing).
func TestSetNXFetchesWithinTheBudget(t *testing.T) {
	st := newMemStore()
	st.m["big"] = make([]byte, maxValue)
	st.perMiB = 30 * time.Millisecond // (the SETNXs arrive faster than the link drains)
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute })
	const conns = 100
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", g.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := nc.Write([]byte(cmd("SETNX", "big", "x") + cmd("SET", "big", "y", "NX"))); err != nil {
				t.Error(err)
				return
			}
			buf := make([]byte, 64)
			got := ""
			for len(got) < len(":0\r\n$-1\r\n") {
				n, err := nc.Read(buf)
				if err != nil {
					t.Error(err)
					return
				}
				got += string(buf[:n])
			}
			if got != ":0\r\n$-1\r\n" {
				t.Errorf("got %q", got)
			}
		}()
	}
	wg.Wait()
	peak := st.fetchPeak.Load()
	t.Logf("values fetched at once: at most %d MiB", peak>>20)
	if limit := int64(fetchBudget + maxValue); peak > limit {
		t.Errorf("SETNX made the gateway fetch %d MiB of values at once, want at most fetchBudget and a value (%d MiB)", peak>>20, limit>>20)
	}
}
