package metrics

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftkv/internal/testkit/idlehttp"
)

// heapInuse is the live heap after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// Clients that pipeline scrapes and read nothing hold the process's memory
// only within bounds: a review took a coordinator from 12 MB to 287 MB
// (and into failovers) with 3,000 such connections, each holding a
// rendering of its own that it could not send.
func TestScrapersThatNeverReadAreBounded(t *testing.T) {
	r := New(false)
	for i := 0; i < 1500; i++ { // about 100 KB of text, as a coordinator's
		r.Counter(fmt.Sprintf(`t_ops_total{op="op%04d",outcome="a_long_outcome_label"}`, i)).Add(i)
	}
	l, err := Listen("127.0.0.1:0", r, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	base := heapInuse()

	const conns, pipelined = 800, 20
	req := strings.Repeat("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", pipelined)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := 0; i < conns; i++ {
		c, err := d.Dial("tcp", l.Addr())
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, c)
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	var peak uint64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		peak = max(peak, heapInuse())
	}
	grew := int64(peak) - int64(base)
	t.Logf("%d connections with %d scrapes each, unread: the heap grew by %.1f MiB", conns, pipelined, float64(grew)/(1<<20))
	if grew > 24<<20 {
		t.Fatalf("the heap grew by %.1f MiB with %d connections that read nothing, want at most 24 MiB", float64(grew)/(1<<20), conns)
	}
	for _, c := range open {
		c.Close()
	}
	open = nil
	// The slots come back: a scraper is served again.
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + l.Addr() + "/metrics")
	if err != nil {
		t.Fatalf("a scrape after the attack: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `t_ops_total{op="op1499",outcome="a_long_outcome_label"} 1499`) {
		t.Fatalf("a scrape after the attack lacks a series (%d bytes)", len(body))
	}
}

// A scrape is never older than its request, however many share renders:
// each scraper counts its own counter up and must see its latest count.
func TestSharedScrapesAreFresh(t *testing.T) {
	r := New(false)
	const scrapers, rounds = 8, 40
	cs := make([]*Counter, scrapers)
	for i := range cs {
		cs[i] = r.Counter(fmt.Sprintf(`t_fresh_total{who="%d"}`, i))
	}
	for i := 0; i < 2000; i++ { // renders take a while, so scrapes overlap
		r.Counter(fmt.Sprintf(`t_filler_total{n="%d"}`, i))
	}
	l, err := Listen("127.0.0.1:0", r, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	errs := make(chan error, scrapers)
	for i := range cs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 1; n <= rounds; n++ {
				cs[i].Inc()
				resp, err := http.Get("http://" + l.Addr() + "/metrics")
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf(`t_fresh_total{who="%d"} %d`+"\n", i, n); !strings.Contains(string(body), want) {
					errs <- fmt.Errorf("scraper %d, round %d: the scrape lacks %q: older than its request", i, n, strings.TrimSpace(want))
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestIdleScrapersMakeRoom: MaxConns connections that scraped once and
// idle (or never sent a request) do not keep a scraper out: the one idle
// longest is closed for it. Before, every new connection was refused for
// the idle timeout (30 s).
func TestIdleScrapersMakeRoom(t *testing.T) {
	for _, path := range []string{"/metrics", ""} {
		r := New(false)
		r.Counter("t_ops_total").Add(3)
		l, err := Listen("127.0.0.1:0", r, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		idlehttp.Open(t, l.Addr(), path, MaxConns)
		time.Sleep(100 * time.Millisecond) // (every one known to be idle)
		cl := http.Client{Timeout: 2 * time.Second}
		resp, err := cl.Get("http://" + l.Addr() + "/metrics")
		if err != nil {
			t.Fatalf("%d idle connections (path %q): a scrape failed: %v", MaxConns, path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "t_ops_total 3") {
			t.Fatalf("scrape answered %s %q", resp.Status, body)
		}
		l.Close()
	}
}

// TestBodiesDoNotHoldTheMetricsPort: MaxConns connections that send a
// request announcing a body (POST, or a GET with a Content-Length) and
// then no body are each answered and closed at once, and a scraper is
// served. Before, net/http waited for the unread body (up to 256 KiB)
// after the handler with no read deadline: each such connection stayed
// serving a request, not evictable, and every scrape was refused for as
// long as the attacker liked (a review).
func TestBodiesDoNotHoldTheMetricsPort(t *testing.T) {
	r := New(false)
	r.Counter("t_ops_total").Add(3)
	l, err := Listen("127.0.0.1:0", r, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	reqs := []string{
		"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n",
		"PUT /elsewhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n",
	}
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := 0; i < MaxConns; i++ {
		c, err := net.DialTimeout("tcp", l.Addr(), 2*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, c)
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte(reqs[i%len(reqs)])); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for i, c := range open {
		_ = c.SetReadDeadline(deadline)
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("connection %d (%q), its body never sent: not answered and closed within 5 s: %v (read %q)", i, strings.SplitN(reqs[i%len(reqs)], "\r\n", 2)[0], err, got)
		}
		if !strings.HasPrefix(string(got), "HTTP/1.1 4") {
			t.Fatalf("connection %d (%q) answered %q, want a 4xx", i, strings.SplitN(reqs[i%len(reqs)], "\r\n", 2)[0], got)
		}
	}
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + l.Addr() + "/metrics")
	if err != nil {
		t.Fatalf("a scrape after %d connections sent no body: %v", MaxConns, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "t_ops_total 3") {
		t.Fatalf("scrape answered %s %q", resp.Status, body)
	}
}
