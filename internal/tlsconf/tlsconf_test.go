package tlsconf

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateWritesEveryFileAndKeysPrivate(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir, []string{"10.0.0.7", "host2"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range GeneratedFiles {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, "-key.pem") && st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	for _, r := range []Role{RoleServer, RoleCoordinator, RoleClient} {
		m, err := Load(Files{Cert: filepath.Join(dir, string(r)+".pem"), Key: filepath.Join(dir, string(r)+"-key.pem"), CA: filepath.Join(dir, "ca.pem")}, r)
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		leaf := m.cert.Leaf
		if leaf == nil {
			t.Fatal("no leaf")
		}
		if leaf.VerifyHostname("10.0.0.7") != nil || leaf.VerifyHostname("host2") != nil || leaf.VerifyHostname("127.0.0.1") != nil {
			t.Errorf("%s: names %v %v", r, leaf.DNSNames, leaf.IPAddresses)
		}
	}
	if err := Generate(dir, nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Generate: %v, want a refusal to overwrite", err)
	}
}

func TestLoadRefusesACertificateForAnotherRole(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir, nil); err != nil {
		t.Fatal(err)
	}
	_, err := Load(Files{Cert: filepath.Join(dir, "client.pem"), Key: filepath.Join(dir, "client-key.pem"), CA: filepath.Join(dir, "ca.pem")}, RoleServer)
	if err == nil || !strings.Contains(err.Error(), `role "client"`) {
		t.Fatalf("err = %v", err)
	}
	if err := (Files{Cert: "a"}).Validate(); err == nil {
		t.Fatal("a certificate without CA and key passed")
	}
	// A certificate from another CA than tls_ca.
	other := t.TempDir()
	if err := Generate(other, nil); err != nil {
		t.Fatal(err)
	}
	_, err = Load(Files{Cert: filepath.Join(other, "server.pem"), Key: filepath.Join(other, "server-key.pem"), CA: filepath.Join(dir, "ca.pem")}, RoleServer)
	if err == nil || !strings.Contains(err.Error(), "not signed by the CA") {
		t.Fatalf("err = %v", err)
	}
}

// handshake runs a TLS handshake between the two configurations over a
// loopback connection and returns each side's error.
func handshake(t *testing.T, server, client *tls.Config) (serr, cerr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		a, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		s := tls.Server(a, server)
		err = s.Handshake()
		if err == nil {
			_, err = s.Read(make([]byte, 1)) // TLS 1.3: the client's certificate is checked after its Finished
		}
		done <- err
		a.Close()
	}()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(b, client)
	cerr = c.Handshake()
	if cerr == nil {
		_, cerr = c.Write([]byte("x"))
		if cerr == nil {
			_, cerr = c.Read(make([]byte, 1))
			if errors.Is(cerr, io.EOF) {
				cerr = nil
			}
		}
	}
	b.Close()
	return <-done, cerr
}

func TestRolesOnInternalAndClientPorts(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	mat := func(ca *CA, r Role) *Material {
		c, k, err := ca.Issue(r)
		if err != nil {
			t.Fatal(err)
		}
		m, err := FromPEM(c, k, ca.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	srv, crd, cli := mat(ca, RoleServer), mat(ca, RoleCoordinator), mat(ca, RoleClient)
	bare, err := FromPEM(nil, nil, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _ := NewCA("other")
	foreign := mat(otherCA, RoleServer)
	own := mat(ca, "") // the operator's own certificate: no role

	cases := []struct {
		name       string
		server     *tls.Config
		client     *tls.Config
		wantServer string // substring of the server's error ("" = none)
		wantClient string
	}{
		{"server to server, mutual", srv.Server(true, Internal...), srv.Client(RoleServer), "", ""},
		{"coordinator to server control port", srv.Server(true, RoleCoordinator), crd.Client(RoleServer), "", ""},
		{"client cert on a replication port", srv.Server(true, RoleServer), cli.Client(RoleServer), "has role client", ""},
		{"no cert on an internal port", srv.Server(true, Internal...), bare.Client(RoleServer), "certificate", ""},
		{"client without cert on a client port", srv.Server(false), bare.Client(RoleServer), "", ""},
		{"client with cert on a client port", srv.Server(false), cli.Client(RoleServer), "", ""},
		{"client cert pretending to be a server", cli.Server(false), bare.Client(RoleServer), "", "has role client"},
		{"server from another CA", foreign.Server(false), bare.Client(RoleServer), "", "not from the cluster CA"},
		{"client cert from another CA", srv.Server(false), foreign.Client(RoleServer), "certificate", ""},
		// A cluster on one certificate without a role (no tls_coord_*):
		// it cannot tell roles apart, a cluster with roles still can.
		{"own certificate, internal link", own.Server(true, RoleCoordinator), own.Client(RoleServer), "", ""},
		{"own certificate, client without cert", own.Server(false), bare.Client(RoleServer, RoleCoordinator), "", ""},
		{"no role on an internal port of a cluster with roles", srv.Server(true, Internal...), own.Client(RoleServer), "has role none", ""},
		{"no role pretending to be a server of a cluster with roles", own.Server(false), cli.Client(RoleServer), "", "has role none"},
		{"client cert on the own certificate's internal port", own.Server(true, Internal...), cli.Client(), "has role client", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			serr, cerr := handshake(t, tc.server, tc.client)
			check := func(side string, err error, want string) {
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: %v", side, err)
				case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
					t.Errorf("%s: %v, want an error with %q", side, err, want)
				}
			}
			if tc.wantClient == "" { // (else the server hears the client's alert)
				check("server", serr, tc.wantServer)
			}
			if tc.wantServer == "" {
				check("client", cerr, tc.wantClient)
			} else if cerr == nil {
				t.Error("client: no error although the server refused it")
			}
		})
	}
	if v := srv.Server(true).MinVersion; v != tls.VersionTLS13 {
		t.Errorf("MinVersion %x", v)
	}
}
