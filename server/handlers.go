package server

import (
	"fmt"
	"io"
	"sync"

	"github.com/panjf2000/gnet/v2"

	"ftkv/wire"
)

// decodeAll decodes every complete frame buffered on c, hands each to fn
// (which appends answers to out), discards what was consumed and writes the
// answers in one call. A frame that cannot be decoded gets one BAD_REQUEST
// answer and closes the connection: framing cannot be resynchronised.
func decodeAll(c gnet.Conn, fn func(f *wire.Frame, out []byte) ([]byte, gnet.Action)) gnet.Action {
	buf, _ := c.Peek(-1)
	bp := outPool.Get().(*[]byte)
	out := (*bp)[:0]
	defer func() {
		if cap(out) <= 1<<20 {
			*bp = out[:0]
			outPool.Put(bp)
		}
	}()
	off := 0
	action := gnet.None
	for action == gnet.None {
		f, n, err := wire.Decode(buf[off:], 0)
		if err != nil {
			out = wire.Append(out, &wire.Frame{Op: wire.OpHello, Status: wire.StatusBadRequest, Value: []byte(err.Error())})
			action = gnet.Close
			break
		}
		if n == 0 {
			break
		}
		off += n
		out, action = fn(&f, out)
	}
	if off > 0 {
		_, _ = c.Discard(off)
	}
	if len(out) > 0 {
		_, _ = c.Write(out)
	}
	return action
}

var outPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

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
	reqs []*wreq
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
		b.p.sequence(b.reqs, nil, c.EventLoop())
	}
	return action
}

// handleClient answers a Get into out, or returns the write for p to sequence.
func (s *Server) handleClient(c gnet.Conn, f *wire.Frame, out []byte) ([]byte, *primary, *wreq) {
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
		v, ok := p.t.get(f.Key)
		if !ok {
			return wire.Append(out, &wire.Frame{Op: wire.OpGet, ID: f.ID, Status: wire.StatusNotFound, Epoch: epoch}), nil, nil
		}
		return wire.Append(out, &wire.Frame{Op: wire.OpGet, ID: f.ID, Epoch: epoch, Value: v}), nil, nil
	}
	if s.closing.Load() {
		return reply(out, f, wire.StatusUnavailable, epoch, "server is shutting down"), nil, nil
	}
	// One allocation holds the private copies of key, value and aux.
	b := make([]byte, 0, len(f.Key)+len(f.Value)+len(f.Aux))
	b = append(b, f.Value...)
	b = append(b, f.Aux...)
	r := &wreq{c: c, id: f.ID, op: f.Op, flags: f.Flags, client: f.Client, seq: f.Seq, floor: f.Floor,
		key: string(f.Key), value: b[:len(f.Value):len(f.Value)], aux: b[len(f.Value):]}
	if f.Op == wire.OpCAS && f.Flags&wire.FlagOldPresent == 0 {
		r.aux = nil
	}
	return out, p, r
}

// peerConn is the state of one inbound replication link.
type peerConn struct {
	authed bool
	shard  int
	st     *secState
}

// secState is what a secondary remembers about the link feeding one shard.
type secState struct {
	primaryID uint64
	inc       uint64
	last      uint64 // highest log index applied
	t         *table
}

// peerHandler receives replication on the peer port. It runs on a single
// event loop, so the links of all shards are applied one frame at a time.
type peerHandler struct {
	gnet.BuiltinEventEngine
	s   *Server
	mu  sync.Mutex
	sec map[int]*secState
}

func (h *peerHandler) OnTraffic(c gnet.Conn) gnet.Action {
	pc, _ := c.Context().(*peerConn)
	if pc == nil {
		pc = &peerConn{}
		c.SetContext(pc)
	}
	applied := false
	action := decodeAll(c, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		if !pc.authed {
			return h.hello(c, pc, f, out)
		}
		if f.Op != wire.OpRepl {
			return reply(out, f, wire.StatusBadRequest, 0, "expected REPL"), gnet.Close
		}
		h.applyRepl(pc, f)
		applied = true
		return out, gnet.None
	})
	if applied && action == gnet.None {
		ack := wire.Append(nil, &wire.Frame{Op: wire.OpReplAck, ID: pc.st.last})
		_, _ = c.Write(ack)
	}
	return action
}

func (h *peerHandler) hello(c gnet.Conn, pc *peerConn, f *wire.Frame, out []byte) ([]byte, gnet.Action) {
	s := h.s
	if f.Op != wire.OpReplHello || !s.secretOK(f.Value) {
		s.log.Warn().Str("remote", c.RemoteAddr().String()).Msg("unauthenticated connection on the peer port refused")
		return reply(out, f, wire.StatusBadRequest, 0, "authentication required"), gnet.Close
	}
	vs := s.view.Load()
	shard := int(f.Seq)
	if vs == nil || shard >= len(vs.v.Shards) {
		return reply(out, f, wire.StatusStaleEpoch, 0, "no view for that shard"), gnet.Close
	}
	pl := vs.v.Shards[shard]
	if f.Epoch != vs.v.Epoch || int(pl.Secondary) != vs.me || pl.Primary < 0 ||
		uint64(vs.v.Servers[pl.Primary].ID) != f.Client || vs.v.Servers[pl.Primary].Incarnation != f.Floor {
		return reply(out, f, wire.StatusStaleEpoch, vs.v.Epoch, "not the secondary of that shard at that epoch"), gnet.Close
	}
	h.mu.Lock()
	if h.sec == nil {
		h.sec = make(map[int]*secState)
	}
	st := h.sec[shard]
	if st == nil || st.primaryID != f.Client || st.inc != f.Floor {
		st = &secState{primaryID: f.Client, inc: f.Floor, t: s.tableFor(shard)}
		h.sec[shard] = st
	}
	h.mu.Unlock()
	pc.authed, pc.shard, pc.st = true, shard, st
	s.log.Info().Int("shard", shard).Uint64("from", f.Client).Uint64("last", st.last).Msg("replication link accepted")
	return wire.Append(out, &wire.Frame{Op: wire.OpReplHello, ID: f.ID, Epoch: vs.v.Epoch, Seq: st.last}), gnet.None
}

func (h *peerHandler) applyRepl(pc *peerConn, f *wire.Frame) {
	st := pc.st
	if f.ID <= st.last {
		return // a resend after reconnecting: already applied
	}
	st.last = f.ID
	switch {
	case f.Flags&wire.FlagNoop != 0:
	case f.Flags&wire.FlagDelete != 0:
		st.t.del(string(f.Key))
	default:
		st.t.set(string(f.Key), append(make([]byte, 0, len(f.Value)), f.Value...))
	}
	if f.Client != 0 {
		o := &outcome{done: true, status: f.Status, flags: f.Flags & wire.FlagOldPresent}
		if f.Flags&wire.FlagNoop != 0 && len(f.Value) > 0 {
			o.value = append([]byte(nil), f.Value...)
		}
		d := h.s.dd
		d.mu.Lock()
		d.lookup(f.Client, f.Seq, f.Floor)
		d.put(f.Client, f.Seq, o)
		d.mu.Unlock()
	}
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
