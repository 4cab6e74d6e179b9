package server

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/connlimit"
	"ftkv/internal/frameio"
	"ftkv/wire"
)

// decodeAll decodes and answers the complete frames buffered on c, within
// c's limits (reading pauses while its answers pile up).
func decodeAll(c gnet.Conn, fn frameio.Handler) gnet.Action { return connlimit.Decode(c, fn) }

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

func (h *clientHandler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	h.once.Do(func() { close(h.ready) })
	if l, ok := c.Context().(*replLink); ok {
		if hook := testEnrollHook.Load(); hook != nil {
			(*hook)(h.s)
		}
		if !l.enrolled(c) {
			// dialLink gave up on it (its enrolment outlasted the
			// handshake timeout): nobody would use or close it.
			return nil, gnet.Close
		}
	}
	return nil, gnet.None
}

// testEnrollHook, when a test sets it, runs as a replication link's
// connection of server s opens in its event loop
// (TestLinkEnrolledAfterTimeoutClosed delays it past the handshake
// timeout).
var testEnrollHook atomic.Pointer[func(*Server)]

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
	start, gets := monoNow(), 0
	action := decodeAll(c, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		if out, a, done := h.s.guard(c, f, out); done {
			return out, a
		}
		n := len(out)
		out, a := h.s.handleClient(c, f, out)
		if a.later {
			return out, frameio.NotNow // (paused: connlimit.HoldBack)
		}
		p, r := a.p, a.r
		if r == nil && h.s.met.answeredFrame(f.Op, out[n:]) {
			gets++ // answered in out, written when decodeAll returns
		}
		if a.tail != nil {
			// A large value goes out from the table itself, after the
			// answers before it: copied once, by the kernel or into
			// gnet's buffer, not first into out (each such answer
			// cost two fresh megabytes, which a server answering
			// clients that never read faulted in at 40-90 ms apiece).
			if _, err := c.Writev([][]byte{out, a.tail}); err != nil {
				return out[:0], gnet.Close // (gnet closed c: nothing more may be written)
			}
			out = out[:0]
		}
		if r != nil {
			r.start, r.met, r.cost = start, h.s.met, writeCost(f)
			r.lim = connlimit.Begin(c, r.cost) // answered through a replyBatch (reply.go)
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
	h.s.met.observe(wire.OpGet, start, gets)
	for _, b := range batches {
		b.p.sequence(b.reqs, c.EventLoop())
	}
	return action
}

// writeCost is what the write f holds while in flight, as counted in the
// server's inflight_budget: its key, value and expected value, and about
// the entry and frame around them.
func writeCost(f *wire.Frame) int { return len(f.Key) + len(f.Value) + len(f.Aux) + writeOverhead }

const writeOverhead = 256

// handled is what handleClient did besides answering into out.
type handled struct {
	p     *primary
	r     *entry // the write for p to sequence
	later bool   // the answer must wait (connlimit.HoldBack): nothing was done
	tail  []byte // to write after out, which ends with its frame's head
}

// directAnswer is the size from which a value is written from the table
// itself (handled.tail) rather than copied into the answers first.
const directAnswer = 64 << 10

// handleClient answers a Get into out, or returns the write to sequence.
func (s *Server) handleClient(c gnet.Conn, f *wire.Frame, out []byte) ([]byte, handled) {
	switch f.Op {
	case wire.OpGet, wire.OpPut, wire.OpDelete, wire.OpCAS, wire.OpAppend, wire.OpCAD:
	default:
		return reply(out, f, wire.StatusBadRequest, 0, fmt.Sprintf("op %s not accepted on the client port", f.Op)), handled{}
	}
	if err := wire.CheckLimits(f.Key, f.Value, f.Aux); err != nil {
		return reply(out, f, wire.StatusTooLarge, 0, err.Error()), handled{}
	}
	vs := s.view.Load()
	if vs == nil {
		return reply(out, f, wire.StatusUnavailable, 0, "server has no view yet"), handled{}
	}
	epoch := vs.v.Epoch
	if f.Epoch > epoch {
		return reply(out, f, wire.StatusStaleEpoch, epoch, "server is behind the client's view"), handled{}
	}
	shard := vs.ring.ShardBytes(f.Key)
	p := vs.prims[shard]
	if p == nil {
		return reply(out, f, wire.StatusWrongServer, epoch, ""), handled{}
	}
	if f.Op == wire.OpGet {
		if !p.canServe(time.Now()) {
			return reply(out, f, wire.StatusUnavailable, epoch, "shard is changing hands; retry"), handled{}
		}
		v, ok := p.t.get(f.Key)
		if !ok {
			return wire.Append(out, &wire.Frame{Op: wire.OpGet, ID: f.ID, Status: wire.StatusNotFound, Epoch: epoch}), handled{}
		}
		if f.Flags&wire.FlagValueCap != 0 && uint64(len(v)) > f.Seq {
			return reply(out, f, wire.StatusTooLarge, epoch, "value of "+strconv.Itoa(len(v))+" bytes is over the request's cap of "+strconv.FormatUint(f.Seq, 10)), handled{}
		}
		if connlimit.HoldBack(c, len(v)) { // (a short refusal above never waits)
			return out, handled{later: true}
		}
		ans := wire.Frame{Op: wire.OpGet, ID: f.ID, Epoch: epoch, Value: v}
		if len(v) >= directAnswer {
			return wire.AppendHead(out, &ans), handled{tail: v}
		}
		return wire.Append(out, &ans), handled{}
	}
	if s.closing.Load() {
		return reply(out, f, wire.StatusUnavailable, epoch, "server is shutting down"), handled{}
	}
	// The private copy of key and value is laid out as the table's record,
	// so a put is stored without another copy.
	rc := makeRec(f.Key, f.Value)
	r := &entry{wreq: wreq{c: c, id: f.ID, op: f.Op, flags: f.Flags, client: f.Client, seq: f.Seq, floor: f.Floor,
		rec: rc, key: rc.key(), value: rc.value()}}
	if (f.Op == wire.OpCAS || f.Op == wire.OpCAD) && f.Flags&wire.FlagOldPresent != 0 {
		r.aux = append([]byte{}, f.Aux...)
	}
	return out, handled{p: p, r: r}
}
