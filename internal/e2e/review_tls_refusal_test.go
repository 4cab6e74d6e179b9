package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// TestReviewTLSMaxClientsRefusalNamed: at max_clients on a TLS port a TLS
// client (bin/client, the Go client) reported only "tls: first record
// does not look like a TLS handshake" (or EOF), which told the user nothing
// about the cause: the refusal ("max clients reached") was written in
// clear, before any TLS. Now it comes inside TLS and the error names it.
func TestReviewTLSMaxClientsRefusalNamed(t *testing.T) {
	p := newTLSPKI(t)
	cfg := "3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\n" + p.lines() + "max_clients 3\n"
	c := testcluster.Start(t, testcluster.Options{Config: cfg, ClientOptions: []client.Option{client.WithTLS(p.client)}})
	c.WaitRecovered(t, 10*time.Second)
	var held []*client.Client
	for i := 0; len(held) < 3 && i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cl, err := client.Dial(ctx, c.Addr, client.WithTLS(p.bare))
		cancel()
		if err == nil {
			held = append(held, cl)
		}
	}
	defer func() {
		for _, cl := range held {
			cl.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client.Dial(ctx, c.Addr, client.WithTLS(p.bare))
	if err == nil || !strings.Contains(err.Error(), "max clients") {
		t.Errorf("Go client at max_clients on a TLS port: %v, want an error naming \"max clients\"", err)
	}
	r := runCLI(t, c.Bin, c.Addr, "", "-tls-ca", p.file("ca.pem"), "G", "x")
	if !strings.Contains(r.stderr, "max clients") {
		t.Errorf("bin/client at max_clients on a TLS port: exit %d: %q, want an error naming \"max clients\"", r.code, r.stderr)
	}
}

// TestReviewTLSHandshakeFailureLogBounded: a failed TLS handshake is logged
// at most once a second per port (with the number not logged), like every
// other refusal: one client failing handshakes in a loop made the
// coordinator write a line per attempt (869 lines for 1,000 in 0.8 s).
func TestReviewTLSHandshakeFailureLogBounded(t *testing.T) {
	p := newTLSPKI(t)
	c := startTLSCluster(t, 3, p)
	c.WaitRecovered(t, 10*time.Second)
	before := strings.Count(c.Log(), "tls handshake failed")
	// A TLS 1.2-only client: the handshake fails at once (protocol version).
	cfg := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}
	const tries = 1000
	start := time.Now()
	for range tries {
		nc, err := net.DialTimeout("tcp", c.Addr, 2*time.Second)
		if err != nil {
			continue
		}
		tc := tls.Client(nc, cfg)
		_ = tc.SetDeadline(time.Now().Add(2 * time.Second))
		_ = tc.Handshake()
		tc.Close()
	}
	el := time.Since(start)
	time.Sleep(time.Second)
	got := strings.Count(c.Log(), "tls handshake failed") - before
	limit := 5 * (int(el/time.Second) + 2) // generous: a few lines a second
	t.Logf("%d failed handshakes in %v: %d log lines", tries, el.Round(time.Millisecond), got)
	if got > limit {
		t.Fatalf("%s", fmt.Sprintf("%d failed handshakes in %v wrote %d \"tls handshake failed\" lines, want at most %d (rate-limited like the other refusals)", tries, el.Round(time.Millisecond), got, limit))
	}
}
