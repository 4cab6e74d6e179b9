package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// validity of generated certificates.
const validity = 5 * 365 * 24 * time.Hour // timing: exception — certificate lifetime

// CA is a certificate authority that issues certificates for roles.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	CertPEM []byte // the CA certificate (tls_ca)
	KeyPEM  []byte // its private key
}

// NewCA makes a CA with an ECDSA P-256 key, named name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"ftkv"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})}, nil
}

// ParseCA rebuilds a CA from its certificate and key (PEM, as Generate
// writes ca.pem and ca-key.pem), to issue more certificates with it: new
// ones for a rotation, say.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("tls: the CA's certificate or key holds no PEM block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tls: the CA's certificate: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tls: the CA's key: %w", err)
	}
	return &CA{cert: cert, key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// Issue makes a certificate and key (PEM) for role, valid for localhost,
// 127.0.0.1, ::1 and hosts (IP addresses or names).
func (ca *CA) Issue(role Role, hosts ...string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	var uris []*url.URL // none for role "": a certificate as an operator's PKI makes it
	if role != "" {
		u, err := url.Parse(roleURIPrefix + string(role))
		if err != nil {
			return nil, nil, err
		}
		uris = append(uris, u)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "ftkv " + string(role), Organization: []string{"ftkv"}, OrganizationalUnit: []string{string(role)}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Every role dials and is dialled (servers dial their secondaries
		// and the coordinator): the role SAN, not the usage, tells them apart.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        uris,
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if h == "" || h == "localhost" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

// GeneratedFiles lists what Generate writes, in order.
var GeneratedFiles = []string{
	"ca.pem", "ca-key.pem",
	"server.pem", "server-key.pem",
	"coordinator.pem", "coordinator-key.pem",
	"client.pem", "client-key.pem",
}

// Generate makes a new CA and a certificate for each role in dir (created
// if missing): ca.pem, ca-key.pem, server.pem, server-key.pem,
// coordinator.pem, coordinator-key.pem, client.pem, client-key.pem. Keys
// are written 0600. hosts are added to every certificate's names. It
// refuses to overwrite any of those files.
func Generate(dir string, hosts []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range GeneratedFiles {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("gen-certs: %s already exists; remove it or choose another directory", filepath.Join(dir, f))
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	ca, err := NewCA("ftkv cluster CA")
	if err != nil {
		return err
	}
	files := map[string][]byte{"ca.pem": ca.CertPEM, "ca-key.pem": ca.KeyPEM}
	for _, r := range []Role{RoleServer, RoleCoordinator, RoleClient} {
		c, k, err := ca.Issue(r, hosts...)
		if err != nil {
			return err
		}
		files[string(r)+".pem"], files[string(r)+"-key.pem"] = c, k
	}
	for _, f := range GeneratedFiles {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(f, "-key.pem") {
			mode = 0o600
		}
		if err := writeNew(filepath.Join(dir, f), files[f], mode); err != nil {
			return err
		}
	}
	return nil
}

// writeNew creates path with mode (set at creation, so a key is never
// readable by others, even for a moment) and writes b.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
