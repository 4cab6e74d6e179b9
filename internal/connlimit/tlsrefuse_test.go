package connlimit

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"ftkv/internal/frameio"
	"ftkv/internal/tlsconf"
	"ftkv/wire"
)

func tlsMaterial(t *testing.T) (server, client *tlsconf.Material) {
	t.Helper()
	ca, err := tlsconf.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	mat := func(r tlsconf.Role) *tlsconf.Material {
		c, k, err := ca.Issue(r, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		m, err := tlsconf.FromPEM(c, k, ca.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	return mat(tlsconf.RoleServer), mat(tlsconf.RoleClient)
}

// TestMaxConnsTLSRefusalEncrypted: on a TLS port at MaxConns the refusal
// is written inside TLS, after the handshake, so that a TLS client reads
// it (redis-cli --tls through the gateway saw "wrong version number",
// bin/client "first record does not look like a TLS handshake": the
// refusal came in clear).
func TestMaxConnsTLSRefusalEncrypted(t *testing.T) {
	srv, cli := tlsMaterial(t)
	h := &getServer{val: []byte("v")}
	p := listen(t, h, Config{MaxConns: 1, TLS: srv.Server(false)})
	dialTLS := func() (*tls.Conn, error) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		return tls.DialWithDialer(d, "tcp", p.Addr().String(), cli.Client(tlsconf.RoleServer))
	}
	a, err := dialTLS()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Write(gets(1, 1)); err != nil {
		t.Fatal(err)
	}
	_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := frameio.ReadFrame(bufio.NewReader(a)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "one open", func() bool { return p.Open() == 1 })

	b, err := dialTLS()
	if err != nil {
		t.Fatalf("TLS handshake at max clients: %v (the refusal must come inside TLS)", err)
	}
	defer b.Close()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(b)
	f, err := frameio.ReadFrame(br)
	if err != nil || f.Status != wire.StatusUnavailable || string(f.Value) != "max clients reached" {
		t.Fatalf("second connection: %v %s %q", err, f.Status, f.Value)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("second connection after the refusal: %v, want EOF", err)
	}
	if p.Rejected() != 1 {
		t.Errorf("rejected = %d, want 1", p.Rejected())
	}
}
