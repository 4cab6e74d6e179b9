package gateway

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTPGuesserOneAddressHeldToTheThrottle: one address sending HTTP
// Basic guesses as fast as 16 keep-alive connections go, against a
// password a client uses from another address, tests no more than the
// throttle allows (5 at once, then about one a second, plus one look in
// the cache per refill period): the right one, 40th, is never let in
// within 3 s.
func TestHTTPGuesserOneAddressHeldToTheThrottle(t *testing.T) {
	g, f := startAuthGateway(t)
	url := "http://" + g.HTTPAddr() + "/v1/kv/k"
	client := func(ip byte) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, ip)}, Timeout: 5 * time.Second}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 32}}
	}
	get := func(c *http.Client, pw string) int {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("writer:"+pw)))
		resp, err := c.Do(req)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(client(2), "writer-pw"); code != 200 {
		t.Skipf("app from 127.0.0.2: %d", code)
	}
	att := client(3)
	var next atomic.Int64
	var won atomic.Bool
	var sent atomic.Int64
	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && !won.Load() {
				i := next.Add(1)
				pw := fmt.Sprintf("guess%d", i)
				if i%40 == 0 {
					pw = "writer-pw"
				}
				sent.Add(1)
				if get(att, pw) == 200 {
					won.Store(true)
					t.Logf("right password let in at request %d", i)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d requests, %d checks", sent.Load(), f.checks.Load())
	if won.Load() {
		t.Errorf("one address got the right password (every 40th of its guesses) in within 3 s: more than the throttle allows")
	}
}

// TestRESPLoginFromAnotherHostNeedsNoCheck: credentials a client logged
// in with from one address are let in from another (its other host)
// once the throttle admits the attempt, without asking the cluster again
// (keyed by address alone, each host cost a check of the cluster's).
func TestRESPLoginFromAnotherHostNeedsNoCheck(t *testing.T) {
	g, f := startAuthGateway(t)
	for i, ip := range []byte{2, 3, 4} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, ip)}, Timeout: 5 * time.Second}
		nc, err := d.Dial("tcp", g.Addr())
		if err != nil {
			t.Skipf("no loopback address 127.0.0.%d: %v", ip, err)
		}
		exchangeOn(t, nc, cmd("AUTH", "writer", "writer-pw"), "+OK\r\n")
		nc.Close()
		if n := f.checks.Load(); n != 1 {
			t.Fatalf("after logins from %d hosts: %d checks of the cluster's, want 1", i+1, n)
		}
	}
}
