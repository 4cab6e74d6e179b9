package coord

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"ftkv/internal/tlsconf"
)

// TLS: with the tls_* lines (or flags) every link is TLS 1.3 (package
// tlsconf): the coordinator's client and servers ports and its Raft
// transport, its control links to the servers; the servers' ports, their
// heartbeats and replication links. Internal links are mutual TLS with
// the certificate's role checked (a server's certificate on the servers
// port and the replication port, a coordinator's on the servers' control
// port and Raft); on client ports a certificate is optional.
//
// Servers get the paths of their files on their command line, never key
// material; remote servers get copies with copy_bin (tlsfiles.go), or
// use the same paths on their host.

// TLSFiles are the cluster's TLS files: the CA, the servers' certificate
// and key, the coordinators' certificate and key. Relative paths are
// relative to the coordinator's working directory.
type TLSFiles struct {
	CA, Cert, Key       string // tls_ca, tls_cert, tls_key (the servers')
	CoordCert, CoordKey string // tls_coord_cert, tls_coord_key
	// roleless: tls_cert's certificate has no ftkv role, and every
	// server and coordinator uses it (set by loadTLS).
	roleless bool
}

// set applies one tls_* line.
func (t *TLSFiles) set(name, val string) {
	switch name {
	case "tls_ca":
		t.CA = val
	case "tls_cert":
		t.Cert = val
	case "tls_key":
		t.Key = val
	case "tls_coord_cert":
		t.CoordCert = val
	case "tls_coord_key":
		t.CoordKey = val
	}
}

// Enabled reports whether any file is named.
func (t TLSFiles) Enabled() bool { return t != TLSFiles{} }

// override returns t with each file named in flags replacing its line.
func (t TLSFiles) override(flags TLSFiles) TLSFiles {
	for _, p := range []struct {
		dst *string
		v   string
	}{
		{&t.CA, flags.CA}, {&t.Cert, flags.Cert}, {&t.Key, flags.Key},
		{&t.CoordCert, flags.CoordCert}, {&t.CoordKey, flags.CoordKey},
	} {
		if p.v != "" {
			*p.dst = p.v
		}
	}
	return t
}

// Servers is the servers' files.
func (t TLSFiles) Servers() tlsconf.Files {
	return tlsconf.Files{CA: t.CA, Cert: t.Cert, Key: t.Key, Roleless: t.roleless}
}

// Coordinator is the coordinators' files.
func (t TLSFiles) Coordinator() tlsconf.Files {
	return tlsconf.Files{CA: t.CA, Cert: t.CoordCert, Key: t.CoordKey, Roleless: t.roleless}
}

// absolute makes every path absolute (servers run in other directories).
func (t TLSFiles) absolute() (TLSFiles, error) {
	for _, p := range []*string{&t.CA, &t.Cert, &t.Key, &t.CoordCert, &t.CoordKey} {
		if *p == "" {
			continue
		}
		a, err := filepath.Abs(*p)
		if err != nil {
			return t, err
		}
		*p = a
	}
	return t, nil
}

// coordTLS is what a coordinator with TLS uses.
type coordTLS struct {
	files   TLSFiles          // absolute paths
	mat     *tlsconf.Material // the coordinator's certificate
	clients *tls.Config       // its client port
	servers *tls.Config       // its servers port: servers only
	raftSrv *tls.Config       // Raft, accepting: coordinators only
	raftCli *tls.Config       // Raft, dialling
	ctl     *tls.Config       // control links to servers
	peer    *tls.Config       // links to the other coordinators' servers ports
}

// named lists the five files with the setting that names each.
func (t TLSFiles) named() []struct{ name, path string } {
	return []struct{ name, path string }{
		{"tls_ca", t.CA}, {"tls_cert", t.Cert}, {"tls_key", t.Key}, {"tls_coord_cert", t.CoordCert}, {"tls_coord_key", t.CoordKey},
	}
}

// loadTLS reads and checks the files (nil, nil without TLS): the CA and
// the servers' certificate and key must be named; without tls_coord_cert
// and tls_coord_key the coordinators use the servers' certificate (an
// operator's own certificate, with no ftkv role in it: tlsconf). A
// certificate with a role must be for role server (tls_cert) or
// coordinator (tls_coord_cert); every certificate must be from the CA.
func loadTLS(at func(settings ...string) string, t TLSFiles) (*coordTLS, error) {
	if !t.Enabled() {
		return nil, nil
	}
	shared := t.CoordCert == "" && t.CoordKey == ""
	if shared {
		t.CoordCert, t.CoordKey = t.Cert, t.Key
	}
	missing := ""
	for _, f := range t.named() {
		if f.path == "" && (!shared || !strings.HasPrefix(f.name, "tls_coord_")) {
			missing += " " + f.name
		}
	}
	if missing != "" {
		return nil, fmt.Errorf("%s: TLS needs the CA and a certificate and key (tls_ca, tls_cert, tls_key; the coordinators' own with tls_coord_cert and tls_coord_key); missing:%s (bin/coord -gen-certs DIR makes them all and prints the lines)",
			at("tls_ca", "tls_cert", "tls_key", "tls_coord_cert", "tls_coord_key"), missing)
	}
	t, err := t.absolute()
	if err != nil {
		return nil, err
	}
	for _, f := range t.named() {
		// A file that cannot be read is named by its own line (the
		// errors below name a certificate's three).
		fh, err := os.Open(f.path)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", at(f.name), f.name, err)
		}
		fh.Close()
	}
	// Without an ftkv role in tls_cert's certificate the cluster runs on
	// that one certificate: the coordinators must use it too (a
	// coordinator then admits on its internal links only its own key:
	// tlsconf's checkRole; two certificates could not admit each other).
	probe, err := tlsconf.Load(tlsconf.Files{CA: t.CA, Cert: t.Cert, Key: t.Key}, "")
	if err != nil {
		return nil, fmt.Errorf("%s: servers' certificate: %w", at("tls_ca", "tls_cert", "tls_key"), err)
	}
	if t.roleless = probe.Role() == ""; t.roleless && !shared && (t.CoordCert != t.Cert || t.CoordKey != t.Key) {
		return nil, fmt.Errorf("%s: tls_cert's certificate has no ftkv role, so every server and coordinator uses it: leave out tls_coord_cert and tls_coord_key (or use certificates with roles: bin/coord -gen-certs)",
			at("tls_cert", "tls_coord_cert", "tls_coord_key"))
	}
	if _, err := tlsconf.Load(t.Servers(), tlsconf.RoleServer); err != nil {
		return nil, fmt.Errorf("%s: servers' certificate: %w", at("tls_ca", "tls_cert", "tls_key"), err)
	}
	m, err := tlsconf.Load(t.Coordinator(), tlsconf.RoleCoordinator)
	if err != nil {
		if t.CoordCert == t.Cert {
			return nil, fmt.Errorf("%s: coordinators' certificate (tls_cert, as no tls_coord_cert is named): %w (name the coordinators' with tls_coord_cert and tls_coord_key)", at("tls_ca", "tls_cert", "tls_key"), err)
		}
		return nil, fmt.Errorf("%s: coordinators' certificate: %w", at("tls_ca", "tls_coord_cert", "tls_coord_key"), err)
	}
	return &coordTLS{
		files:   t,
		mat:     m,
		clients: m.Server(false),
		// (The other coordinators dial the servers port too: a deaf
		// leader's question, the group's stop; handoff.go.)
		servers: m.Server(true, tlsconf.RoleServer, tlsconf.RoleCoordinator),
		raftSrv: m.Server(true, tlsconf.RoleCoordinator),
		raftCli: m.Client(tlsconf.RoleCoordinator),
		ctl:     m.Client(tlsconf.RoleServer),
		peer:    m.Client(tlsconf.RoleCoordinator),
	}, nil
}

// GenerateCerts is bin/coord -gen-certs DIR [-hosts h1,h2]: a new CA and
// a certificate for each role in dir, and the config lines that use them.
func GenerateCerts(dir string, hosts []string) (string, error) {
	if err := tlsconf.Generate(dir, hosts); err != nil {
		return "", err
	}
	j := func(f string) string { return filepath.Join(dir, f) }
	return fmt.Sprintf("# TLS on every link: made by bin/coord -gen-certs %s (clients: -tls-ca %s)\n"+
		"tls_ca %s\ntls_cert %s\ntls_key %s\ntls_coord_cert %s\ntls_coord_key %s\n",
		dir, j("ca.pem"), j("ca.pem"), j("server.pem"), j("server-key.pem"), j("coordinator.pem"), j("coordinator-key.pem")), nil
}

// serverFiles is what servers are started with (zero without TLS).
func (t *coordTLS) serverFiles() tlsconf.Files {
	if t == nil {
		return tlsconf.Files{}
	}
	return t.files.Servers()
}

// handshake turns a connection dialled to a server's control port (or,
// with peer, another coordinator's servers port) into a TLS client
// connection, handshaken within d; nc is closed on failure.
func (t *coordTLS) handshake(ctx context.Context, nc net.Conn, d time.Duration, peer bool) (net.Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	cfg := t.ctl
	if peer {
		cfg = t.peer
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(hctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", nc.RemoteAddr(), err)
	}
	return tc, nil
}
