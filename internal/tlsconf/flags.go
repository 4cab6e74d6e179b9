package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
)

// ClientFlags registers -tls-ca, -tls-cert and -tls-key on fs for a
// program that connects to the cluster (bin/client, bin/bench,
// bin/gateway). The returned function, called after parsing, gives the
// configuration for dialling coordinators and servers (nil: TLS off) and
// the files named.
func ClientFlags(fs *flag.FlagSet) func() (*tls.Config, Files, error) {
	var f Files
	fs.StringVar(&f.CA, "tls-ca", "", "speak TLS to the cluster, trusting this CA certificate file (the cluster's tls_ca)")
	fs.StringVar(&f.Cert, "tls-cert", "", "with -tls-ca: present this certificate (optional; bin/coord -gen-certs makes client.pem)")
	fs.StringVar(&f.Key, "tls-key", "", "with -tls-cert: its private key file")
	return func() (*tls.Config, Files, error) {
		if !f.Enabled() {
			return nil, f, nil
		}
		m, err := Load(f, "")
		if err != nil {
			return nil, f, err
		}
		// (One for servers only would be refused by every server, and
		// looked like a cluster that did not answer.)
		if err := m.UsableFor(x509.ExtKeyUsageClientAuth, "a client presents it to the cluster"); err != nil {
			return nil, f, err
		}
		return m.Client(RoleServer, RoleCoordinator), f, nil
	}
}
