package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"ftkv/internal/connlimit"
	"ftkv/internal/tlsconf"
)

// serverTLS are a server's TLS configurations (Config.TLS): its client
// port takes any client (a certificate is optional); its peer port only
// servers (replication, re-seeding), its control port only coordinators;
// it dials coordinators (heartbeats) and servers (replication links).
type serverTLS struct {
	client, peer, ctl *tls.Config // ports
	toCoord, toPeer   *tls.Config // dials
}

func newServerTLS(m *tlsconf.Material) *serverTLS {
	if m == nil {
		return nil
	}
	return &serverTLS{
		client:  m.Server(false),
		peer:    m.Server(true, tlsconf.RoleServer),
		ctl:     m.Server(true, tlsconf.RoleCoordinator),
		toCoord: m.Client(tlsconf.RoleCoordinator),
		toPeer:  m.Client(tlsconf.RoleServer),
	}
}

// ports puts TLS on the three ports' configurations.
func (t *serverTLS) ports(client, peer, ctl *connlimit.Config) {
	if t == nil {
		return
	}
	client.TLS, peer.TLS, ctl.TLS = t.client, t.peer, t.ctl
}

// handshake turns a dialled connection into a TLS client connection with
// cfg, handshaken within d; nc is closed on failure.
func handshake(ctx context.Context, nc net.Conn, cfg *tls.Config, d time.Duration) (net.Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(hctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", nc.RemoteAddr(), err)
	}
	return tc, nil
}
