package server

import (
	"ftkv/internal/connlimit"
	"ftkv/limits"
	"ftkv/wire"
)

// Limits are the bounds the server puts on its clients (package limits
// names them, with their defaults, cluster-file lines and flags); zero
// values mean the defaults.
type Limits = limits.Config

// Fixed limits of the peer and control ports, whose only clients are the
// cluster's own servers and coordinator.
const (
	maxPeerConns = 1024
	maxCtlConns  = 1024
)

// portLimits is the connlimit configuration of each port: the client port
// gets every limit of l and takes frames up to the largest valid request;
// the peer and control ports take only frames of HELLO size before
// authentication, which must come within the handshake bound (at their
// fixed connection maximum a new connection evicts the oldest one not yet
// authenticated), and the output limits (their answers are small: only a
// stuck peer reaches them). The three ports share budget and one input
// budget.
func (s *Server) portLimits(l Limits, budget *connlimit.Budget) (client, peer, ctl connlimit.Config) {
	l = l.WithDefaults()
	input := connlimit.NewInputBudget(l.InputBudget)
	client = connlimit.FromLimits("client", l, s.log)
	client.Budget, client.InputBudget = budget, input
	client.Evict, client.Gate = true, true
	client.Requests = wire.CountFrames // (a fresh non-reader's small GETs: connlimit's mayRead)
	client.Inflight = connlimit.NewBudget(l.InflightBudget)
	client.MaxFrame = limits.MaxClientFrame - 4 // the decoder's limit excludes the length prefix
	if s.gate != nil {
		// With users, a client's first frame is a small HELLO, and one
		// that does not authenticate in time is closed.
		client.PreAuthMaxFrame, client.RequireAuth = connlimit.PreAuthMaxFrame, true
		client.AuthTimeout = 3 * s.cfg.Timing.Handshake
	}
	peer = connlimit.Config{
		Name:            "peer",
		MaxConns:        maxPeerConns,
		OutputSoft:      client.OutputSoft,
		OutputHard:      client.OutputHard,
		OutputGrace:     client.OutputGrace,
		Budget:          budget,
		InputBudget:     input,
		FrameTimeout:    client.FrameTimeout,
		PreAuthMaxFrame: connlimit.PreAuthMaxFrame,
		RequireAuth:     true,
		AuthTimeout:     s.cfg.Timing.Handshake,
		Log:             s.log,
	}
	ctl = peer
	ctl.Name, ctl.MaxConns = "control", maxCtlConns
	return client, peer, ctl
}
