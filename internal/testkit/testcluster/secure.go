package testcluster

// Secure mode: with FTKV_TEST_SECURE=1 every cluster the harness starts
// has TLS on every link and a user, and every client the harness hands
// out (Client, the status clients, bin/client run from Bin) speaks TLS
// and logs in as that user. The existing suites then run unchanged over
// TLS and authentication. Without the variable nothing here is used.

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"ftkv/client"
	"ftkv/internal/auth"
	"ftkv/internal/frameio"
	"ftkv/internal/tlsconf"
	"ftkv/wire"
)

// SecureEnv is the environment variable that turns secure mode on ("1").
const SecureEnv = "FTKV_TEST_SECURE"

// SecureUser is the admin user every secure cluster has.
const SecureUser = "ftkv-test-admin"

// Secure reports whether the harness runs in secure mode.
func Secure() bool { return os.Getenv(SecureEnv) == "1" }

// SkipIfSecure skips t in secure mode, saying why (a test that speaks
// plaintext or raw frames on purpose).
func SkipIfSecure(t testing.TB, why string) {
	t.Helper()
	if Secure() {
		t.Skipf("SKIP in secure mode (%s=1): %s", SecureEnv, why)
	}
}

// secureMaterial is the process's certificates and admin credentials,
// made once.
type secureMaterial struct {
	dir      string // ca.pem, server.pem, … (tlsconf.Generate)
	password string
	hash     string
	tls      *tls.Config // trusts the CA, no client certificate
}

var (
	secureOnce sync.Once
	secureMat  *secureMaterial
	secureErr  error
)

// secure returns the process's secure material, making it on first use.
func secure(t testing.TB) *secureMaterial {
	t.Helper()
	m, err := secureInit()
	if err != nil {
		t.Fatalf("testcluster: secure mode: %v", err)
	}
	return m
}

// secureInit makes the process's secure material once.
func secureInit() (*secureMaterial, error) {
	secureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ftkv-secure-")
		if err != nil {
			secureErr = err
			return
		}
		m := &secureMaterial{dir: filepath.Join(dir, "certs")}
		if err := tlsconf.Generate(m.dir, nil); err != nil {
			secureErr = err
			return
		}
		var b [16]byte
		_, _ = rand.Read(b[:])
		m.password = "pw-" + hex.EncodeToString(b[:])
		// bcrypt's minimum cost: -race binaries check the password once
		// per process, and a higher cost takes seconds under the race
		// detector.
		if m.hash, err = auth.HashPassword([]byte(m.password), bcrypt.MinCost); err != nil {
			secureErr = err
			return
		}
		ca, err := tlsconf.Load(tlsconf.Files{CA: m.file("ca.pem")}, "")
		if err != nil {
			secureErr = err
			return
		}
		m.tls = ca.Client(tlsconf.RoleServer, tlsconf.RoleCoordinator)
		secureMat = m
	})
	return secureMat, secureErr
}

// MetricsClient is an HTTP client for the processes' /metrics and the
// coordinator's /sd, and the scheme they are served with: HTTPS trusting
// the test CA in secure mode (metrics go over TLS when the cluster has
// it), plain HTTP otherwise.
func MetricsClient(t testing.TB) (cl *http.Client, scheme string) {
	t.Helper()
	cl = &http.Client{Timeout: 5 * time.Second}
	if !Secure() {
		return cl, "http"
	}
	pem, err := os.ReadFile(secure(t).file("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cl.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	return cl, "https"
}

func (m *secureMaterial) file(name string) string { return filepath.Join(m.dir, name) }

// secureConfig adds to cfg what it lacks of the TLS lines and the admin
// user (a test that configures its own keeps them).
func (m *secureMaterial) secureConfig(cfg string) string {
	has := func(prefix string) bool {
		for _, l := range strings.Split(cfg, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), prefix) {
				return true
			}
		}
		return false
	}
	cfg = strings.TrimRight(cfg, "\n") + "\n"
	if !has("tls_") {
		cfg += fmt.Sprintf("tls_ca %s\ntls_cert %s\ntls_key %s\ntls_coord_cert %s\ntls_coord_key %s\n",
			m.file("ca.pem"), m.file("server.pem"), m.file("server-key.pem"), m.file("coordinator.pem"), m.file("coordinator-key.pem"))
	}
	if !has("user ") {
		cfg += fmt.Sprintf("user %s admin %s\n", SecureUser, m.hash)
	}
	return cfg
}

// clientOptions are the options every client the harness dials starts
// with in secure mode (a test's own come after them and win).
func (m *secureMaterial) clientOptions(own []client.Option) []client.Option {
	return append([]client.Option{client.WithTLS(m.tls), client.WithAuth(SecureUser, m.password)}, own...)
}

// secureBin makes, next to the binaries in dir, a directory whose coord,
// server and bench are links to them and whose client is a script that
// runs bin/client with -tls-ca and -user (the password in FTKV_PASSWORD
// unless the caller set one), so that a test's CLI runs speak TLS and log
// in without changing the test.
func (m *secureMaterial) secureBin(dir string) (string, error) {
	sdir := filepath.Join(dir, "secure")
	if err := os.Mkdir(sdir, 0o700); err != nil {
		return "", err
	}
	for _, name := range []string{"coord", "server", "bench"} {
		// A hard link, not a symlink: the coordinator finds bin/server
		// next to its own path, and the harness recognises its processes
		// by that directory in their command line.
		if err := os.Link(filepath.Join(dir, name), filepath.Join(sdir, name)); err != nil {
			return "", err
		}
	}
	script := fmt.Sprintf("#!/bin/sh\n: \"${FTKV_PASSWORD=%s}\"\nexport FTKV_PASSWORD\nexec %s -tls-ca %s -user %s \"$@\"\n",
		m.password, filepath.Join(dir, "client"), m.file("ca.pem"), SecureUser)
	if err := os.WriteFile(filepath.Join(sdir, "client"), []byte(script), 0o700); err != nil {
		return "", err
	}
	return sdir, nil
}

// askStatusSecure is askStatus over TLS after logging in as the admin.
func askStatusSecure(addr string) (wire.Frame, error) {
	m := secureMat
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return wire.Frame{}, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(nc, m.tls)
	r := bufio.NewReader(tc)
	if _, err := tc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpHello, ID: 1, Key: []byte(SecureUser), Value: []byte(m.password)})); err != nil {
		return wire.Frame{}, err
	}
	f, err := frameio.ReadFrame(r)
	if err != nil {
		return wire.Frame{}, err
	}
	if f.Status != wire.StatusOK {
		return f, fmt.Errorf("login refused: %s %q", f.Status, f.Value)
	}
	if _, err := tc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpStatus, ID: 2})); err != nil {
		return wire.Frame{}, err
	}
	return frameio.ReadFrame(r)
}
