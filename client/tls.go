package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// WithTLS has every connection (to coordinators and servers) speak TLS
// with cfg, for a cluster configured with TLS: cfg trusts the cluster's
// CA and checks the peer's role (tlsconf's Client configuration, or
// bin/client -tls-ca), and may carry a client certificate.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// tlsDial wraps dial: the connection it opens is handshaken with cfg
// before the client writes to it, within ctx.
func tlsDial(dial DialFunc, cfg *tls.Config) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS with %s: %w", addr, err)
		}
		return tc, nil
	}
}
