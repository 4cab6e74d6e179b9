package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReview9GatewayTLSRefusalFlood: a gateway with TLS at max_clients
// takes a flood of TLS connections (each refused inside TLS, at most 8
// handshakes at once) and silent ones; the client already connected is
// served throughout and, the flood over, the gateway's goroutines are
// back where they were (it runs in this process).
func TestReview9GatewayTLSRefusalFlood(t *testing.T) {
	p := newTLSPKI(t)
	g := startTLSGateway(t, p, 1)
	held, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.Addr(), p.bare)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	r := bufio.NewReader(held)
	goBefore := runtime.NumGoroutine()

	const dur = 10 * time.Second
	end := time.Now().Add(dur)
	var attempts, inTLS, closedOnly atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				attempts.Add(1)
				if refusedInsideTLS(g.Addr(), p.bare, "max number of clients") {
					inTLS.Add(1)
				} else {
					closedOnly.Add(1)
				}
			}
		}()
	}
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				nc, err := net.DialTimeout("tcp", g.Addr(), 2*time.Second)
				if err != nil {
					continue
				}
				_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
				_, _ = io.ReadAll(nc)
				nc.Close()
			}
		}()
	}
	var ok, slowest int64
	for i := 0; time.Now().Before(end); i++ {
		s := time.Now()
		_ = held.SetDeadline(s.Add(2 * time.Second))
		v := fmt.Sprintf("v%d", i)
		if _, err := fmt.Fprintf(held, "*3\r\n$3\r\nSET\r\n$4\r\nr9gw\r\n$%d\r\n%s\r\n", len(v), v); err != nil {
			t.Fatalf("honest SET %d: %v", i, err)
		}
		line, err := r.ReadString('\n')
		if err != nil || line != "+OK\r\n" {
			t.Fatalf("honest SET %d: %q, %v", i, line, err)
		}
		ok++
		slowest = max(slowest, int64(time.Since(s)))
	}
	wg.Wait()
	t.Logf("gateway flood: %d TLS attempts (%.0f/s), %d refused inside TLS, %d only closed; honest: %d SETs, slowest %v",
		attempts.Load(), float64(attempts.Load())/dur.Seconds(), inTLS.Load(), closedOnly.Load(), ok, time.Duration(slowest).Round(time.Millisecond))
	if inTLS.Load() == 0 {
		t.Errorf("no refusal came inside TLS")
	}
	if time.Duration(slowest) > time.Second {
		t.Errorf("the honest client's slowest SET took %v during the flood", time.Duration(slowest))
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goBefore+4 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goBefore+4 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines 5 s after the flood, %d before:\n%s", n, goBefore, buf[:runtime.Stack(buf, true)])
	}
}
