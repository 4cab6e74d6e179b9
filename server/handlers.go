package server

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/frameio"
	"ftkv/wire"
)

// decodeAll decodes and answers every complete frame buffered on c.
func decodeAll(c gnet.Conn, fn frameio.Handler) gnet.Action { return frameio.DecodeAll(c, 0, fn) }

func reply(out []byte, f *wire.Frame, st wire.Status, epoch uint64, msg string) []byte {
	return wire.Append(out, &wire.Frame{Op: f.Op, ID: f.ID, Status: st, Epoch: epoch, Value: []byte(msg)})
}

// clientHandler serves clients on the client port, and the outbound
// replication links enrolled into the same engine.
type clientHandler struct {
	gnet.BuiltinEventEngine
	s     *Server
	once  sync.Once
	ready chan struct{} // closed on the first connection: the loops run
}

func (h *clientHandler) OnOpen(gnet.Conn) ([]byte, gnet.Action) {
	h.once.Do(func() { close(h.ready) })
	return nil, gnet.None
}

func (h *clientHandler) OnClose(c gnet.Conn, err error) gnet.Action {
	if l, ok := c.Context().(*replLink); ok && !l.broken() {
		if err == nil {
			err = io.EOF
		}
		l.fail(err)
	}
	return gnet.None
}

// writeBatch gathers the writes of one read, per shard, so each shard
// sequences them together and ships them to its secondary in one write.
type writeBatch struct {
	p    *primary
	reqs []*entry
}

func (h *clientHandler) OnTraffic(c gnet.Conn) gnet.Action {
	if l, ok := c.Context().(*replLink); ok {
		return l.onTraffic(c)
	}
	var batches []writeBatch
	action := decodeAll(c, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		out, p, r := h.s.handleClient(c, f, out)
		if r != nil {
			i := 0
			for i < len(batches) && batches[i].p != p {
				i++
			}
			if i == len(batches) {
				batches = append(batches, writeBatch{p: p})
			}
			batches[i].reqs = append(batches[i].reqs, r)
		}
		return out, gnet.None
	})
	for _, b := range batches {
		b.p.sequence(b.reqs, c.EventLoop())
	}
	return action
}

// handleClient answers a Get into out, or returns the write for p to sequence.
func (s *Server) handleClient(c gnet.Conn, f *wire.Frame, out []byte) ([]byte, *primary, *entry) {
	switch f.Op {
	case wire.OpGet, wire.OpPut, wire.OpDelete, wire.OpCAS, wire.OpAppend:
	default:
		return reply(out, f, wire.StatusBadRequest, 0, fmt.Sprintf("op %s not accepted on the client port", f.Op)), nil, nil
	}
	if err := wire.CheckLimits(f.Key, f.Value, f.Aux); err != nil {
		return reply(out, f, wire.StatusTooLarge, 0, err.Error()), nil, nil
	}
	vs := s.view.Load()
	if vs == nil {
		return reply(out, f, wire.StatusUnavailable, 0, "server has no view yet"), nil, nil
	}
	epoch := vs.v.Epoch
	if f.Epoch > epoch {
		return reply(out, f, wire.StatusStaleEpoch, epoch, "server is behind the client's view"), nil, nil
	}
	shard := vs.ring.ShardBytes(f.Key)
	p := vs.prims[shard]
	if p == nil {
		return reply(out, f, wire.StatusWrongServer, epoch, ""), nil, nil
	}
	if f.Op == wire.OpGet {
		if !p.canServe(time.Now()) {
			return reply(out, f, wire.StatusUnavailable, epoch, "shard is changing hands; retry"), nil, nil
		}
		v, ok := p.t.get(f.Key)
		if !ok {
			return wire.Append(out, &wire.Frame{Op: wire.OpGet, ID: f.ID, Status: wire.StatusNotFound, Epoch: epoch}), nil, nil
		}
		return wire.Append(out, &wire.Frame{Op: wire.OpGet, ID: f.ID, Epoch: epoch, Value: v}), nil, nil
	}
	if s.closing.Load() {
		return reply(out, f, wire.StatusUnavailable, epoch, "server is shutting down"), nil, nil
	}
	// The private copy of key and value is laid out as the table's record,
	// so a put is stored without another copy.
	rc := makeRec(f.Key, f.Value)
	r := &entry{wreq: wreq{c: c, id: f.ID, op: f.Op, flags: f.Flags, client: f.Client, seq: f.Seq, floor: f.Floor,
		rec: rc, key: rc.key(), value: rc.value()}}
	if f.Op == wire.OpCAS && f.Flags&wire.FlagOldPresent != 0 {
		r.aux = append([]byte{}, f.Aux...)
	}
	return out, p, r
}

// ctlHandler takes the coordinator's orders on the control port.
type ctlHandler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *ctlHandler) OnTraffic(c gnet.Conn) gnet.Action {
	s := h.s
	authed, _ := c.Context().(bool)
	return decodeAll(c, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		if !authed {
			if f.Op != wire.OpHello || !s.secretOK(f.Value) {
				s.log.Warn().Str("remote", c.RemoteAddr().String()).Msg("unauthenticated connection on the control port refused")
				return reply(out, f, wire.StatusBadRequest, 0, "authentication required"), gnet.Close
			}
			authed = true
			c.SetContext(true)
			return reply(out, f, wire.StatusOK, 0, ""), gnet.None
		}
		id, op := f.ID, f.Op
		switch f.Op {
		case wire.OpSetView:
			v, err := wire.DecodeView(f.Value)
			if err != nil {
				return reply(out, f, wire.StatusBadRequest, 0, err.Error()), gnet.None
			}
			go func() {
				ans := &wire.Frame{Op: op, ID: id, Epoch: v.Epoch}
				if err := s.applyView(v); err != nil {
					s.log.Error().Err(err).Uint64("epoch", v.Epoch).Msg("view refused")
					ans.Status, ans.Value = wire.StatusError, []byte(err.Error())
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
			addr := string(f.Value)
			// A coordinator listening on a wildcard address names no host
			// this server can dial: use the one the order came from.
			if h, p, err := net.SplitHostPort(addr); err == nil {
				if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
					if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok {
						addr = net.JoinHostPort(ra.IP.String(), p)
					}
				}
			}
			s.coordAddr.Store(&addr)
			select {
			case s.coordChanged <- struct{}{}:
			default:
			}
			s.log.Info().Str("coord", addr).Msg("coordinator moved")
			return reply(out, f, wire.StatusOK, 0, ""), gnet.None
		case wire.OpShutdown:
			go func() {
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
			}()
		default:
			return reply(out, f, wire.StatusBadRequest, 0, fmt.Sprintf("op %s not accepted on the control port", f.Op)), gnet.None
		}
		return out, gnet.None
	})
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
