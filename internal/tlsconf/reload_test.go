package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// peerSerials handshakes (mutual TLS) over loopback and returns the
// serial of the certificate each side was shown: the server's as the
// client saw it, the client's as the server saw it.
func peerSerials(t *testing.T, server, client *tls.Config) (srv, cli *big.Int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *big.Int, 1)
	go func() {
		a, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer a.Close()
		s := tls.Server(a, server)
		if s.Handshake() != nil {
			got <- nil
			return
		}
		if _, err := s.Read(make([]byte, 1)); err != nil { // TLS 1.3: the client's certificate comes after its Finished
			got <- nil
			return
		}
		_, _ = s.Write([]byte("y"))
		got <- s.ConnectionState().PeerCertificates[0].SerialNumber
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	cli = <-got
	if cli == nil {
		t.Fatal("the server side of the handshake failed")
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber, cli
}

func serialOf(t *testing.T, path string) *big.Int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// replace writes a pair as an operator would: each file to a temporary
// name, then renamed over the old one.
func replace(t *testing.T, certPath, keyPath string, certPEM, keyPEM []byte) {
	t.Helper()
	for _, f := range []struct {
		path string
		b    []byte
	}{{certPath, certPEM}, {keyPath, keyPEM}} {
		if err := os.WriteFile(f.path+".new", f.b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.path+".new", f.path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCertificateFilesReloaded: a certificate and key replaced on disk
// are presented from the next handshake after ReloadEvery, on both sides
// of mutual TLS, without a restart; a pair that does not chain to the CA
// or is for another role is refused (the old one stays, ReloadErr says
// why).
func TestCertificateFilesReloaded(t *testing.T) {
	old := ReloadEvery
	ReloadEvery = 20 * time.Millisecond
	t.Cleanup(func() { ReloadEvery = old })
	dir := t.TempDir()
	if err := Generate(dir, nil); err != nil {
		t.Fatal(err)
	}
	f := func(n string) string { return filepath.Join(dir, n) }
	sm, err := Load(Files{Cert: f("server.pem"), Key: f("server-key.pem"), CA: f("ca.pem")}, RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := Load(Files{Cert: f("coordinator.pem"), Key: f("coordinator-key.pem"), CA: f("ca.pem")}, RoleCoordinator)
	if err != nil {
		t.Fatal(err)
	}
	var logged syncBuffer
	sm.LogReloads(zerolog.New(&logged))
	server, client := sm.Server(true, Internal...), cm.Client(RoleServer)
	s1, c1 := peerSerials(t, server, client)
	if s1.Cmp(serialOf(t, f("server.pem"))) != 0 || c1.Cmp(serialOf(t, f("coordinator.pem"))) != 0 {
		t.Fatal("the first handshake did not show the certificates loaded")
	}

	// The CA's key issues new certificates for both.
	caPEM, _ := os.ReadFile(f("ca.pem"))
	caKeyPEM, _ := os.ReadFile(f("ca-key.pem"))
	ca, err := ParseCA(caPEM, caKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		role      Role
		cert, key string
	}{{RoleServer, "server.pem", "server-key.pem"}, {RoleCoordinator, "coordinator.pem", "coordinator-key.pem"}} {
		cp, kp, err := ca.Issue(r.role)
		if err != nil {
			t.Fatal(err)
		}
		replace(t, f(r.cert), f(r.key), cp, kp)
	}
	time.Sleep(3 * ReloadEvery)
	s2, c2 := peerSerials(t, server, client)
	if s2.Cmp(s1) == 0 || s2.Cmp(serialOf(t, f("server.pem"))) != 0 {
		t.Errorf("server certificate after replacing its files: serial %v, want the new %v", s2, serialOf(t, f("server.pem")))
	}
	if c2.Cmp(c1) == 0 || c2.Cmp(serialOf(t, f("coordinator.pem"))) != 0 {
		t.Errorf("client certificate after replacing its files: serial %v, want the new %v", c2, serialOf(t, f("coordinator.pem")))
	}
	if err := sm.ReloadErr(); err != nil {
		t.Errorf("ReloadErr after a good pair: %v", err)
	}
	if !strings.Contains(logged.String(), "TLS certificate reloaded") {
		t.Errorf("the reload was not logged: %q", logged.String())
	}

	// Refused: a pair from another CA, then one for another role.
	other := t.TempDir()
	if err := Generate(other, nil); err != nil {
		t.Fatal(err)
	}
	bad := func(cert, key string) ([]byte, []byte) {
		cp, _ := os.ReadFile(cert)
		kp, _ := os.ReadFile(key)
		return cp, kp
	}
	for i, tc := range []struct {
		cert, key, want string
	}{
		{filepath.Join(other, "server.pem"), filepath.Join(other, "server-key.pem"), "not signed by the CA"},
		{f("client.pem"), f("client-key.pem"), `role "client"`},
	} {
		cp, kp := bad(tc.cert, tc.key)
		replace(t, f("server.pem"), f("server-key.pem"), cp, kp)
		time.Sleep(3 * ReloadEvery)
		s3, _ := peerSerials(t, server, client)
		if s3.Cmp(s2) != 0 {
			t.Errorf("%s: the server now shows serial %v; want the last good one, %v", tc.cert, s3, s2)
		}
		if err := sm.ReloadErr(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ReloadErr = %v, want %q", tc.cert, err, tc.want)
		}
		if n := strings.Count(logged.String(), "not taken"); n != i+1 {
			t.Errorf("%s: %d refusals logged, want %d: %q", tc.cert, n, i+1, logged.String())
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the handshakes' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRenewalSeenByADialer: in a cluster on one role-less certificate,
// process A's files are renewed and B starts on the new pair (a respawn).
// A, which has only dialled since (it presents its certificate after it
// checked the peer's), must take B's new key at once: it refused B until
// something dialled A, 1-2 s of refused heartbeats and Raft traffic
// after a renewal (a review).
func TestRenewalSeenByADialer(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("t")
	if err != nil {
		t.Fatal(err)
	}
	write := writer(t, dir)
	c1, k1, err := ca.Issue("")
	if err != nil {
		t.Fatal(err)
	}
	c2, k2, err := ca.Issue("")
	if err != nil {
		t.Fatal(err)
	}
	caFile := write("ca.pem", ca.CertPEM)
	a := Files{CA: caFile, Cert: write("a.pem", c1), Key: write("a-key.pem", k1), Roleless: true}
	ma, err := Load(a, RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	replace(t, a.Cert, a.Key, c2, k2)
	mb, err := Load(Files{CA: caFile, Cert: write("b.pem", c2), Key: write("b-key.pem", k2), Roleless: true}, RoleCoordinator)
	if err != nil {
		t.Fatal(err)
	}
	if serr, cerr := handshake(t, mb.Server(true, RoleServer), ma.Client(RoleCoordinator)); serr != nil || cerr != nil {
		t.Fatalf("A (renewed on disk, dialling) to B (on the new pair): B %v, A %v", serr, cerr)
	}
	// And A still takes the old key from a peer that has not renewed yet
	// (C's check of A's new key is C's own renewal: not asked here).
	mc, err := Load(Files{CA: caFile, Cert: write("c.pem", c1), Key: write("c-key.pem", k1), Roleless: true}, RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	if serr, _ := handshake(t, ma.Server(true, RoleServer), mc.Client()); serr != nil {
		t.Fatalf("C (the old pair) to A (renewed): A refused it: %v", serr)
	}
}
