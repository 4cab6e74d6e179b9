package server

import (
	"fmt"
	"net"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/connlimit"
	"ftkv/wire"
)

// ctlHandler takes the coordinator's orders on the control port.
type ctlHandler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *ctlHandler) OnTraffic(c gnet.Conn) gnet.Action {
	s := h.s
	st := connlimit.Of(c) // every connection of this port was accepted by connlimit
	return decodeAll(c, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		if !st.IsAuthed() {
			return st.Hello(f, s.cfg.Secret, out)
		}
		id, op := f.ID, f.Op
		switch f.Op {
		case wire.OpSetView:
			if viewDropped(s.cfg.ID) {
				return out, gnet.None // (lost, as the test says)
			}
			v, err := wire.DecodeView(f.Value)
			if err != nil {
				return reply(out, f, wire.StatusBadRequest, 0, err.Error()), gnet.None
			}
			s.raiseViewSeen(v.Epoch)
			go func() {
				ans := &wire.Frame{Op: op, ID: id, Epoch: v.Epoch}
				if err := s.applyView(v); err != nil {
					s.log.Error().Err(err).Uint64("epoch", v.Epoch).Msg("view refused")
					ans.Status, ans.Value = wire.StatusError, []byte(err.Error())
				} else {
					pk, sk, _ := s.stats()
					ans.Value = wire.AppendKeyCounts(nil, pk, sk)
				}
				_ = c.AsyncWrite(wire.Append(nil, ans), nil)
			}()
		case wire.OpStatus:
			// The coordinator's status asks for the key counts now, not
			// as of the last heartbeat (Value), and a follower's /sd for
			// the metrics address (Key). (Off the loop: the count takes
			// the tables' lock.)
			go func() {
				pk, sk, epoch := s.stats()
				_ = c.AsyncWrite(wire.Append(nil, &wire.Frame{Op: op, ID: id, Epoch: epoch, Value: wire.AppendKeyCounts(nil, pk, sk),
					Key: []byte(s.addrs.metrics)}), nil)
			}()
		case wire.OpFreeze:
			s.orderPrimary(c, op, id, int(f.Seq), func(p *primary, ans *wire.Frame) error {
				last, err := p.freeze(s.cfg.Timing.Freeze, s.cfg.Timing.FreezeHold)
				ans.Seq = last
				return err
			})
		case wire.OpSeed:
			inc := f.Floor
			s.orderPrimary(c, op, id, int(f.Seq), func(p *primary, _ *wire.Frame) error {
				return p.seedResult(inc, s.cfg.Timing.SeedLimit)
			})
		case wire.OpSetCoord:
			if err := s.setCoord(c, f.Epoch>>32, string(f.Value)); err != nil {
				return reply(out, f, wire.StatusStaleEpoch, 0, err.Error()), gnet.None
			}
			return reply(out, f, wire.StatusOK, 0, ""), gnet.None
		case wire.OpShutdown:
			go s.shutdownOrder(c, op, id)
		default:
			return reply(out, f, wire.StatusBadRequest, 0, fmt.Sprintf("op %s not accepted on the control port", f.Op)), gnet.None
		}
		return out, gnet.None
	})
}

// setCoord points the heartbeats at the coordinator's new address addr
// (the order came on c from the leader of Raft term term), unless a
// newer term is known: from an order obeyed before or from a view (its
// epoch carries its leader's term in the high 32 bits). A server that
// resumed from a freeze with orders from a deposed leader and from the
// current one waiting applied them in arrival order; the deposed one's
// last, it heartbeated to a coordinator that no longer led.
func (s *Server) setCoord(c gnet.Conn, term uint64, addr string) error {
	s.coordMu.Lock()
	defer s.coordMu.Unlock()
	if known := max(s.coordTerm.Load(), s.viewSeen.Load()>>32); term < known {
		s.log.Warn().Str("coord", addr).Uint64("term", term).Uint64("known_term", known).
			Msg("order to move to a coordinator of an older term refused")
		return fmt.Errorf("coordinator of term %d: term %d is newer", term, known)
	}
	s.coordTerm.Store(term)
	// A coordinator listening on a wildcard address names no host this
	// server can dial: use the one the order came from.
	if h, p, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok {
				addr = net.JoinHostPort(ra.IP.String(), p)
			}
		}
	}
	s.moveCoord(addr)
	s.log.Info().Str("coord", addr).Uint64("term", term).Msg("coordinator moved")
	return nil
}

// shutdownOrder dumps the tables, answers the order and ends Run once the
// answer is written.
func (s *Server) shutdownOrder(c gnet.Conn, op wire.Op, id uint64) {
	ans := &wire.Frame{Op: op, ID: id}
	err := s.shutdown()
	if err != nil {
		s.log.Error().Err(err).Msg("dump failed")
		ans.Status, ans.Value = wire.StatusError, []byte(err.Error())
	}
	if werr := c.AsyncWrite(wire.Append(nil, ans), func(gnet.Conn, error) error {
		s.finish(err)
		return nil
	}); werr != nil {
		s.finish(err)
	}
}

// orderPrimary runs a slow order for the primary of shard off the event
// loop and answers it: WRONG_SERVER if this server does not lead the shard,
// ERROR with the message if fn fails.
func (s *Server) orderPrimary(c gnet.Conn, op wire.Op, id uint64, shard int, fn func(p *primary, ans *wire.Frame) error) {
	go func() {
		ans := &wire.Frame{Op: op, ID: id}
		s.mu.Lock()
		p := s.prims[shard]
		s.mu.Unlock()
		if p == nil {
			ans.Status, ans.Value = wire.StatusWrongServer, []byte("not primary of that shard")
		} else if err := fn(p, ans); err != nil {
			ans.Status, ans.Value, ans.Seq = wire.StatusError, []byte(err.Error()), 0
		}
		_ = c.AsyncWrite(wire.Append(nil, ans), nil)
	}()
}
