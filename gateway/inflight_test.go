package gateway

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"ftkv/internal/connlimit"
	"ftkv/limits"
)

// TestInflightBudgetBoundsQueuedCommands: 40 connections each pipeline 96
// SETs of 64 KiB (6 MiB, within a connection's own 8 MiB) while the
// cluster answers nothing. What the gateway holds of them together stays
// within inflight_budget (4 MiB by default) plus 64 KiB and a command per
// connection; the rest waits unread (where the input budget counts it).
// Half of the clients then close with their commands queued, the cluster
// answers, and the gateway counts no command in flight once every client
// is gone: a command dropped with its connection is uncounted too.
func TestInflightBudgetBoundsQueuedCommands(t *testing.T) {
	st := newMemStore()
	st.gate = make(chan struct{})
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute })
	const conns = 40
	val := strings.Repeat("v", 64<<10)
	var req strings.Builder
	for i := range 96 {
		req.WriteString(cmd("SET", fmt.Sprintf("k%d", i), val))
	}
	ncs := make([]net.Conn, conns)
	var wg sync.WaitGroup
	for i := range ncs {
		nc, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		ncs[i] = nc
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = io.WriteString(nc, req.String())
		}()
	}
	var peak int64
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		peak = max(peak, g.Queued())
	}
	wg.Wait()
	// Each connection may hold connlimit.BudgetFloor and the command
	// that crossed it beyond the budget.
	limit := int64(limits.DefaultInflightBudget + conns*(connlimit.BudgetFloor+len(val)+1024))
	t.Logf("commands queued at most %d bytes (%d connections x 6 MiB sent; limit %d)", peak, conns, limit)
	if peak > limit {
		t.Errorf("the gateway queued %d bytes of commands, over inflight_budget %d + 64 KiB and a command per connection (%d)", peak, limits.DefaultInflightBudget, limit)
	}
	for _, nc := range ncs[:conns/2] {
		nc.Close()
	}
	close(st.gate)
	answered := 0
	for _, nc := range ncs[conns/2:] {
		_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		b, _ := io.ReadAll(io.LimitReader(nc, int64(len("+OK\r\n")*96)))
		answered += strings.Count(string(b), "+OK\r\n")
		nc.Close()
	}
	t.Logf("%d SETs answered on the %d connections left open", answered, conns-conns/2)
	if answered == 0 {
		t.Errorf("no SET answered once the cluster answered")
	}
	deadline := time.Now().Add(5 * time.Second)
	for g.Queued() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := g.Queued(); n != 0 {
		t.Errorf("%d bytes of commands counted in flight 5 s after every client closed, want 0", n)
	}
	exchange(t, g.Addr(), cmd("SET", "a", "1")+cmd("GET", "a"), "+OK\r\n$1\r\n1\r\n")
}

// TestInflightBudgetHeldByNonReadersSpares: four clients that never read
// their answers park with the inflight budget's worth of SETs queued
// behind GETs of a 64 KiB value. A pipelining client is still read a
// pipeline at a time, not one command at a time: its 16 SETs go to the
// cluster together. (A review: with the budget held this way for the
// 10 s of output_grace, every pipelining client of the gateway got one
// command in flight at a time, redis-benchmark -P 16 falling from 87k to
// 38k GETs/s.)
func TestInflightBudgetHeldByNonReadersSpares(t *testing.T) {
	st := newMemStore()
	st.m["v"] = make([]byte, 64<<10)
	g := start(t, st, func(c *Config) { c.Timeout = time.Minute })
	val := strings.Repeat("w", 64<<10)
	var hog strings.Builder
	for range 200 {
		hog.WriteString(cmd("GET", "v"))
	}
	for i := range 60 {
		hog.WriteString(cmd("SET", fmt.Sprintf("h%d", i), val))
	}
	for range 4 {
		sendNew(t, g.Addr(), hog.String(), time.Minute)
	}
	deadline := time.Now().Add(5 * time.Second)
	for g.Queued() < limits.DefaultInflightBudget*3/4 {
		if time.Now().After(deadline) {
			t.Fatalf("the clients that never read queued only %d bytes", g.Queued())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("clients that never read hold %d bytes of commands", g.Queued())
	var req, want strings.Builder
	for i := range 16 {
		req.WriteString(cmd("SET", fmt.Sprintf("k%d", i), "x"))
		want.WriteString("+OK\r\n")
	}
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	st.largestBatch.Store(0)
	for round := range 3 {
		if _, err := io.WriteString(nc, req.String()); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, want.Len())
		if _, err := io.ReadFull(nc, got); err != nil || string(got) != want.String() {
			t.Fatalf("round %d: %q %v", round, got, err)
		}
	}
	if n := st.largestBatch.Load(); n < 8 {
		t.Fatalf("the largest batch of 3 pipelines of 16 SETs had %d operations, with the budget held by clients that never read", n)
	}
}
