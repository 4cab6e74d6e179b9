package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestLoadWithAndWithoutRoles: a server or coordinator of a cluster with
// roles needs its role in its certificate; one of a cluster on one
// role-less certificate (Files.Roleless) needs a certificate without one;
// either needs a certificate good for both ends of a link.
func TestLoadWithAndWithoutRoles(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	write := func(name string, b []byte) string {
		if err := os.WriteFile(f(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f(name)
	}
	oc, ok, err := ca.Issue("")
	if err != nil {
		t.Fatal(err)
	}
	sc, sk0, err := ca.Issue(RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	own := Files{CA: write("ca.pem", ca.CertPEM), Cert: write("own.pem", oc), Key: write("own-key.pem", ok)}
	typed := Files{CA: f("ca.pem"), Cert: write("server.pem", sc), Key: write("server-key.pem", sk0)}
	serverOnly, sk := issueWithUsage(t, ca, x509.ExtKeyUsageServerAuth)
	narrow := Files{CA: f("ca.pem"), Cert: write("narrow.pem", serverOnly), Key: write("narrow-key.pem", sk), Roleless: true}
	for _, tc := range []struct {
		name  string
		files Files
		want  string // "" = loads
	}{
		{"role-less certificate, role-less cluster", Files{CA: own.CA, Cert: own.Cert, Key: own.Key, Roleless: true}, ""},
		{"role-less certificate, cluster with roles", own, "names no ftkv role"},
		{"server certificate, role-less cluster", Files{CA: typed.CA, Cert: typed.Cert, Key: typed.Key, Roleless: true}, `role "server", but this cluster's certificate has no ftkv role`},
		{"server certificate, cluster with roles", typed, ""},
		{"serverAuth only", narrow, "both serverAuth and clientAuth"},
	} {
		_, err := Load(tc.files, RoleServer)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A client takes any of them.
	if _, err := Load(Files{CA: own.CA, Cert: narrow.Cert, Key: narrow.Key}, ""); err != nil {
		t.Errorf("a client with a serverAuth-only certificate: %v", err)
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
	// A cluster on the operator's own certificate (no role): a server and
	// a coordinator loaded as bin/server and bin/coord load it, and a
	// second certificate of the same CA (a client's, say).
	ownDir := t.TempDir()
	write := writer(t, ownDir)
	caFile := write("ca.pem", ca.CertPEM)
	oc, ok, err := ca.Issue("")
	if err != nil {
		t.Fatal(err)
	}
	ownFiles := Files{CA: caFile, Cert: write("own.pem", oc), Key: write("own-key.pem", ok), Roleless: true}
	load := func(f Files, want Role) *Material {
		m, err := Load(f, want)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ownSrv, ownCrd := load(ownFiles, RoleServer), load(ownFiles, RoleCoordinator)
	other := mat(ca, "")

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
		{"own certificate, coordinator to server", ownSrv.Server(true, RoleCoordinator), ownCrd.Client(RoleServer), "", ""},
		{"own certificate, server to coordinator", ownCrd.Server(true, RoleServer), ownSrv.Client(RoleCoordinator), "", ""},
		{"own certificate, client without cert", ownSrv.Server(false), bare.Client(RoleServer, RoleCoordinator), "", ""},
		{"another certificate of the CA on the own certificate's Raft port", ownCrd.Server(true, RoleCoordinator), other.Client(), "not this cluster's own certificate", ""},
		{"another certificate of the CA dialled as a server", other.Server(false), ownCrd.Client(RoleServer), "", "not this cluster's own certificate"},
		{"a server certificate with a role on the own certificate's internal port", ownSrv.Server(true, Internal...), srv.Client(), "not this cluster's own certificate", ""},
		{"no role on an internal port of a cluster with roles", srv.Server(true, Internal...), other.Client(RoleServer), "has role none", ""},
		{"no role pretending to be a server of a cluster with roles", other.Server(false), cli.Client(RoleServer), "", "has role none"},
		{"client cert on the own certificate's internal port", ownSrv.Server(true, Internal...), cli.Client(), "not this cluster's own certificate", ""},
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

// issueWithUsage makes a certificate without a role for only the
// extended key usage u, as a PKI that issues web servers' certificates
// makes them.
func issueWithUsage(t *testing.T, ca *CA, u x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "narrow"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{u},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// writer gives a function that writes b to dir/name (0600) and returns
// its path.
func writer(t *testing.T, dir string) func(name string, b []byte) string {
	return func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}
