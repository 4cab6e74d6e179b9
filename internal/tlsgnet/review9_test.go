package tlsgnet

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"ftkv/internal/gnetlog"
	"ftkv/internal/tlsconf"
)

// review9Start is startServer whose cleanup gives up on a stuck engine
// (instead of hanging the test binary).
func review9Start(t *testing.T, h gnet.EventHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	bh := &bootHook{EventHandler: Wrap(h, getPKI(t).server.Server(true)), booted: make(chan gnet.Engine, 1), ready: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		errc <- gnet.Run(bh, "tcp://"+addr, gnet.WithMulticore(true), gnet.WithNumEventLoop(2),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLogger(gnetlog.Logger{L: zerolog.Nop()}))
	}()
	var eng gnet.Engine
	select {
	case eng = <-bh.booted:
	case err := <-errc:
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i > 200 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	<-bh.ready
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		go func() { _ = eng.Stop(ctx) }()
		select {
		case <-errc:
		case <-time.After(3 * time.Second):
			t.Log("the engine did not stop (an event loop is stuck); left behind")
		}
	})
	return addr
}

// review9Stuck names a goroutine blocked in OnClose called from within
// a Write that holds the connection's lock.
func review9Stuck() string {
	buf := make([]byte, 4<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "sync.Mutex.Lock") && strings.Contains(g, "(*handler).OnClose") && strings.Contains(g, "(*pipeConn).flush") {
			return ":\n" + g
		}
	}
	return ""
}

// review9Dial is dial returning the error.
func review9Dial(addr string) (*tls.Conn, error) {
	cfg := pki.client.Client(tlsconf.RoleServer)
	return tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, cfg)
}

// TestReview9WriteToClosedPeerOnLoop: a handler answering on the loop
// (Write) to a client that already closed. gnet's Write fails (EPIPE,
// ECONNRESET) and closes the connection at once, calling OnClose from
// within the Write; tlsgnet's conn.write holds c.mu through encrypt ->
// pipe.flush -> gnet Write, and OnClose takes c.mu again: the event loop
// deadlocks on itself, and so does every connection of that loop (and,
// in the server, the WAL writer whose callback AsyncWrites to it while
// holding the log's write lock). Seen in a real cluster: a TLS primary
// SIGSTOPped under load and resumed served nothing on its client port
// again (hundreds of connections in CLOSE-WAIT, ClientHellos unread),
// while its heartbeats went on, so it was never failed over.
func TestReview9WriteToClosedPeerOnLoop(t *testing.T) {
	h := &echo{t: t}
	addr := review9Start(t, h)
	payload := make([]byte, 32<<10)
	for i := 0; i < 300; i++ {
		c, err := review9Dial(addr)
		if err != nil {
			t.Fatalf("client %d of 300: %v (an event loop is stuck)%s", i, err, review9Stuck())
		}
		// 'a' is answered with one Write at once, the 'e's with a second
		// Write: the first reaches a closed socket (the peer answers
		// RST), the second fails.
		b := frame('a', payload)
		for range 4 {
			b = append(b, frame('e', payload)...)
		}
		_, _ = c.Write(b)
		_ = c.NetConn().(*net.TCPConn).CloseWrite()
		_ = c.NetConn().Close()
	}
	// Every loop must still serve: a fresh connection (several, so that
	// both loops get some) echoes.
	for i := 0; i < 6; i++ {
		c, err := review9Dial(addr)
		if err != nil {
			t.Fatalf("fresh connection %d: %v (an event loop is stuck)%s", i, err, review9Stuck())
		}
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write(frame('e', []byte("ping"))); err != nil {
			t.Fatalf("fresh connection %d: %v", i, err)
		}
		k, p, err := readFrame(bufio.NewReader(c))
		if err != nil || k != 'e' || string(p) != "ping" {
			t.Fatalf("fresh connection %d after 300 clients closed with answers pending: %c %q %v (an event loop is stuck)", i, k, p, err)
		}
		c.Close()
	}
}
