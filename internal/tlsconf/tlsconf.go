package tlsconf

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Role is what a certificate's holder is in the cluster.
type Role string

// The roles.
const (
	RoleServer      Role = "server"
	RoleCoordinator Role = "coordinator"
	RoleClient      Role = "client"
)

// roleURIPrefix starts the URI SAN that names a certificate's role.
const roleURIPrefix = "ftkv:role:"

// Internal is the roles admitted on internal links.
var Internal = []Role{RoleServer, RoleCoordinator}

// ErrWrongRole: the peer's certificate is from the cluster CA but for a
// role the link does not admit.
var ErrWrongRole = errors.New("certificate for the wrong role")

// Files names the PEM files of one process: its certificate and key, and
// the cluster CA's certificate. The zero value means TLS off.
type Files struct {
	Cert, Key, CA string
	// Roleless: the cluster runs on one certificate of the operator's
	// own, without an ftkv role (tls_cert alone). A server or
	// coordinator then needs a certificate without a role, and admits on
	// its internal links only peers presenting a key it has held itself
	// (its own certificate's: see checkRole); without it, one with its
	// role.
	Roleless bool
}

// Enabled reports whether any file is named.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Validate checks that the names fit together: a CA always, and a
// certificate with its key or neither (a client without a certificate).
func (f Files) Validate() error {
	switch {
	case !f.Enabled():
		return nil
	case f.CA == "":
		return errors.New("tls: a CA file (tls_ca) is needed with tls_cert and tls_key")
	case (f.Cert == "") != (f.Key == ""):
		return errors.New("tls: tls_cert and tls_key go together")
	}
	return nil
}

// Material is a loaded certificate (possibly none, for a client) and CA.
//
// A certificate loaded from files (Load) is replaced when they change:
// every TLS configuration made from the Material hands out the current
// one, and the files are looked at (stat) at most once per ReloadEvery.
// A new pair must chain to the CA read at start and keep the role; until
// one does (a half-written pair, a wrong file), the old certificate stays
// and ReloadErr says why. The CA itself is read only at start.
type Material struct {
	cert *tls.Certificate // as loaded at start
	role Role
	pool *x509.CertPool
	// internal: a server's or coordinator's (Load's want); with no role,
	// its internal links admit only the keys in held.
	internal bool
	held     atomic.Pointer[[][32]byte] // SHA-256 of each public key its certificate has had

	files   Files // set by Load: watched
	live    atomic.Pointer[tls.Certificate]
	nextNs  atomic.Int64 // unix ns of the next look at the files
	mu      sync.Mutex   // one reload at a time; stamp, reloadErr
	stamp   [2]fileStamp
	loadErr error
	onLoad  func(err error)
}

// LogReloads logs each new version of the certificate's files to log:
// taken (info), or why not (warn: the old certificate stays in use). Call
// it before the Material is used.
func (m *Material) LogReloads(log zerolog.Logger) {
	m.onLoad = func(err error) {
		if err != nil {
			log.Warn().Err(err).Str("cert", m.files.Cert).Msg("new TLS certificate files not taken; the old certificate stays in use")
			return
		}
		log.Info().Str("cert", m.files.Cert).Msg("TLS certificate reloaded from its files")
	}
}

// ReloadEvery bounds how often a Material looks at its certificate's files.
var ReloadEvery = time.Second // timing: exception — a certificate file's check period

// fileStamp tells a file's versions apart.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// current is the certificate to present now (nil: none).
func (m *Material) current() *tls.Certificate {
	if m.files.Cert == "" {
		return m.cert
	}
	if now := time.Now().UnixNano(); now >= m.nextNs.Load() && m.mu.TryLock() {
		m.nextNs.Store(now + int64(ReloadEvery))
		m.reload()
		m.mu.Unlock()
	}
	return m.live.Load()
}

// reload reads the files again if they changed; m.mu is held.
func (m *Material) reload() {
	var st [2]fileStamp
	var err error
	for i, p := range []string{m.files.Cert, m.files.Key} {
		if st[i], err = stampOf(p); err != nil {
			m.loadErr = fmt.Errorf("tls: %w", err)
			return
		}
	}
	if st == m.stamp {
		return
	}
	m.stamp = st
	defer func() {
		if m.onLoad != nil {
			m.onLoad(m.loadErr)
		}
	}()
	certPEM, err := os.ReadFile(m.files.Cert)
	if err != nil {
		m.loadErr = fmt.Errorf("tls: reading the certificate: %w", err)
		return
	}
	keyPEM, err := os.ReadFile(m.files.Key)
	if err != nil {
		m.loadErr = fmt.Errorf("tls: reading the key: %w", err)
		return
	}
	cert, role, err := parsePair(certPEM, keyPEM, m.pool)
	if err == nil && role != m.role {
		err = fmt.Errorf("tls: the new certificate %s has role %q, not %q", m.files.Cert, role, m.role)
	}
	if err == nil && m.internal {
		err = bothEnds(cert)
	}
	if err != nil {
		m.loadErr = err
		return
	}
	m.hold(cert)
	m.live.Store(cert)
	m.loadErr = nil
}

// ReloadErr is why the certificate's files, changed since they were last
// read successfully, were not taken (nil: the current files are in use).
func (m *Material) ReloadErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loadErr
}

// Load reads f. want, when not empty, is the role this process plays: a
// certificate for another role is refused.
func Load(f Files, want Role) (*Material, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if !f.Enabled() {
		return nil, errors.New("tls: no files named")
	}
	if want != "" && want != RoleClient && f.Cert == "" {
		return nil, fmt.Errorf("tls: a %s needs a certificate and key (tls_cert, tls_key)", want)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("tls: reading the CA: %w", err)
	}
	var certPEM, keyPEM []byte
	if f.Cert != "" {
		if certPEM, err = os.ReadFile(f.Cert); err != nil {
			return nil, fmt.Errorf("tls: reading the certificate: %w", err)
		}
		if keyPEM, err = os.ReadFile(f.Key); err != nil {
			return nil, fmt.Errorf("tls: reading the key: %w", err)
		}
	}
	m, err := FromPEM(certPEM, keyPEM, caPEM)
	if err != nil {
		return nil, err
	}
	if want == RoleServer || want == RoleCoordinator {
		m.internal = true
		switch {
		case f.Roleless && m.role != "":
			return nil, fmt.Errorf("tls: %s is a certificate for role %q, but this cluster's certificate has no ftkv role (tls_cert alone): every server and coordinator uses that one", f.Cert, m.role)
		case !f.Roleless && m.role == "":
			return nil, fmt.Errorf("tls: %s names no ftkv role (URI SAN ftkv:role:%s); a certificate without one serves only a cluster on that one certificate (tls_ca, tls_cert and tls_key, no tls_coord_*)", f.Cert, want)
		case !f.Roleless && m.role != want:
			return nil, fmt.Errorf("tls: %s is a certificate for role %q; a %s needs one for role %q", f.Cert, m.role, want, want)
		}
		if err := bothEnds(m.cert); err != nil {
			return nil, fmt.Errorf("%w (%s)", err, f.Cert)
		}
		m.hold(m.cert)
	} else if want != "" && m.cert != nil && m.role != want {
		return nil, fmt.Errorf("tls: %s is a certificate for role %q; a %s needs one for role %q", f.Cert, m.role, want, want)
	}
	if f.Cert != "" {
		// Watched from now on: stamps of the files as read (a change
		// between the read and the stat is seen at the next change).
		m.files = f
		for i, p := range []string{f.Cert, f.Key} {
			m.stamp[i], _ = stampOf(p)
		}
		m.live.Store(m.cert)
		m.nextNs.Store(time.Now().Add(ReloadEvery).UnixNano())
	}
	return m, nil
}

// FromPEM builds Material from PEM blocks; certPEM and keyPEM may both be
// empty (a client without a certificate). The certificate must chain to
// the CA.
func FromPEM(certPEM, keyPEM, caPEM []byte) (*Material, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("tls: the CA file holds no PEM certificate")
	}
	m := &Material{pool: pool}
	if len(certPEM) == 0 && len(keyPEM) == 0 {
		return m, nil
	}
	cert, role, err := parsePair(certPEM, keyPEM, pool)
	if err != nil {
		return nil, err
	}
	m.cert, m.role = cert, role
	return m, nil
}

// parsePair reads a certificate and its key, checks that the certificate
// chains to pool and returns it with its role.
func parsePair(certPEM, keyPEM []byte, pool *x509.CertPool) (*tls.Certificate, Role, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, "", fmt.Errorf("tls: certificate and key: %w", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, "", fmt.Errorf("tls: certificate: %w", err)
		}
		cert.Leaf = leaf // (bothEnds and hold read it)
	}
	if _, err := verify(pool, cert.Certificate, x509.ExtKeyUsageAny); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return nil, "", fmt.Errorf("tls: the certificate is expired or not valid yet: %w", err)
		}
		return nil, "", fmt.Errorf("tls: the certificate is not signed by the CA: %w", err)
	}
	// A certificate without a role (an operator's own PKI) is taken: see
	// checkRole.
	return &cert, RoleOf(leaf), nil
}

// Role is the role of the loaded certificate ("" without one).
func (m *Material) Role() Role { return m.role }

// bothEnds checks that an internal certificate may be used at both ends
// of a link (servers and coordinators dial and are dialled): no extended
// key usage, any, or both serverAuth and clientAuth. One with only one of
// them loaded, then failed every handshake one way (a review).
func bothEnds(c *tls.Certificate) error {
	if allows(c.Leaf, x509.ExtKeyUsageServerAuth) && allows(c.Leaf, x509.ExtKeyUsageClientAuth) {
		return nil
	}
	return errors.New("tls: a server's or coordinator's certificate must allow both serverAuth and clientAuth (extended key usage), or name no usage: each dials and is dialled")
}

// allows reports whether c's extended key usage allows u: none named,
// any, or u.
func allows(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	eku := c.ExtKeyUsage
	return len(eku) == 0 || slices.Contains(eku, x509.ExtKeyUsageAny) || slices.Contains(eku, u)
}

// UsableFor checks that the loaded certificate's extended key usage
// allows u (nil without a certificate). why says what it is used for.
func (m *Material) UsableFor(u x509.ExtKeyUsage, why string) error {
	if m.cert == nil || allows(m.cert.Leaf, u) {
		return nil
	}
	name := map[x509.ExtKeyUsage]string{x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth"}[u]
	return fmt.Errorf("tls: %s: its extended key usage does not allow %s, and %s (use a certificate that allows it, or names no usage)", m.files.Cert, name, why)
}

// keyID identifies a certificate's public key.
func keyID(c *x509.Certificate) [32]byte { return sha256.Sum256(c.RawSubjectPublicKeyInfo) }

// hold adds c's public key to those this process has held. Writers are
// Load (before m is shared) and reload (m.mu held); handshakes read.
func (m *Material) hold(c *tls.Certificate) {
	id := keyID(c.Leaf)
	var ids [][32]byte
	if old := m.held.Load(); old != nil {
		if slices.Contains(*old, id) {
			return
		}
		ids = append(ids, *old...)
	}
	ids = append(ids, id)
	m.held.Store(&ids)
}

// holds reports whether c's public key is one this process has held.
func (m *Material) holds(c *x509.Certificate) bool {
	ids := m.held.Load()
	return ids != nil && slices.Contains(*ids, keyID(c))
}

// RoleOf reads a certificate's role from its URI SANs ("" if none).
func RoleOf(c *x509.Certificate) Role {
	for _, u := range c.URIs {
		if s := u.String(); strings.HasPrefix(s, roleURIPrefix) {
			return Role(strings.TrimPrefix(s, roleURIPrefix))
		}
	}
	return ""
}

// base is what every configuration shares.
func (m *Material) base() *tls.Config {
	// Full-size records from the first byte: links are long-lived and
	// carry batches (dynamic sizing favours a web page's first paint).
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, DynamicRecordSizingDisabled: true}
	switch {
	case m.files.Cert != "":
		// The current certificate at each handshake (files replaced
		// on disk are taken: see Material).
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return m.current(), nil }
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return m.current(), nil }
	case m.cert != nil:
		cfg.Certificates = []tls.Certificate{*m.cert}
	}
	return cfg
}

// Server is the configuration of a listening port. With require, every
// peer must present a certificate from the cluster CA for one of peers
// (an internal port: mutual TLS). Without it a certificate is optional;
// one that is given must be from the CA and, if peers is not empty, for
// one of peers.
func (m *Material) Server(require bool, peers ...Role) *tls.Config {
	cfg := m.base()
	cfg.ClientCAs = m.pool
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	if require {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil // crypto/tls has already refused it if required
		}
		return m.checkRole(cs.PeerCertificates[0], peers)
	}
	return cfg
}

// Client is the configuration of an outbound link to a peer with one of
// peers' roles, presenting this process's certificate if it has one. The
// peer's chain is checked against the cluster CA, not its host name (see
// the package documentation).
func (m *Material) Client(peers ...Role) *tls.Config {
	cfg := m.base()
	cfg.InsecureSkipVerify = true // replaced by VerifyConnection below
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: the peer presented no certificate")
		}
		raw := make([][]byte, len(cs.PeerCertificates))
		for i, c := range cs.PeerCertificates {
			raw[i] = c.Raw
		}
		if _, err := verify(m.pool, raw, x509.ExtKeyUsageServerAuth); err != nil {
			return fmt.Errorf("tls: the peer's certificate is not from the cluster CA: %w", err)
		}
		return m.checkRole(cs.PeerCertificates[0], peers)
	}
	return cfg
}

// verify checks a chain (leaf first) against pool.
func verify(pool *x509.CertPool, chain [][]byte, usage x509.ExtKeyUsage) ([][]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, len(chain))
	for i, b := range chain {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	return certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
}

// checkRole refuses a peer certificate whose role is not in peers (any
// role passes when peers is empty).
//
// A cluster on one certificate of the operator's own (Files.Roleless)
// cannot tell roles apart by certificate: a server or coordinator there
// admits on its internal links only a peer presenting a public key its
// own certificate has had (the cluster's certificate, and the ones before
// it since this process started: a renewal), whatever its role. Any
// other certificate of the CA is refused: the Raft port has no other
// guard (a review took a group of coordinators over with a second
// certificate of the same CA when role-less certificates were admitted).
// A client without a role (or a certificate) takes a role-less server or
// coordinator certificate from the CA.
func (m *Material) checkRole(c *x509.Certificate, peers []Role) error {
	if len(peers) == 0 {
		return nil
	}
	r := RoleOf(c)
	if m.internal && m.role == "" {
		if m.holds(c) {
			return nil
		}
		if m.files.Cert != "" {
			// A renewal this process has not taken yet: it reads its
			// files when it presents its certificate, and a dialler
			// checks the peer's first (TLS 1.3), so it refused a peer
			// already on the new pair until something dialled it (a
			// review). The files are looked at now (a stat; re-read
			// only when changed).
			m.mu.Lock()
			m.reload()
			m.mu.Unlock()
			if m.holds(c) {
				return nil
			}
		}
		return fmt.Errorf("tls: %w: the peer's certificate is not this cluster's own certificate (a cluster without ftkv roles admits only it on internal links)", ErrWrongRole)
	}
	if slices.Contains(peers, r) || (r == "" && m.role == "") {
		return nil
	}
	names := make([]string, len(peers))
	for i, p := range peers {
		names[i] = string(p)
	}
	got := string(r)
	if got == "" {
		got = "none"
	}
	return fmt.Errorf("tls: %w: the peer's certificate has role %s, this link admits %s", ErrWrongRole, got, strings.Join(names, " or "))
}
