package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/internal/testkit/idlehttp"
	"ftkv/internal/tlsconf"
	"ftkv/status"
	"ftkv/wire"
)

type httpResult struct {
	code int
	body string
	etag string
}

// noRedirect is an HTTP client that reports redirects instead of
// following them (curl without -L).
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func do(t *testing.T, method, url, body string, hdr ...string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, string(b), resp.Header.Get("ETag")}
}

func TestHTTPKV(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	base := "http://" + g.HTTPAddr()
	kv := base + "/v1/kv/"
	expect := func(r httpResult, code int, body string) {
		t.Helper()
		if r.code != code || body != "*" && r.body != body {
			t.Fatalf("got %d %q, want %d %q", r.code, r.body, code, body)
		}
	}
	expect(do(t, "GET", kv+"greeting", ""), 404, "not found\n")
	put := do(t, "PUT", kv+"greeting", "hello")
	expect(put, 204, "")
	got := do(t, "GET", kv+"greeting", "")
	expect(got, 200, "hello")
	if got.etag != etag([]byte("hello")) || put.etag != got.etag {
		t.Fatalf("ETag %q after PUT, %q on GET, want %q", put.etag, got.etag, etag([]byte("hello")))
	}
	// Compare-and-swap.
	expect(do(t, "PUT", kv+"greeting", "bye", "If-Match", `"0000"`), 412, "*")
	expect(do(t, "PUT", kv+"greeting", "bye", "If-Match", `"0000", `+got.etag), 204, "")
	expect(do(t, "GET", kv+"greeting", ""), 200, "bye")
	expect(do(t, "PUT", kv+"greeting", "again", "If-None-Match", "*"), 412, "*")
	expect(do(t, "PUT", kv+"fresh", "1", "If-None-Match", "*"), 204, "")
	expect(do(t, "PUT", kv+"absent", "1", "If-Match", "*"), 412, "*")
	expect(do(t, "PUT", kv+"fresh", "2", "If-Match", "*"), 204, "")
	expect(do(t, "GET", kv+"fresh", ""), 200, "2")
	expect(do(t, "PUT", kv+"fresh", "3", "If-None-Match", `"x"`), 400, "*")
	// Both: If-Match first (RFC 9110 13.2.2), and no key both exists and
	// is absent: never written (a review: an absent key was written).
	expect(do(t, "PUT", kv+"both", "1", "If-Match", `"deadbeef"`, "If-None-Match", "*"), 412, "*")
	expect(do(t, "PUT", kv+"both", "1", "If-Match", "*", "If-None-Match", "*"), 412, "*")
	expect(do(t, "GET", kv+"both", ""), 404, "*")
	expect(do(t, "PUT", kv+"fresh", "4", "If-Match", "*", "If-None-Match", "*"), 412, "*")
	expect(do(t, "GET", kv+"fresh", ""), 200, "2")
	// If-Match on an absent key's GET: the condition is false, 412.
	expect(do(t, "GET", kv+"both", "", "If-Match", "*"), 412, "*")
	// Append, delete.
	expect(do(t, "POST", kv+"log?append", "a"), 204, "")
	expect(do(t, "POST", kv+"log?append", "b"), 204, "")
	expect(do(t, "GET", kv+"log", ""), 200, "ab")
	expect(do(t, "POST", kv+"log", "c"), 400, "*")
	// A write's query is its meaning: one it does not take is refused,
	// never ignored (PUT ?append overwrote the value: a black-box tester).
	expect(do(t, "PUT", kv+"log?append", "c"), 400, "*")
	expect(do(t, "DELETE", kv+"log?if=ab", ""), 400, "*")
	expect(do(t, "POST", kv+"log?append&ttl=5", "c"), 400, "*")
	expect(do(t, "GET", kv+"log", ""), 200, "ab")
	// Compare-and-delete: only the value If-Match names (or any, *).
	expect(do(t, "DELETE", kv+"log", "", "If-Match", `"0000"`), 412, "*")
	expect(do(t, "DELETE", kv+"log", "", "If-None-Match", "*"), 400, "*")
	expect(do(t, "GET", kv+"log", ""), 200, "ab")
	expect(do(t, "DELETE", kv+"log", "", "If-Match", `"0000", `+etag([]byte("ab"))), 204, "")
	expect(do(t, "GET", kv+"log", ""), 404, "*")
	expect(do(t, "DELETE", kv+"log", "", "If-Match", "*"), 412, "*")
	expect(do(t, "PUT", kv+"log", "ab"), 204, "")
	expect(do(t, "DELETE", kv+"log", "", "If-Match", "*"), 204, "")
	expect(do(t, "GET", kv+"log", ""), 404, "*")
	expect(do(t, "PUT", kv+"log", "ab"), 204, "")
	expect(do(t, "DELETE", kv+"log", ""), 204, "")
	expect(do(t, "GET", kv+"log", ""), 404, "*")
	expect(do(t, "DELETE", kv+"log", ""), 204, "")
	expect(do(t, "PATCH", kv+"log", ""), 405, "*")
	// Keys with any bytes, escaped.
	expect(do(t, "PUT", kv+"a%2Fb%00c%20d", "bin"), 204, "")
	if v := st.m["a/b\x00c d"]; string(v) != "bin" {
		t.Fatalf("escaped key stored as %q", st.m)
	}
	expect(do(t, "GET", kv+"a/b%00c%20d", ""), 200, "bin")
	expect(do(t, "GET", kv, ""), 400, "*")
	// Limits.
	expect(do(t, "PUT", kv+"big", strings.Repeat("x", maxValue+1)), 413, "*")
	expect(do(t, "PUT", kv+"big", strings.Repeat("x", maxValue)), 204, "")
	expect(do(t, "GET", kv+strings.Repeat("k", maxKey+1), ""), 413, "*")
	expect(do(t, "GET", base+"/v2/x", ""), 404, "*")
	// No redirect to another path (ServeMux's, with an HTML body): the
	// key-less prefix and paths with dot segments are no endpoint.
	for _, p := range []string{"/v1/kv", "/../x", "/v1/./status", "//v1/status"} {
		if r := do(t, "GET", base+p, ""); r.code != 404 || strings.Count(r.body, "\n") != 1 || strings.Contains(r.body, "<") {
			t.Errorf("GET %s: %d %q, want 404 with a one-line error", p, r.code, r.body)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	g := start(t, newMemStore(), nil)
	r := do(t, "GET", "http://"+g.HTTPAddr()+"/v1/status", "")
	var st status.Cluster
	if r.code != 200 || json.Unmarshal([]byte(r.body), &st) != nil || st.Epoch != 7 || len(st.Servers) != 1 {
		t.Fatalf("status: %d %q", r.code, r.body)
	}
	if !strings.Contains(r.body, `"primary_keys":0`) || !strings.Contains(r.body, `"coordinators":[]`) {
		t.Fatalf("status is not client status --json's document: %s", r.body)
	}
}

// TestHTTPIfMatchRace: writers racing with the same ETag — exactly one
// wins, the others get 412.
func TestHTTPIfMatchRace(t *testing.T) {
	g := start(t, newMemStore(), nil)
	url := "http://" + g.HTTPAddr() + "/v1/kv/race"
	tag := do(t, "PUT", url, "v0").etag
	codes := make(chan int, 20)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest("PUT", url, strings.NewReader(fmt.Sprint("v", i+1)))
			req.Header.Set("If-Match", tag)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}(i)
	}
	wg.Wait()
	close(codes)
	won := 0
	for c := range codes {
		switch c {
		case 204:
			won++
		case 412:
		default:
			t.Fatalf("status %d", c)
		}
	}
	if won != 1 {
		t.Fatalf("%d writers won with the same ETag, want 1", won)
	}
}

// TestHTTPSWithTLS: with a certificate the HTTP API is HTTPS only: a
// client trusting the cluster's CA reads and writes, a client in clear
// gets net/http's 400 and nothing.
func TestHTTPSWithTLS(t *testing.T) {
	dir := t.TempDir()
	if err := tlsconf.Generate(dir, nil); err != nil {
		t.Fatal(err)
	}
	srv, err := tlsconf.Load(tlsconf.Files{CA: dir + "/ca.pem", Cert: dir + "/client.pem", Key: dir + "/client-key.pem"}, tlsconf.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(dir + "/ca.pem")
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("ca.pem: %v", err)
	}
	st := newMemStore()
	g := start(t, st, func(c *Config) { c.TLS = srv.Server(false) })
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := "https://" + g.HTTPAddr() + "/v1/kv/k"
	req, _ := http.NewRequest("PUT", url, strings.NewReader("over tls"))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("PUT over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("PUT over HTTPS: %d", resp.StatusCode)
	}
	resp, err = hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "over tls" {
		t.Fatalf("GET over HTTPS: %d %q", resp.StatusCode, b)
	}
	plain := do(t, "GET", "http://"+g.HTTPAddr()+"/v1/kv/k", "")
	if plain.code != 400 || strings.Contains(plain.body, "over tls") {
		t.Fatalf("a client in clear got %d %q, want 400 and no value", plain.code, plain.body)
	}
}

// TestHTTPHeldBodiesWithinTheBudget: clients that each announce a body of
// 1 MiB and send all of it but its last byte hold no more than the input
// budget between them: the others wait for room, then get 503 with
// Retry-After; once they are gone, writes go through again. (An attack
// with 1,000 such clients made the gateway hold a gigabyte.)
func TestHTTPHeldBodiesWithinTheBudget(t *testing.T) {
	st := newMemStore()
	st.m["small"] = []byte("v")
	const budget = 4 << 20
	g := start(t, st, func(c *Config) { c.Limits.InputBudget = budget })
	base := liveHeap()
	const holders = 40
	body := strings.Repeat("x", wire.MaxValue-1)
	var conns []net.Conn
	for i := range holders {
		nc, err := net.Dial("tcp", g.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		fmt.Fprintf(nc, "PUT /v1/kv/hold%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", i, wire.MaxValue, body)
		conns = append(conns, nc)
	}
	var peak uint64
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		peak = max(peak, liveHeap()) // (what the bodies hold)
		time.Sleep(50 * time.Millisecond)
	}
	grew := int64(peak) - int64(base)
	t.Logf("live heap grew by %d MiB with %d bodies of 1 MiB held", grew>>20, holders)
	if grew > budget+12<<20 {
		t.Fatalf("live heap grew by %d MiB, want at most %d MiB more than the budget", grew>>20, 12)
	}
	// Meanwhile reads go on (a body waiting for room made every GET 503).
	if r := do(t, "GET", "http://"+g.HTTPAddr()+"/v1/kv/small", ""); r.code != http.StatusOK || r.body != "v" {
		t.Fatalf("a GET while bodies wait for room: %d %q", r.code, r.body)
	}
	// Those without room are told so once the command timeout passed.
	var busy atomic.Int32
	var wg sync.WaitGroup
	for _, nc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = nc.SetReadDeadline(time.Now().Add(4 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err != nil {
				return // (a holder: its body never ends)
			}
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
				busy.Add(1)
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if busy := int(busy.Load()); busy < holders-budget/wire.MaxValue {
		t.Fatalf("%d of %d held bodies were answered 503, want at least %d", busy, holders, holders-budget/wire.MaxValue)
	}
	for _, nc := range conns {
		nc.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := do(t, "PUT", "http://"+g.HTTPAddr()+"/v1/kv/after", "v")
		if r.code == http.StatusNoContent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a PUT after the holders left: %d %q", r.code, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHTTPChunkedBodiesHoldWhatTheySent: chunked PUT bodies (no length)
// that send a byte and stall hold the input budget by what they sent (in
// steps of chunkHold), not by the 1 MiB they might grow to: 40 of them
// against a 4 MiB budget left an honest PUT waiting the whole command
// timeout, then 503 (an attack: 64 slow senders locked every writer out
// of a default gateway). A chunked body that does grow to 1 MiB is still
// read whole and written.
func TestHTTPChunkedBodiesHoldWhatTheySent(t *testing.T) {
	st := newMemStore()
	const budget = 4 << 20
	g := start(t, st, func(c *Config) { c.Limits.InputBudget = budget })
	for i := range 40 {
		nc, err := net.Dial("tcp", g.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		fmt.Fprintf(nc, "PUT /v1/kv/slow%d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n", i)
	}
	time.Sleep(200 * time.Millisecond) // (the slow bodies are being read)
	begun := time.Now()
	r := do(t, "PUT", "http://"+g.HTTPAddr()+"/v1/kv/honest", "value")
	if r.code != http.StatusNoContent {
		t.Fatalf("an honest PUT beside 40 stalled chunked bodies: %d %q after %s", r.code, r.body, time.Since(begun).Round(time.Millisecond))
	}
	// A chunked body of 1 MiB, sent in 64 KiB chunks, is written whole.
	nc, err := net.Dial("tcp", g.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	chunk := strings.Repeat("y", 64<<10)
	for range wire.MaxValue / len(chunk) {
		fmt.Fprintf(nc, "%x\r\n%s\r\n", len(chunk), chunk)
	}
	fmt.Fprintf(nc, "0\r\n\r\n")
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("a chunked PUT of 1 MiB: %d", resp.StatusCode)
	}
	if v, err := st.Get(context.Background(), "big"); err != nil || len(v) != wire.MaxValue {
		t.Fatalf("the chunked 1 MiB value: %d bytes, %v", len(v), err)
	}
	// One byte more is refused (413) and writes nothing.
	nc2, err := net.Dial("tcp", g.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	fmt.Fprintf(nc2, "PUT /v1/kv/over HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range wire.MaxValue / len(chunk) {
		fmt.Fprintf(nc2, "%x\r\n%s\r\n", len(chunk), chunk)
	}
	fmt.Fprintf(nc2, "1\r\nz\r\n0\r\n\r\n")
	_ = nc2.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(nc2), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a chunked PUT of 1 MiB + 1: %d, want 413", resp.StatusCode)
	}
	if _, err := st.Get(context.Background(), "over"); err == nil {
		t.Fatal("the value over the limit was written")
	}
}

// TestHTTPChunkedBodiesDoNotLockEachOtherOut: eight chunked PUTs of 1 MiB
// against a 4 MiB input budget, each pausing at 512 KiB, are all written:
// a body that needs more room than is free waits holding nothing. (Each
// waiting with what it held, they held one another's room, and 3 of 8
// were answered 503 after the timeout: a review.)
func TestHTTPChunkedBodiesDoNotLockEachOtherOut(t *testing.T) {
	st := newMemStore()
	g := start(t, st, func(c *Config) { c.Limits.InputBudget = 4 << 20; c.Timeout = 2 * time.Second })
	const clients = 8
	chunk := strings.Repeat("y", 64<<10)
	codes := make(chan string, clients)
	sent := make(chan struct{}, clients)
	release := make(chan struct{})
	for i := range clients {
		go func() {
			nc, err := net.Dial("tcp", g.HTTPAddr())
			if err != nil {
				codes <- err.Error()
				return
			}
			defer nc.Close()
			w := bufio.NewWriter(nc)
			fmt.Fprintf(w, "PUT /v1/kv/big%d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", i)
			for range 8 { // 512 KiB
				fmt.Fprintf(w, "%x\r\n%s\r\n", len(chunk), chunk)
			}
			_ = w.Flush()
			sent <- struct{}{}
			<-release
			for range 8 {
				fmt.Fprintf(w, "%x\r\n%s\r\n", len(chunk), chunk)
			}
			fmt.Fprintf(w, "0\r\n\r\n")
			_ = w.Flush()
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(nc).ReadString('\n')
			if err != nil {
				codes <- err.Error()
				return
			}
			codes <- strings.TrimSpace(line)
		}()
	}
	for range clients {
		<-sent
	}
	time.Sleep(300 * time.Millisecond) // (the gateway has read what they sent)
	close(release)
	var bad []string
	for range clients {
		if c := <-codes; !strings.Contains(c, "204") {
			bad = append(bad, c)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%d of %d chunked PUTs of 1 MiB not written with a 4 MiB budget: %q", len(bad), clients, bad)
	}
}

// TestHTTPIdleConnectionsMakeRoom: clients that made one request each
// and keep their connections idle, as many as the connection bound, do
// not keep another client out: the connection idle longest is closed for
// it. Before, the new client waited in the listen backlog for the idle
// timeout (2 minutes): 1,024 such connections without credentials locked
// every user out of the HTTPS API (a review).
func TestHTTPIdleConnectionsMakeRoom(t *testing.T) {
	httpMaxConns = 16
	defer func() { httpMaxConns = 1024 }()
	st := newMemStore()
	st.m["k"] = []byte("v")
	g := start(t, st, nil)
	idlehttp.Open(t, g.HTTPAddr(), "/v1/kv/k", 16)
	idlehttp.Open(t, g.HTTPAddr(), "", 2*16) // (and some that never send a request)
	cl := http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get("http://" + g.HTTPAddr() + "/v1/kv/k")
	if err != nil {
		t.Fatalf("with %d idle connections open: %v", 3*16, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "v" {
		t.Fatalf("GET answered %s %q", resp.Status, body)
	}
}

// TestHTTPSlowBodiesMakeRoom: at the connection bound, a connection whose
// request body has sent nothing for a second is closed for a newcomer, as
// an idle one is; a request that sent its whole body and waits for the
// cluster is not. Before, a connection reading a body counted as serving
// and could not be closed: 1,100 uploaders sending a byte every 2 s kept
// every other client waiting in the listen backlog for 10-12 s, until
// the read timeout (a review).
func TestHTTPSlowBodiesMakeRoom(t *testing.T) {
	httpMaxConns = 8
	defer func() { httpMaxConns = 1024 }()
	st := newMemStore()
	st.m["k"] = []byte("v")
	st.putGate = make(chan struct{})
	// (The cluster's answer may take 10 s: the waiting PUT outlives the
	// test's GET.)
	g := start(t, st, func(c *Config) { c.Timeout = 10 * time.Second })
	put := func(key, body string, contentLength int) net.Conn {
		nc, err := net.Dial("tcp", g.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		fmt.Fprintf(nc, "PUT /v1/kv/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", key, contentLength, body)
		return nc
	}
	waiting := put("waits", "whole", 5) // sent whole; the cluster holds it
	time.Sleep(100 * time.Millisecond)
	for i := range httpMaxConns - 1 {
		put(fmt.Sprintf("slow%d", i), "x", 100000)
	}
	time.Sleep(1500 * time.Millisecond) // every slow body silent for more than a second
	cl := http.Client{Timeout: 4 * time.Second}
	resp, err := cl.Get("http://" + g.HTTPAddr() + "/v1/kv/k")
	if err != nil {
		t.Fatalf("with %d slow bodies and a request waiting for the cluster: %v", httpMaxConns-1, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "v" {
		t.Fatalf("GET answered %s %q", resp.Status, body)
	}
	close(st.putGate)
	_ = waiting.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(waiting).ReadString('\n')
	if err != nil || !strings.Contains(line, "204") {
		t.Fatalf("the PUT that waited for the cluster: %q, %v (closed for the newcomer?)", line, err)
	}
}

// TestHTTPTricklingBodiesMakeRoom: at the connection bound, a body that
// keeps sending but far slower than any honest upload (a byte every
// 300 ms) is closed for a newcomer once it is a second behind
// metrics.MinBodyRate, as a silent one is. Before, 1,100 chunked uploads
// sending a byte every half second never counted as silent: every other
// client waited until the read timeout dropped them (11 s, an attacker).
func TestHTTPTricklingBodiesMakeRoom(t *testing.T) {
	httpMaxConns = 8
	defer func() { httpMaxConns = 1024 }()
	st := newMemStore()
	st.m["k"] = []byte("v")
	g := start(t, st, func(c *Config) { c.Timeout = 10 * time.Second })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	for i := range httpMaxConns {
		nc, err := net.Dial("tcp", g.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(nc, "PUT /v1/kv/slow%d HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", i)
		wg.Add(1)
		go func() { // a byte every 300 ms, for at most 20 s
			defer wg.Done()
			defer nc.Close()
			for range 66 {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if _, err := nc.Write([]byte("x")); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(2500 * time.Millisecond) // every body more than a second behind
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + g.HTTPAddr() + "/v1/kv/k")
	if err != nil {
		t.Fatalf("with %d trickling bodies: %v", httpMaxConns, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "v" {
		t.Fatalf("GET answered %s %q", resp.Status, body)
	}
}

// TestHTTPHalfClosedRequestAnswered: a client that sends its whole request
// and shuts down its sending side (nc -N, a fire-and-forget script) still
// reads the answer. net/http cancels such a request's context at the end
// of its input; the cluster call ran under it and was cut off, and the
// client was told 503 "did not answer" for a write that the cluster had
// applied (a review: three appends answered 503, all three applied).
func TestHTTPHalfClosedRequestAnswered(t *testing.T) {
	st := newMemStore()
	st.putGate = make(chan struct{})
	g := start(t, st, nil)
	nc, err := net.Dial("tcp", g.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, "PUT /v1/kv/half HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nvalue"); err != nil {
		t.Fatal(err)
	}
	if err := nc.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The put waits until net/http has seen the end of the input.
	time.Sleep(300 * time.Millisecond)
	close(st.putGate)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("half-closed PUT answered %d %q, want 204", resp.StatusCode, body)
	}
	if v, err := st.Get(context.Background(), "half"); err != nil || string(v) != "value" {
		t.Fatalf("after the half-closed PUT: %q, %v; want \"value\"", v, err)
	}
}

// TestHTTPRefusedBodyAnsweredAtOnce: a request refused for the length its
// body announces is answered at once, not when the rest of that body (or
// the read timeout) comes.
func TestHTTPRefusedBodyAnsweredAtOnce(t *testing.T) {
	g := start(t, newMemStore(), nil)
	for _, announced := range []string{"99999999999", "1048577"} {
		nc, err := net.Dial("tcp", g.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(nc, "PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: "+announced+"\r\n\r\nabc"); err != nil {
			t.Fatal(err)
		}
		// Liveness bound: the read timeout is 12 s here.
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		nc.Close()
		if err != nil {
			t.Fatalf("Content-Length %s with 3 bytes sent: no answer: %v", announced, err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("Content-Length %s: answered %d, want 413", announced, resp.StatusCode)
		}
	}
}
