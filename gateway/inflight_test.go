package gateway

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"ftkv/limits"
)

// TestInflightBudgetBoundsQueuedCommands: 40 connections each pipeline 96
// SETs of 64 KiB (6 MiB, within a connection's own 8 MiB) while the
// cluster answers nothing. What the gateway holds of them together stays
// within inflight_budget (4 MiB by default) plus one command per
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
	limit := int64(limits.DefaultInflightBudget + conns*(len(val)+1024))
	t.Logf("commands queued at most %d bytes (%d connections x 6 MiB sent; limit %d)", peak, conns, limit)
	if peak > limit {
		t.Errorf("the gateway queued %d bytes of commands, over inflight_budget %d + one command per connection (%d)", peak, limits.DefaultInflightBudget, limit)
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
