package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
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
