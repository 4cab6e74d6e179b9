package tlsconf

import (
	"crypto/x509"
	"flag"
	"io"
	"strings"
	"testing"
)

// TestClientFlagsCheckTheCertificatesUsage: a client's own certificate
// (-tls-cert of bin/client, bin/bench and bin/gateway) is presented to
// the cluster's servers, which verify it for clientAuth: one for
// serverAuth only can never work and is refused when the flags are read
// (a review: bin/client retried for 5 s, then exited 3, "the cluster
// could not answer in time"). The gateway also serves its RESP port with
// it, so it wants serverAuth as well.
func TestClientFlagsCheckTheCertificatesUsage(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	write := writer(t, dir)
	caFile := write("ca.pem", ca.CertPEM)
	pair := func(name string, certPEM, keyPEM []byte) []string {
		return []string{"-tls-ca", caFile, "-tls-cert", write(name+".pem", certPEM), "-tls-key", write(name+"-key.pem", keyPEM)}
	}
	sc, sk := issueWithUsage(t, ca, x509.ExtKeyUsageServerAuth)
	cc, ck := issueWithUsage(t, ca, x509.ExtKeyUsageClientAuth)
	gc, gk, err := ca.Issue(RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		want   string // "" = taken
		serves string // UsableFor serverAuth: "" = taken
	}{
		{"serverAuth only", pair("srv", sc, sk), "clientAuth", ""},
		{"clientAuth only", pair("cli", cc, ck), "", "serverAuth"},
		{"-gen-certs client.pem", pair("gen", gc, gk), "", ""},
		{"no certificate", []string{"-tls-ca", caFile}, "", ""},
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		load := ClientFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg, files, err := load()
		if tc.want == "" && (err != nil || cfg == nil) || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
			continue
		}
		if err != nil {
			continue
		}
		m, err := Load(files, "")
		if err != nil {
			t.Fatal(err)
		}
		err = m.UsableFor(x509.ExtKeyUsageServerAuth, "the gateway serves its ports with it")
		if tc.serves == "" && err != nil || tc.serves != "" && (err == nil || !strings.Contains(err.Error(), tc.serves)) {
			t.Errorf("%s: UsableFor serverAuth: %v, want %q", tc.name, err, tc.serves)
		}
	}
}
