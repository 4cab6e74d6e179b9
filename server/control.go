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
			s.setCoord(c, string(f.Value))
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
// (the order came on c).
func (s *Server) setCoord(c gnet.Conn, addr string) {
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
	s.log.Info().Str("coord", addr).Msg("coordinator moved")
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
