package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
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
			return nil, fmt.Errorf("TLS with %s: %w%s", addr, err, handshakeHint(err))
		}
		return tc, nil
	}
}

// handshakeHint names the likely cause of a handshake that failed without
// a TLS alert. A port at its connection limit sends its refusal ("max
// clients reached") inside TLS, but when many refusals are under way it
// only closes: the client sees the connection closed (and an older
// server's refusal came in clear: a record that is not TLS).
func handshakeHint(err error) string {
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &rh):
		return " (the server answered in clear: it is at its connection limit, max clients, or the port does not speak TLS)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return " (the server closed the connection during the handshake: it may be at its connection limit, max clients)"
	}
	return ""
}
