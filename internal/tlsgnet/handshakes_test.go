package tlsgnet

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// TestHandshakesInFlightBounded: connections that start a handshake and
// stall (a record header announcing 16 KiB, 4 bytes of it) each held a
// goroutine and crypto/tls's record buffer until the handshake timeout:
// 9,000 of them took a server from 70 to 300 MB (an attack). At most
// WithMaxHandshakes are in flight; a new one closes the oldest, and an
// honest client still gets through.
func TestHandshakesInFlightBounded(t *testing.T) {
	const max = 8
	s := startServer(t, &echo{t: t}, getPKI(t).server.Server(false), WithMaxHandshakes(max))
	stall := []byte{0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc}
	var stalled []net.Conn
	for range 3 * max {
		nc, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		if _, err := nc.Write(stall); err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, nc)
	}
	// The evicted ones are closed by the server: count them as they go
	// (under load the loops may open the last connections late).
	closed := make(chan struct{}, len(stalled))
	for _, nc := range stalled {
		go func() {
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, nc); err == nil || !isTimeout(err) {
				closed <- struct{}{}
			}
		}()
	}
	timeout := time.After(10 * time.Second)
	for n := 0; n < 2*max; n++ {
		select {
		case <-closed:
		case <-timeout:
			t.Fatalf("%d of %d stalled handshakes closed in 10 s; at most %d may be in flight", n, 3*max, max)
		}
	}
	c := dial(t, s.addr, nil)
	defer c.Close()
	if err := roundTrips(c, bufio.NewReader(c), 'e', [][]byte{[]byte("hello")}); err != nil {
		t.Fatalf("an honest client among stalled handshakes: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
