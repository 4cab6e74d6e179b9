package server

import (
	"ftkv/internal/connlimit"
	"ftkv/limits"
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
// gets every limit of l; the peer and control ports take only frames of
// HELLO size before authentication, a fixed connection maximum, and the
// output limits (their answers are small: only a stuck peer reaches them).
func (s *Server) portLimits(l Limits, budget *connlimit.Budget) (client, peer, ctl connlimit.Config) {
	l = l.WithDefaults()
	client = connlimit.Config{
		Name:         "client",
		MaxConns:     l.MaxClients,
		OutputSoft:   int(l.OutputSoftLimit),
		OutputHard:   int(l.OutputHardLimit),
		OutputGrace:  l.OutputGrace,
		Budget:       budget,
		MaxInflight:  l.MaxInflight,
		FrameTimeout: l.FrameTimeout,
		IdleTimeout:  l.IdleTimeout,
		Log:          s.log,
	}
	peer = connlimit.Config{
		Name:            "peer",
		MaxConns:        maxPeerConns,
		OutputSoft:      client.OutputSoft,
		OutputHard:      client.OutputHard,
		OutputGrace:     client.OutputGrace,
		Budget:          budget,
		FrameTimeout:    client.FrameTimeout,
		PreAuthMaxFrame: connlimit.PreAuthMaxFrame,
		Log:             s.log,
	}
	ctl = peer
	ctl.Name, ctl.MaxConns = "control", maxCtlConns
	return client, peer, ctl
}
