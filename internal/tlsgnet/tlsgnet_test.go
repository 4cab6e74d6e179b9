package tlsgnet

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/tlsconf"
)

func serverCfg(t testing.TB, require bool) *tls.Config {
	return getPKI(t).server.Server(require, tlsconf.RoleClient)
}

func TestEchoPipelinedSmallAndLarge(t *testing.T) {
	h := &echo{t: t}
	s := startServer(t, h, serverCfg(t, false))
	c := dial(t, s.addr, nil)
	defer c.Close()
	r := bufio.NewReader(c)
	small := make([][]byte, 5000)
	for i := range small {
		small[i] = bytes.Repeat([]byte{byte(i)}, 1+i%200)
	}
	if err := roundTrips(c, r, 'e', small); err != nil {
		t.Fatal(err)
	}
	large := make([][]byte, 8)
	for i := range large {
		large[i] = make([]byte, 1<<20)
		_, _ = rand.Read(large[i])
	}
	if err := roundTrips(c, r, 'e', large); err != nil {
		t.Fatal(err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("version %x", v)
	}
}

func TestManyConcurrentConnections(t *testing.T) {
	h := &echo{t: t}
	s := startServer(t, h, serverCfg(t, false))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, s.addr, nil)
			defer c.Close()
			r := bufio.NewReader(c)
			for i := range 100 {
				p := []byte(strings.Repeat(string(rune('a'+g%26)), 1+i))
				if _, err := c.Write(frame('e', p)); err != nil {
					errs <- err
					return
				}
				k, got, err := readFrame(r)
				if err != nil || k != 'e' || !bytes.Equal(got, p) {
					errs <- io.ErrUnexpectedEOF
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Answers from the worker goroutine (AsyncWrite) interleave with on-loop
// writes: every record must decrypt, each 'A' precede its 'B', and each
// source keep its order.
func TestAsyncWritesInterleavedWithLoopWrites(t *testing.T) {
	h := &echo{t: t}
	s := startServer(t, h, serverCfg(t, false))
	c := dial(t, s.addr, nil)
	defer c.Close()
	const n = 3000
	go func() {
		var buf []byte
		for i := range n {
			p := []byte{byte(i >> 8), byte(i)}
			if i%7 == 0 {
				buf = append(buf, frame('e', p)...)
			}
			buf = append(buf, frame('a', p)...)
			if i%50 == 0 {
				_, _ = c.Write(buf)
				buf = buf[:0]
			}
		}
		_, _ = c.Write(buf)
	}()
	r := bufio.NewReader(c)
	nextA, nextB, nextE := 0, 0, 0
	for nextB < n {
		k, p, err := readFrame(r)
		if err != nil {
			t.Fatalf("after A=%d B=%d: %v", nextA, nextB, err)
		}
		i := int(p[0])<<8 | int(p[1])
		switch k {
		case 'A':
			if i != nextA {
				t.Fatalf("A %d, want %d", i, nextA)
			}
			nextA++
		case 'B':
			if i != nextB || i >= nextA {
				t.Fatalf("B %d, want %d (A so far %d)", i, nextB, nextA)
			}
			nextB++
		case 'e':
			if i != nextE {
				t.Fatalf("e %d, want %d", i, nextE)
			}
			nextE += 7
		}
	}
	if h.badCB.Load() != 0 {
		t.Fatalf("%d AsyncWrite callbacks got the real connection", h.badCB.Load())
	}
}

func TestWakeReachesTheWrappedHandler(t *testing.T) {
	h := &echo{t: t}
	s := startServer(t, h, serverCfg(t, false))
	c := dial(t, s.addr, nil)
	defer c.Close()
	r := bufio.NewReader(c)
	for range 20 {
		if _, err := c.Write(frame('w', nil)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if k, _, err := readFrame(r); err != nil || k != 'W' {
			t.Fatalf("%c %v", k, err)
		}
	}
}

// The handler's Close action after a write: the answer arrives, then EOF.
func TestCloseActionFlushesTheAnswer(t *testing.T) {
	h := &echo{t: t}
	s := startServer(t, h, serverCfg(t, false))
	c := dial(t, s.addr, nil)
	defer c.Close()
	if _, err := c.Write(append(frame('a', []byte{0, 1}), frame('q', nil)...)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var kinds []byte
	for {
		k, _, err := readFrame(r)
		if err != nil {
			break
		}
		kinds = append(kinds, k)
	}
	if a, q := bytes.IndexByte(kinds, 'A'), bytes.IndexByte(kinds, 'q'); a < 0 || q < a {
		t.Fatalf("got %q, want A, then q before the close", kinds)
	}
}

func TestPlaintextClientGetsAnErrorAndIsClosed(t *testing.T) {
	h := &echo{t: t}
	msg := []byte("-ERR this port speaks TLS\r\n")
	var first []byte
	var mu sync.Mutex
	s := startServer(t, h, serverCfg(t, false), WithOnPlaintext(func(b []byte) []byte {
		mu.Lock()
		first = b
		mu.Unlock()
		return msg
	}))
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(frame('e', []byte("hello"))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (want EOF after the message)", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("got %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !bytes.HasPrefix(frame('e', []byte("hello")), first) || len(first) == 0 {
		t.Fatalf("OnPlaintext saw %q", first)
	}
	if h.traffic.Load() != 0 {
		t.Fatal("the handler saw plaintext traffic")
	}
}

func TestClientCertificateFromAnotherCAIsRefused(t *testing.T) {
	h := &echo{t: t}
	s := startServer(t, h, serverCfg(t, true))
	p := getPKI(t)
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"another CA", p.foreign.Client(tlsconf.RoleServer)},
		{"no certificate", func() *tls.Config { m, _ := tlsconf.FromPEM(nil, nil, p.caPEM); return m.Client(tlsconf.RoleServer) }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", s.addr, tc.cfg)
			if err == nil {
				// TLS 1.3: the server judges the client's certificate after
				// the client's Finished; the refusal arrives on read.
				_, _ = c.Write(frame('e', []byte("x")))
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _, err = readFrame(c)
				c.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("err = %v, want a certificate error", err)
			}
		})
	}
	// The right certificate still works.
	c := dial(t, s.addr, nil)
	defer c.Close()
	if err := roundTrips(c, bufio.NewReader(c), 'e', [][]byte{[]byte("ok")}); err != nil {
		t.Fatal(err)
	}
	if h.traffic.Load() != 1 {
		t.Fatalf("handler saw %d traffic events, want 1 (the refused clients' bytes must not reach it)", h.traffic.Load())
	}
}

func TestHandshakeTimeoutClosesAndEndsTheGoroutine(t *testing.T) {
	h := &echo{t: t}
	// A timeout of 2 s: the goroutines are looked for before it ends (a
	// poll of 400 ms against 500 ms was thin on a loaded CI machine).
	s := startServer(t, h, serverCfg(t, false), WithHandshakeTimeout(2*time.Second))
	var conns []net.Conn
	for i := range 20 {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			_, _ = c.Write([]byte{0x16, 3, 1}) // a handshake record that never completes
		}
		conns = append(conns, c)
	}
	for start := time.Now(); handshakers() == 0; time.Sleep(time.Millisecond) {
		if time.Since(start) > 1500*time.Millisecond {
			t.Fatal("no handshake goroutine while 20 clients handshake")
		}
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(8 * time.Second))
		start := time.Now()
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("read: %v, want EOF", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("closed after %v", d)
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for n := handshakers(); n > 0; n = handshakers() {
		if time.Now().After(deadline) {
			t.Fatalf("%d handshake goroutines outlive their connections", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if h.opened.Load() != h.closed.Load() {
		t.Fatalf("opened %d closed %d", h.opened.Load(), h.closed.Load())
	}
}

// handshakers counts the goroutines running a handshake.
func handshakers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("tlsgnet.(*conn).handshake("))
}

// sink never consumes what it is given.
type sink struct {
	gnet.BuiltinEventEngine
	seen atomic.Int64 // the most plaintext it was shown
}

func (h *sink) OnTraffic(c gnet.Conn) gnet.Action {
	if n := int64(c.InboundBuffered()); n > h.seen.Load() {
		h.seen.Store(n)
	}
	return gnet.None
}

// With WithMaxBuffered, no more than about n bytes of plaintext wait for a
// handler that does not consume, and a peer that keeps sending is closed.
func TestMaxBufferedBoundsPlaintextAndClosesAFlood(t *testing.T) {
	const max = 64 << 10
	h := &sink{}
	s := startServer(t, h, serverCfg(t, false), WithMaxBuffered(max))
	c := dial(t, s.addr, nil)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	chunk := make([]byte, 16<<10)
	var err error
	for i := 0; i < 1024 && err == nil; i++ { // up to 16 MiB
		_, err = c.Write(chunk)
	}
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	if err == nil {
		t.Fatal("the connection is still open after 16 MiB the handler never consumed")
	}
	if got := h.seen.Load(); got < max || got > max+plainChunk {
		t.Fatalf("the handler was shown %d bytes, want %d to %d", got, max, max+plainChunk)
	}
}
