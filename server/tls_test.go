package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/internal/tlsconf"
	"ftkv/timing"
)

// TestCertificateReloadLoggedWithTheNode: the line a server writes when
// it takes renewed certificate files names the server and incarnation
// like its other lines (a black-box tester found it without them: in a
// coordinator's log, which gathers every local server's, it named no
// server).
func TestCertificateReloadLoggedWithTheNode(t *testing.T) {
	old := tlsconf.ReloadEvery
	tlsconf.ReloadEvery = time.Millisecond // timing: exception — any renewal is looked at by the next handshake
	t.Cleanup(func() { tlsconf.ReloadEvery = old })
	dir := t.TempDir()
	if err := tlsconf.Generate(dir, nil); err != nil {
		t.Fatal(err)
	}
	f := func(n string) string { return filepath.Join(dir, n) }
	m, err := tlsconf.Load(tlsconf.Files{CA: f("ca.pem"), Cert: f("server.pem"), Key: f("server-key.pem")}, tlsconf.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	var logged syncBuf
	s, err := New(Config{ID: 2, Incarnation: 7, CoordAddr: "127.0.0.1:1", Secret: testSecret, TLS: m,
		DumpDir: t.TempDir(), Timing: timing.New(300 * time.Millisecond), Loops: 1, Logger: zerolog.New(&logged)})
	if err != nil {
		t.Fatal(err)
	}
	_ = s

	// The CA issues a new server certificate; the files are replaced.
	caPEM, _ := os.ReadFile(f("ca.pem"))
	caKeyPEM, _ := os.ReadFile(f("ca-key.pem"))
	ca, err := tlsconf.ParseCA(caPEM, caKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(tlsconf.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // timing: exception — a new modification time
	if err := os.WriteFile(f("server-key.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f("server.pem"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	// The next handshake on the client port looks at the files.
	if _, err := s.tls.client.GetCertificate(nil); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	for _, l := range strings.Split(logged.String(), "\n") {
		if strings.Contains(l, "TLS certificate reloaded") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line == nil {
		t.Fatalf("no reload line in the server's log:\n%s", logged.String())
	}
	if line["node"] != float64(2) || line["inc"] != float64(7) {
		t.Fatalf("the reload line names node %v, incarnation %v; want 2, 7: %v", line["node"], line["inc"], line)
	}
}
