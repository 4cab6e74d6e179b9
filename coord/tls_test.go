package coord

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ftkv/internal/tlsconf"
)

func TestTLSLinesFlagsAndRoles(t *testing.T) {
	dir := t.TempDir()
	lines, err := GenerateCerts(dir, []string{"10.0.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := "1\nlocalhost 0 0 0\n" + lines
	c, err := ParseCluster("tls.txt", strings.NewReader(cfg))
	if err != nil {
		t.Fatalf("the lines -gen-certs prints do not parse: %v\n%s", err, cfg)
	}
	j := func(f string) string { return filepath.Join(dir, f) }
	want := TLSFiles{CA: j("ca.pem"), Cert: j("server.pem"), Key: j("server-key.pem"), CoordCert: j("coordinator.pem"), CoordKey: j("coordinator-key.pem")}
	if c.TLS != want {
		t.Fatalf("parsed %+v, want %+v", c.TLS, want)
	}
	ct, err := loadTLS(atPath("tls.txt"), c.TLS)
	if err != nil || ct == nil {
		t.Fatalf("loadTLS: %v", err)
	}
	if f := ct.serverFiles(); f != (tlsconf.Files{CA: want.CA, Cert: want.Cert, Key: want.Key}) {
		t.Fatalf("servers get %+v", f)
	}
	if ct.mat.Role() != tlsconf.RoleCoordinator {
		t.Fatalf("the coordinator's role is %q", ct.mat.Role())
	}
	if (*coordTLS)(nil).serverFiles().Enabled() {
		t.Fatal("servers get TLS files without TLS")
	}
	for _, tc := range []struct {
		name  string
		files TLSFiles
		want  string
	}{
		{"no coordinator lines, the servers' certificate has role server", TLSFiles{CA: want.CA, Cert: want.Cert, Key: want.Key}, `a coordinator needs one for role "coordinator" (name the coordinators' with tls_coord_cert and tls_coord_key)`},
		{"a coordinator certificate without its key", TLSFiles{CA: want.CA, Cert: want.Cert, Key: want.Key, CoordCert: want.CoordCert}, "missing: tls_coord_key"},
		{"no CA", TLSFiles{Cert: want.Cert, Key: want.Key}, "missing: tls_ca"},
		{"servers' line names the client certificate", want.override(TLSFiles{Cert: j("client.pem"), Key: j("client-key.pem")}), `role "client"; a server needs one for role "server"`},
		{"coordinators' line names the server certificate", want.override(TLSFiles{CoordCert: j("server.pem"), CoordKey: j("server-key.pem")}), `a coordinator needs one for role "coordinator"`},
		{"a missing file", want.override(TLSFiles{CA: j("nope.pem")}), "no such file"},
	} {
		if _, err := loadTLS(atPath("tls.txt"), tc.files); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	// The three lines SPEC names, with a certificate without a role (as
	// an operator's own PKI makes it): the coordinators use it too.
	ca, err := tlsconf.NewCA("operator")
	if err != nil {
		t.Fatal(err)
	}
	cp, kp, err := ca.Issue("")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"own-ca.pem": ca.CertPEM, "own.pem": cp, "own-key.pem": kp} {
		if err := os.WriteFile(j(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	three := TLSFiles{CA: j("own-ca.pem"), Cert: j("own.pem"), Key: j("own-key.pem")}
	ct, err = loadTLS(atPath("tls.txt"), three)
	if err != nil {
		t.Fatalf("tls_ca, tls_cert and tls_key alone: %v", err)
	}
	if ct.files.CoordCert != three.Cert || ct.files.CoordKey != three.Key || ct.serverFiles() != (tlsconf.Files{CA: three.CA, Cert: three.Cert, Key: three.Key, Roleless: true}) {
		t.Fatalf("three lines: %+v", ct.files)
	}
	if ct.mat.Role() != "" {
		t.Fatalf("three lines: the coordinator's role is %q", ct.mat.Role())
	}
	// A role-less tls_cert with the coordinators' own certificate: two
	// certificates without roles could not admit each other.
	if _, err := loadTLS(atPath("tls.txt"), TLSFiles{CA: three.CA, Cert: three.Cert, Key: three.Key, CoordCert: want.CoordCert, CoordKey: want.CoordKey}); err == nil ||
		!strings.Contains(err.Error(), "leave out tls_coord_cert and tls_coord_key") {
		t.Fatalf("a role-less tls_cert with a coordinator certificate: %v, want a refusal", err)
	}
	if ct, err := loadTLS(atPath("tls.txt"), TLSFiles{}); ct != nil || err != nil {
		t.Fatalf("no lines: %v %v, want TLS off", ct, err)
	}
	// The flag wins over the line.
	if got := c.TLS.override(TLSFiles{CA: "/elsewhere/ca.pem"}); got.CA != "/elsewhere/ca.pem" || got.Cert != want.Cert {
		t.Fatalf("override: %+v", got)
	}
	if _, err := os.Stat(j("server-key.pem")); err != nil {
		t.Fatal(err)
	}
}

// atPath is a Cluster.At for a file that sets nothing.
func atPath(path string) func(...string) string {
	return (&Cluster{Path: path}).At
}
