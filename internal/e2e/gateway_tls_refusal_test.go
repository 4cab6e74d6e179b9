package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/gateway"
	"ftkv/internal/testkit/testcluster"
	"ftkv/internal/tlsconf"
	"ftkv/limits"
)

// TestGatewayTLSMaxClientsRedisCLI: redis-cli --tls against a gateway at
// max_clients reads Redis's refusal, "ERR max number of clients reached";
// the refusal was written in clear before any TLS and redis-cli printed
// only an SSL error ("wrong version number"), which told the user nothing.
func TestGatewayTLSMaxClientsRedisCLI(t *testing.T) {
	needRedisTools(t)
	p := newTLSPKI(t)
	g := startTLSGateway(t, p, 1)
	// The one client allowed, held open.
	held, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.Addr(), p.bare)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_ = held.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := held.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, err := held.Read(buf); err != nil || string(buf[:n]) != "+PONG\r\n" {
		t.Fatalf("the first client's PING: %q, %v", buf[:n], err)
	}

	host, port, _ := net.SplitHostPort(g.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "redis-cli", "--tls", "--cacert", p.file("ca.pem"), "-h", host, "-p", port, "PING").CombinedOutput()
	if !strings.Contains(string(out), "max number of clients reached") {
		t.Fatalf("redis-cli --tls at max_clients printed %q, want Redis's \"max number of clients reached\"", out)
	}
	t.Logf("redis-cli --tls at max_clients: %s", strings.TrimSpace(string(out)))
}

// startTLSGateway runs a gateway in this process whose RESP port speaks
// TLS with p's server certificate and takes maxClients clients, in front
// of a new 3-server cluster (plain: the gateway's own port is the test).
func startTLSGateway(t *testing.T, p tlsPKI, maxClients int) *gateway.Gateway {
	t.Helper()
	m, err := tlsconf.Load(tlsconf.Files{CA: p.file("ca.pem"), Cert: p.file("server.pem"), Key: p.file("server-key.pem")}, "")
	if err != nil {
		t.Fatal(err)
	}
	c := testcluster.Start(t, testcluster.Options{N: 3, Plain: true})
	cl := c.Client()
	t.Cleanup(func() { cl.Close() })
	g, err := gateway.New(gateway.Config{Store: cl, Listen: "127.0.0.1:0", Timeout: 15 * time.Second, TLS: m.Server(false),
		Limits: limits.Config{MaxClients: maxClients}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Close(ctx)
	})
	return g
}
