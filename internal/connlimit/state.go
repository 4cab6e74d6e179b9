package connlimit

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/frameio"
	"ftkv/wire"
)

// State is the limits' state of one accepted connection, its gnet
// context. Fields other than inflight are touched on the connection's
// event loop only.
type State struct {
	// Data is the port handler's own state for the connection.
	Data any

	p        *Port
	c        gnet.Conn
	dec      frameio.Decoder
	inflight atomic.Int64
	authed   bool

	out          int64 // queued output last seen (counted in the budget)
	paused       bool  // requests left undecoded for a limit
	watched      bool  // in its loop's watch list
	woken        bool  // the next OnTraffic is the sweeper's wake, not a read
	gone         bool  // closed (OnClose ran)
	killed       bool  // closed for a limit
	overSince    int64 // unix ns: over the soft limit since (0: not)
	partialSince int64 // unix ns: an incomplete frame held since (0: none)
	lastRead     int64 // unix ns (coarse)
}

// Of returns c's State, or nil for a connection not accepted by a Port.
// Only on c's event loop.
func Of(c gnet.Conn) *State {
	st, _ := c.Context().(*State)
	return st
}

// Decode decodes the frames buffered on c within its limits (see
// frameio.DecodeAll); a connection not accepted by a Port is decoded
// without them. Only on c's event loop.
func Decode(c gnet.Conn, fn frameio.Handler) gnet.Action {
	if st := Of(c); st != nil {
		return st.dec.Decode(c, fn)
	}
	return frameio.DecodeAll(c, 0, fn)
}

// Authed lifts the pre-authentication frame size limit (it applies to
// the next frame already).
func (st *State) Authed() {
	st.authed = true
	st.dec.Max = 0
}

// IsAuthed reports whether Authed was called.
func (st *State) IsAuthed() bool { return st.authed }

// Begin counts a request read on c whose answer will be written later
// (Done). Only on c's event loop.
func Begin(c gnet.Conn) {
	if st := Of(c); st != nil {
		st.inflight.Add(1)
	}
}

// Done counts an answer to a request counted by Begin. Any goroutine.
func Done(c gnet.Conn) {
	if st, _ := c.SafeContext().(*State); st != nil {
		st.inflight.Add(-1)
	}
}

// Wrote accounts for output written to c outside OnTraffic (an answer
// written by another component) and applies the output limits. Only on
// c's event loop.
func Wrote(c gnet.Conn) {
	if st := Of(c); st != nil && !st.gone && st.note(st.p.now.Load()) != gnet.None {
		_ = c.Close()
	}
}

// AfterWrite is an AsyncWrite callback that does what Wrote does.
func AfterWrite(c gnet.Conn, err error) error {
	if err == nil {
		Wrote(c)
	}
	return nil
}

// more is the decoder's question before each frame.
func (st *State) more(out int) bool {
	if st.blocked(out) {
		st.paused = true
		return false
	}
	return true
}

// blocked reports whether reading must pause, with extra bytes of answers
// about to be written.
func (st *State) blocked(extra int) bool {
	cfg := &st.p.cfg
	if cfg.MaxInflight > 0 && st.inflight.Load() >= int64(cfg.MaxInflight) {
		return true
	}
	o := st.c.OutboundBuffered() + extra
	if cfg.OutputSoft > 0 && o >= cfg.OutputSoft {
		return true
	}
	return o > BudgetFloor && cfg.Budget.over()
}

// inboundOver reports whether the unread input of a paused connection is
// over the cap (and over its first frame with some slack).
func (st *State) inboundOver() bool {
	have := st.c.InboundBuffered()
	if have <= st.p.cfg.InboundCap {
		return false
	}
	hdr, err := st.c.Peek(4)
	return err != nil || have > wire.FrameLen(hdr)+st.p.cfg.InboundCap
}

// note records the connection's queued output: in the budget, against the
// hard limit (Close) and the soft limit's grace; a connection holding
// output or paused is watched by the sweeper.
func (st *State) note(now int64) gnet.Action {
	cfg := &st.p.cfg
	o := int64(st.c.OutboundBuffered())
	cfg.Budget.add(o - st.out)
	st.out = o
	if cfg.OutputHard > 0 && o > int64(cfg.OutputHard) {
		return st.kill(fmt.Errorf("queued output %d bytes over the hard limit %d", o, cfg.OutputHard))
	}
	if cfg.OutputSoft > 0 && o >= int64(cfg.OutputSoft) {
		if st.overSince == 0 {
			st.overSince = now
		} else if cfg.OutputGrace > 0 && time.Duration(now-st.overSince) > cfg.OutputGrace {
			return st.kill(fmt.Errorf("queued output over the soft limit %d for longer than %s", cfg.OutputSoft, cfg.OutputGrace))
		}
	} else {
		st.overSince = 0
	}
	if o > 0 || st.paused {
		st.p.watch(st)
	}
	return gnet.None
}

// kill logs why the connection is closed (rate-limited) and returns Close.
func (st *State) kill(why error) gnet.Action {
	if !st.killed {
		st.killed = true
		st.p.closed.Add(1)
		st.p.logf(why, "connection closed: a limit was exceeded", st)
	}
	return gnet.Close
}

var errFrameTimeout = errors.New("an incomplete frame was held longer than the frame timeout")
var errIdleTimeout = errors.New("idle longer than the idle timeout")
