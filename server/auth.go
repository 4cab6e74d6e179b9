package server

import (
	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/auth"
	"ftkv/wire"
)

// newGate is the client port's authentication when the cluster has users
// (nil: none, every client is served as before). The coordinator hands
// the users (names, roles, bcrypt hashes) to the servers it spawns on
// their standard input, with the cluster secret (cmd/server).
func newGate(cfg *Config, met *serverMetrics) *auth.Gate {
	if cfg.Users.Len() == 0 {
		return nil
	}
	v := auth.NewVerifier(cfg.Users, auth.VerifierConfig{Port: "client", Log: cfg.Logger.With().Uint32("node", cfg.ID).Logger(),
		OnLogin: met.login})
	return auth.NewGate(v, 2*cfg.Timing.Handshake)
}

// guard applies authentication to f, a frame on the client port: it
// answers HELLO, refuses what the connection's role does not allow, and
// says whether f was answered (into out, with action) or is to be served.
// Only on c's event loop.
func (s *Server) guard(c gnet.Conn, f *wire.Frame, out []byte) ([]byte, gnet.Action, bool) {
	if s.gate == nil {
		if f.Op == wire.OpHello {
			// A client with credentials, a cluster without users: it
			// is served like any other.
			return wire.Append(out, &wire.Frame{Op: wire.OpHello, ID: f.ID}), gnet.None, true
		}
		return out, gnet.None, false
	}
	role := auth.RoleOf(c)
	switch {
	case role == auth.RoleNone:
		out, a := s.gate.Hello(c, f, out)
		return out, a, true
	case f.Op == wire.OpHello:
		return reply(out, f, wire.StatusBadRequest, 0, "already authenticated"), gnet.None, true
	case f.Op.IsWrite() && !role.CanWrite():
		return auth.Forbidden(c, f, out, f.Op.String()), gnet.None, true
	}
	return out, gnet.None, false
}
