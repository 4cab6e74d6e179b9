package coord

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// tlsStream is the coordinators' Raft transport over mutual TLS: a
// raft.StreamLayer whose listener hands out TLS server connections and
// whose Dial completes a TLS handshake (within the dial timeout) before
// Raft writes anything.
type tlsStream struct {
	net.Listener // tls.NewListener over TCP
	adv          net.Addr
	client       *tls.Config
}

func (s *tlsStream) Addr() net.Addr { return s.adv }

func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: s.client}
	return d.DialContext(ctx, "tcp", string(addr))
}

// newTLSRaftTransport is raft.NewTCPTransportWithLogger with TLS: server
// configures the listener, client the dials.
func newTLSRaftTransport(bind string, adv net.Addr, server, client *tls.Config, maxPool int, timeout time.Duration, log hclog.Logger) (*raft.NetworkTransport, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	st := &tlsStream{Listener: tls.NewListener(newGuardListener(ln, maxRaftConns), server), adv: adv, client: client}
	return raft.NewNetworkTransportWithLogger(st, maxPool, timeout, log), nil
}
