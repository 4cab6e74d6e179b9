package tlsgnet

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"ftkv/internal/gnetlog"
	"ftkv/internal/tlsconf"
)

// Frames of the test protocol: a 4-byte big-endian length of what follows,
// a kind byte, the payload.
//
//	'e' echo: answered on the loop with Write ('e' back)
//	'a' async: answered on the loop with 'A', then from the connection's
//	    worker goroutine with AsyncWrite 'B' (same payload)
//	'w' wake: the worker calls Wake; OnTraffic answers 'W'
const hdrLen = 5

func frame(kind byte, payload []byte) []byte {
	b := make([]byte, hdrLen, hdrLen+len(payload))
	binary.BigEndian.PutUint32(b, uint32(1+len(payload)))
	b[4] = kind
	return append(b, payload...)
}

// readFrame reads one frame from r.
func readFrame(r io.Reader) (byte, []byte, error) {
	var h [hdrLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	p := make([]byte, binary.BigEndian.Uint32(h[:])-1)
	_, err := io.ReadFull(r, p)
	return h[4], p, err
}

// connState is the inner handler's own context.
type connState struct {
	work  chan []byte
	wakes atomic.Int32
	done  chan struct{}
}

// echo is the wrapped (inner) handler.
type echo struct {
	gnet.BuiltinEventEngine
	t       *testing.T
	opened  atomic.Int32
	closed  atomic.Int32
	badCB   atomic.Int32 // AsyncWrite callbacks that got the real connection
	traffic atomic.Int32
}

func (h *echo) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	h.opened.Add(1)
	st := &connState{work: make(chan []byte, 1024), done: make(chan struct{})}
	c.SetContext(st)
	go func() {
		for {
			select {
			case p := <-st.work:
				if p == nil {
					st.wakes.Add(1)
					_ = c.Wake(nil)
					continue
				}
				_ = c.AsyncWrite(frame('B', p), func(cc gnet.Conn, err error) error {
					if _, ok := cc.Context().(*connState); !ok {
						h.badCB.Add(1)
					}
					return nil
				})
			case <-st.done:
				return
			}
		}
	}()
	return nil, gnet.None
}

func (h *echo) OnClose(c gnet.Conn, _ error) gnet.Action {
	h.closed.Add(1)
	if st, ok := c.Context().(*connState); ok {
		close(st.done)
	}
	return gnet.None
}

func (h *echo) OnTraffic(c gnet.Conn) gnet.Action {
	h.traffic.Add(1)
	st := c.Context().(*connState)
	for n := st.wakes.Load(); n > 0; n = st.wakes.Load() {
		if st.wakes.CompareAndSwap(n, 0) {
			for range n {
				_, _ = c.Write(frame('W', nil))
			}
		}
	}
	var out []byte
	for {
		hdr, err := c.Peek(hdrLen)
		if err != nil {
			break
		}
		n := int(binary.BigEndian.Uint32(hdr)) + 4
		if c.InboundBuffered() < n {
			break
		}
		b, _ := c.Next(n)
		kind, p := b[4], append([]byte(nil), b[hdrLen:]...)
		switch kind {
		case 'e':
			out = append(out, frame('e', p)...)
		case 'a':
			// The on-loop answer goes first; the worker's follows it.
			out = append(out, frame('A', p)...)
			_, _ = c.Write(out)
			out = out[:0]
			st.work <- p
		case 'w':
			st.work <- nil
		case 'q':
			_, _ = c.Write(append(out, frame('q', nil)...))
			return gnet.Close
		}
	}
	if len(out) > 0 {
		_, _ = c.Write(out)
	}
	return gnet.None
}

// testPKI is a CA with a server certificate and a client certificate, and
// a client certificate from another CA.
type testPKI struct {
	server, client, foreign *tlsconf.Material
	caPEM                   []byte
}

var (
	pkiOnce sync.Once
	pki     testPKI
)

func getPKI(t testing.TB) testPKI {
	pkiOnce.Do(func() {
		mat := func(ca *tlsconf.CA, r tlsconf.Role) *tlsconf.Material {
			c, k, err := ca.Issue(r)
			if err != nil {
				panic(err)
			}
			m, err := tlsconf.FromPEM(c, k, ca.CertPEM)
			if err != nil {
				panic(err)
			}
			return m
		}
		ca, err := tlsconf.NewCA("test")
		if err != nil {
			panic(err)
		}
		other, err := tlsconf.NewCA("other")
		if err != nil {
			panic(err)
		}
		pki = testPKI{server: mat(ca, tlsconf.RoleServer), client: mat(ca, tlsconf.RoleClient), foreign: mat(other, tlsconf.RoleClient), caPEM: ca.CertPEM}
	})
	return pki
}

// server is a gnet engine running h (wrapped in TLS unless cfg is nil).
type server struct {
	addr string
	eng  gnet.Engine
	errc chan error
}

type bootHook struct {
	gnet.EventHandler
	booted chan gnet.Engine
	ready  chan struct{}
	once   sync.Once
}

// OnOpen of the first connection proves (to the race detector too) that
// the event loops run: gnet calls OnBoot before they exist.
func (b *bootHook) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	b.once.Do(func() { close(b.ready) })
	return b.EventHandler.OnOpen(c)
}

func (b *bootHook) OnBoot(e gnet.Engine) gnet.Action {
	b.booted <- e
	return b.EventHandler.OnBoot(e)
}

func startServer(t testing.TB, h gnet.EventHandler, cfg *tls.Config, opts ...Option) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if cfg != nil {
		h = Wrap(h, cfg, opts...)
	}
	bh := &bootHook{EventHandler: h, booted: make(chan gnet.Engine, 1), ready: make(chan struct{})}
	s := &server{addr: addr, errc: make(chan error, 1)}
	go func() {
		s.errc <- gnet.Run(bh, "tcp://"+addr, gnet.WithMulticore(true), gnet.WithNumEventLoop(2),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLogger(gnetlog.Logger{L: zerolog.Nop()}))
	}()
	select {
	case s.eng = <-bh.booted:
	case err := <-s.errc:
		t.Fatal(err)
	}
	// Wait until the listener accepts.
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
		_ = s.eng.Stop(context.Background())
		<-s.errc
	})
	return s
}

// dial opens a TLS client connection with cfg (nil: the test CA's client
// certificate).
func dial(t testing.TB, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	if cfg == nil {
		cfg = getPKI(t).client.Client(tlsconf.RoleServer)
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// roundTrips sends payloads as frames of kind and checks each answer.
func roundTrips(c net.Conn, r *bufio.Reader, kind byte, payloads [][]byte) error {
	go func() {
		var buf []byte
		for _, p := range payloads {
			buf = append(buf, frame(kind, p)...)
			if len(buf) > 64<<10 {
				_, _ = c.Write(buf)
				buf = buf[:0]
			}
		}
		_, _ = c.Write(buf)
	}()
	for i, p := range payloads {
		k, got, err := readFrame(r)
		if err != nil {
			return fmt.Errorf("answer %d: %w", i, err)
		}
		if k != kind || string(got) != string(p) {
			return fmt.Errorf("answer %d: kind %c, %d bytes, want %c, %d bytes", i, k, len(got), kind, len(p))
		}
	}
	return nil
}
