package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"ftkv/wire"
)

// TestHTTPKeysWithDotsAndSlashes: a key holding "//", "/./" or "/../" is
// the key as written: no redirect to a cleaned path (which curl -L would
// follow, writing or deleting another key).
func TestHTTPKeysWithDotsAndSlashes(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	kv := "http://" + g.HTTPAddr() + "/v1/kv/"
	for _, key := range []string{"a//b", "x/../y", "p/./q", "trail/", "../up"} {
		if r := do(t, "PUT", kv+key, "v-"+key); r.code != http.StatusNoContent {
			t.Fatalf("PUT %q: %d %q", key, r.code, r.body)
		}
		if r := do(t, "GET", kv+key, ""); r.code != http.StatusOK || r.body != "v-"+key {
			t.Fatalf("GET %q: %d %q", key, r.code, r.body)
		}
	}
	for _, other := range []string{"a/b", "y", "p/q", "trail", "up"} {
		if r := do(t, "GET", kv+other, ""); r.code != http.StatusNotFound {
			t.Fatalf("GET %q (never written): %d %q", other, r.code, r.body)
		}
	}
	if r := do(t, "DELETE", kv+"x/../y", ""); r.code != http.StatusNoContent {
		t.Fatalf("DELETE x/../y: %d %q", r.code, r.body)
	}
	if r := do(t, "GET", kv+"a//b", ""); r.code != http.StatusOK {
		t.Fatalf("a//b after deleting x/../y: %d", r.code)
	}
}

// TestHTTPAppendPreconditions: POST ?append refuses If-Match and
// If-None-Match (an append is not conditional), and only
// ?append, ?append=true or ?append=1 appends; nothing changes when it is
// refused.
func TestHTTPAppendPreconditions(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	kv := "http://" + g.HTTPAddr() + "/v1/kv/"
	do(t, "PUT", kv+"log", "a")
	for _, c := range []struct {
		query string
		hdr   []string
	}{
		{"?append", []string{"If-Match", `"nope"`}},
		{"?append", []string{"If-None-Match", "*"}},
		{"?append=false", nil},
		{"?append=0", nil},
		{"?append=yes-please", nil},
	} {
		if r := do(t, "POST", kv+"log"+c.query, "X", c.hdr...); r.code != http.StatusBadRequest {
			t.Fatalf("POST %s %v: %d %q, want 400", c.query, c.hdr, r.code, r.body)
		}
	}
	if r := do(t, "GET", kv+"log", ""); r.body != "a" {
		t.Fatalf("value after refused appends: %q, want a", r.body)
	}
	for _, q := range []string{"?append", "?append=true", "?append=1"} {
		if r := do(t, "POST", kv+"log"+q, "b"); r.code != http.StatusNoContent {
			t.Fatalf("POST %s: %d %q", q, r.code, r.body)
		}
	}
	if r := do(t, "GET", kv+"log", ""); r.body != "abbb" {
		t.Fatalf("value after three appends: %q, want abbb", r.body)
	}
}

// TestHTTPConditionalGet: GET and HEAD with If-None-Match naming the
// current ETag (or *, or the weak W/ form of it: RFC 9110's weak
// comparison, a black-box test) answer 304 Not Modified without a body;
// If-Match naming another, or a weak tag (strong comparison), answers 412.
func TestHTTPConditionalGet(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	kv := "http://" + g.HTTPAddr() + "/v1/kv/"
	do(t, "PUT", kv+"doc", "body")
	tag := etag([]byte("body"))
	for _, m := range []string{"GET", "HEAD"} {
		// (If-None-Match compares weakly: W/ names the same value.)
		for _, inm := range []string{tag, "*", `"other", ` + tag, "W/" + tag, `W/"other",W/` + tag} {
			if r := do(t, m, kv+"doc", "", "If-None-Match", inm); r.code != http.StatusNotModified || r.body != "" || r.etag != tag {
				t.Fatalf("%s If-None-Match %s: %d %q etag %q, want 304 with the ETag", m, inm, r.code, r.body, r.etag)
			}
		}
		if r := do(t, m, kv+"doc", "", "If-None-Match", `"other"`); r.code != http.StatusOK {
			t.Fatalf("%s If-None-Match of another value: %d", m, r.code)
		}
		if r := do(t, m, kv+"doc", "", "If-Match", `"other"`); r.code != http.StatusPreconditionFailed {
			t.Fatalf("%s If-Match of another value: %d, want 412", m, r.code)
		}
		if r := do(t, m, kv+"doc", "", "If-Match", "W/"+tag); r.code != http.StatusPreconditionFailed {
			t.Fatalf("%s If-Match of a weak tag: %d, want 412 (If-Match compares strongly)", m, r.code)
		}
		if r := do(t, m, kv+"doc", "", "If-Match", tag); r.code != http.StatusOK {
			t.Fatalf("%s If-Match of the value: %d, want 200", m, r.code)
		}
	}
}

// TestHTTPMetricsOutcome: an HTTP request refused as bad (400, 405, 413)
// counts as an error, not as ok, and so does one refused before the key
// was read.
func TestHTTPMetricsOutcome(t *testing.T) {
	st := newMemStore()
	var mu sync.Mutex
	got := map[string][]bool{} // by name: whether each failed
	g := start(t, st, func(c *Config) {
		c.Observe = func(name string, _ time.Duration, err error) {
			mu.Lock()
			got[name] = append(got[name], err != nil)
			mu.Unlock()
		}
	})
	kv := "http://" + g.HTTPAddr() + "/v1/kv/"
	do(t, "PUT", kv+"k", "v")                          // ok
	do(t, "POST", kv+"k", "v")                         // 400: no ?append
	do(t, "PUT", kv+"", "v")                           // 400: empty key
	do(t, "PATCH", kv+"k", "v")                        // 405
	do(t, "PUT", kv+"k", strings.Repeat("x", 1<<20+1)) // 413
	do(t, "GET", kv+"missing", "")                     // 404: an answer, ok
	mu.Lock()
	defer mu.Unlock()
	want := map[string][]bool{"http_put": {false, true, true}, "http_post": {true}, "http_other": {true}, "http_get": {false}}
	for name, w := range want {
		if len(got[name]) != len(w) {
			t.Fatalf("%s observed %v, want %v (all: %v)", name, got[name], w, got)
		}
		for i := range w {
			if got[name][i] != w[i] {
				t.Fatalf("%s observed %v, want %v (all: %v)", name, got[name], w, got)
			}
		}
	}
}

// TestHTTPSlowLengthBodiesHoldWhatTheySent: PUT bodies that announce
// 1 MiB (Content-Length), send a few bytes and trickle hold the input
// budget by what they sent, as chunked ones do, not by the length they
// announce. Before, 70 such senders (a byte every half second each)
// against a default gateway held its 64 MiB input budget whole, and
// every honest PUT waited the command timeout and got 503 for as long as
// they kept it up (an attack; here 40 against a 4 MiB budget).
func TestHTTPSlowLengthBodiesHoldWhatTheySent(t *testing.T) {
	st := newMemStore()
	const budget = 4 << 20
	g := start(t, st, func(c *Config) { c.Limits.InputBudget = budget; c.Timeout = 2 * time.Second })
	for i := range 40 {
		nc, err := net.Dial("tcp", g.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		fmt.Fprintf(nc, "PUT /v1/kv/slow%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nxxxxxxxxxx", i, wire.MaxValue)
	}
	time.Sleep(200 * time.Millisecond) // (the slow bodies are being read)
	begun := time.Now()
	r := do(t, "PUT", "http://"+g.HTTPAddr()+"/v1/kv/honest", "value")
	if r.code != http.StatusNoContent {
		t.Fatalf("an honest PUT beside 40 stalled bodies announcing 1 MiB: %d %q after %s", r.code, r.body, time.Since(begun).Round(time.Millisecond))
	}
	// A body of exactly 1 MiB with its length is written whole; a
	// shorter one too.
	for _, n := range []int{wire.MaxValue, chunkHold + 1, 3} {
		v := strings.Repeat("y", n)
		if r := do(t, "PUT", "http://"+g.HTTPAddr()+"/v1/kv/big", v); r.code != http.StatusNoContent {
			t.Fatalf("a PUT of %d bytes: %d %q", n, r.code, r.body)
		}
		if got, err := st.Get(context.Background(), "big"); err != nil || string(got) != v {
			t.Fatalf("the value of %d bytes: %d bytes, %v", n, len(got), err)
		}
	}
}
