package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"ftkv/wire"
)

// review9TLSConfigs returns a server configuration with a fresh
// self-signed certificate and a client configuration that accepts it.
func review9TLSConfigs(t *testing.T) (srv, cli *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "deaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	srv = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	cli = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a test's own throwaway certificate
	return srv, cli
}

// TestReview9TLSCutWriteFailsPromptly: on TLS a caller whose deadline cuts
// its write fails the connection. Failing it closes the tls.Conn, and
// tls.Conn.Close first sends a close_notify alert with a 5 s write
// deadline of its own: to a server that takes nothing (SIGSTOP: the
// socket is full) the caller then blocks up to 5 s past its deadline, and
// every other caller of the connection learns of the failure (and retries
// elsewhere) only then. (Written after a cut record, the alert is also
// what the server reads as "bad record MAC".) Both must be prompt.
func TestReview9TLSCutWriteFailsPromptly(t *testing.T) {
	scfg, ccfg := review9TLSConfigs(t)
	addr, conns := startDeaf(t)
	go func() {
		for nc := range conns {
			go func() { _ = tls.Server(nc, scfg).Handshake() }() // then never reads
		}
	}()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, ccfg)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cn := newConn(tc, addr)
	cn.stall = time.Minute // only the caller's deadline may end the write
	defer cn.fail(ErrClosed)

	// A caller without a short deadline, waiting on the same connection.
	other := make(chan error, 1)
	octx, ocancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ocancel()
	if _, err := cn.queue(&wire.Frame{Op: wire.OpGet, Key: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	ocl := getCall(nil)
	if err := cn.send(&wire.Frame{Op: wire.OpGet, Key: []byte("y")}, ocl, false, time.Time{}); err != nil {
		t.Fatal(err)
	}
	otherStart := time.Now()
	go func() { _, err := cn.wait(octx, ocl); other <- err }()

	value := make([]byte, 1<<20)
	start := time.Now()
	var took time.Duration
	for i := 0; i < 32 && took == 0; i++ { // 32 MiB: far more than loopback's buffers hold
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		s := time.Now()
		_, err := cn.roundTrip(ctx, &wire.Frame{Op: wire.OpPut, Key: []byte("k"), Value: value})
		cancel()
		if el := time.Since(s); el > 1500*time.Millisecond {
			took = el
			t.Errorf("request %d returned %v after it began (deadline 100ms): %v", i, el.Round(time.Millisecond), err)
		}
		if cn.broken() {
			break
		}
	}
	t.Logf("connection broken after %v: %v", time.Since(start).Round(time.Millisecond), cn.broken())
	select {
	case err := <-other:
		if el := time.Since(otherStart); el > 2*time.Second {
			t.Errorf("the other caller learnt of the failure after %v: %v", el.Round(time.Millisecond), err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the other caller still waiting 10 s on: a failed connection")
	}
}

// startFreezing serves each connection by answering every request at
// once, until it has read after frames; it answers those and then never
// reads again (a server that stopped right after answering a batch).
func startFreezing(t *testing.T, after int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { nc.Close() })
			go func() {
				var hdr [4]byte
				for i := 0; i < after; i++ {
					if _, err := io.ReadFull(nc, hdr[:]); err != nil {
						return
					}
					body := make([]byte, 4+binary.BigEndian.Uint32(hdr[:]))
					copy(body, hdr[:])
					if _, err := io.ReadFull(nc, body[4:]); err != nil {
						return
					}
					f, _, err := wire.Decode(body, 0)
					if err != nil {
						t.Errorf("the server read a bad frame: %v", err)
						return
					}
					if _, err := nc.Write(wire.Append(nil, &wire.Frame{Op: f.Op, ID: f.ID, Status: wire.StatusOK})); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestReview9WokenCallerHonorsDeadline: a caller that its answer woke
// writes what others queued meanwhile (wake -> flush) with no deadline:
// if the server stops reading just then, that caller, which has its
// answer, is held in the write until the stall limit instead of its own
// deadline.
func TestReview9WokenCallerHonorsDeadline(t *testing.T) {
	value := make([]byte, 256<<10)
	var worst time.Duration
	for trial := 0; trial < 6; trial++ {
		addr := startFreezing(t, 24+trial*7)
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		cn := newConn(nc, addr)
		cn.stall = time.Minute
		var wg sync.WaitGroup
		var mu sync.Mutex
		stop := time.Now().Add(1500 * time.Millisecond)
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
					s := time.Now()
					_, _ = cn.roundTrip(ctx, &wire.Frame{Op: wire.OpPut, Key: []byte("k"), Value: value})
					cancel()
					el := time.Since(s)
					mu.Lock()
					worst = max(worst, el)
					mu.Unlock()
					if el > 20*time.Second {
						return
					}
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(25 * time.Second):
		}
		cn.fail(ErrClosed)
		<-done
	}
	t.Logf("slowest call: %v (deadline 200ms)", worst.Round(time.Millisecond))
	// The bug held a call for the stall limit (a minute; the trial ends it
	// at 25 s); on a loaded machine under -race an honest call took up to
	// 4.2 s (two local runs beside a CI run), and 6.2 s beside two busy
	// CPUs (an 8 s bound was thin for make test's load), so the bound
	// sits between.
	if worst > 20*time.Second {
		t.Errorf("a call with a 200ms deadline returned after %v", worst.Round(time.Millisecond))
	}
}

// TestWokenCallerFlushKeepsItsDeadline: the caller whose answer woke it
// writes what others queued meanwhile (wake); if the server has stopped
// reading, that write blocks, and it must end at that caller's own
// deadline (what is left goes on without a caller), not at the
// connection's stall limit. A CI run saw a call with a 200 ms deadline
// return after 25 s in TestReview9WokenCallerHonorsDeadline; this is that
// path, forced: the answer is handed over by the test, as the reader
// would, once another caller's large request is queued. On TLS (a write
// cut short fails the connection) the woken caller leaves the write to a
// goroutine: the connection the others share stands (a review found the
// first fix breaking it when the deadline passed during the write).
func TestWokenCallerFlushKeepsItsDeadline(t *testing.T) {
	for _, c := range []struct {
		name string
		tls  bool
		dl   time.Duration // the woken caller's deadline, from the wake
	}{{"plain", false, 300 * time.Millisecond}, {"plain-late", false, -time.Millisecond},
		{"tls", true, 300 * time.Millisecond}, {"tls-late", true, -time.Millisecond}} {
		t.Run(c.name, func(t *testing.T) {
			addr, conns := startDeaf(t)
			var scfg, ccfg *tls.Config
			if c.tls {
				scfg, ccfg = review9TLSConfigs(t)
			}
			go func() {
				for nc := range conns {
					_ = nc.(*net.TCPConn).SetReadBuffer(16 << 10)
					if c.tls {
						go func() { _ = tls.Server(nc, scfg).Handshake() }() // then never reads
					}
				}
			}()
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = raw.(*net.TCPConn).SetWriteBuffer(16 << 10)
			nc := raw
			if c.tls {
				tc := tls.Client(raw, ccfg)
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				nc = tc
			}
			cn := newConn(nc, addr)
			// Held in the others' write, the woken caller returns only
			// at the stall limit (30 s); one that keeps its deadline
			// returned 1.01 s after the wake beside two busy CPUs under
			// -race (8 MiB to copy, on TLS to seal), past the 1 s this
			// test allowed: it allows 5 s now, and fails at 20 s.
			cn.stall = 30 * time.Second
			t.Cleanup(func() { cn.fail(ErrClosed) })

			cl := getCall(nil)
			if err := cn.send(&wire.Frame{Op: wire.OpGet, Key: []byte("a")}, cl, true, time.Time{}); err != nil {
				t.Fatal(err)
			}
			// Another caller's request, larger than every buffer on the way.
			if _, err := cn.queue(&wire.Frame{Op: wire.OpPut, Key: []byte("b"), Value: make([]byte, 8<<20)}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var deadline time.Time
			if c.dl > 0 {
				deadline = time.Now().Add(c.dl)
			} else {
				deadline = time.Now().Add(300 * time.Millisecond)
			}
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := cn.wait(ctx, cl)
				done <- err
			}()
			for cl.state.Load() != callParked {
				time.Sleep(time.Millisecond)
			}
			// The answer to the first request arrives: the reader takes
			// the call, then hands the answer over (in the late cases
			// after the caller's deadline passed meanwhile).
			if got := cn.take(cl.id.Load()); got != cl {
				t.Fatal("the call is not registered")
			}
			if c.dl < 0 {
				time.Sleep(time.Until(deadline) - c.dl)
			}
			woken := time.Now()
			cl.reply = wire.Frame{Op: wire.OpGet, Status: wire.StatusNotFound}
			cn.signal(cl)
			select {
			case <-done:
				if el := time.Since(woken); el > time.Until(deadline)+5*time.Second && el > 5*time.Second {
					t.Fatalf("the woken caller (deadline %v after the wake) returned after %v", c.dl, el.Round(time.Millisecond))
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("the woken caller (deadline %v after the wake) still writing others' requests after 20 s", c.dl)
			}
			if cn.broken() {
				t.Fatalf("the woken caller broke the connection the others share: %v", cn.err)
			}
		})
	}
}
