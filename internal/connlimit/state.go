package connlimit

import (
	"container/list"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

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
	authed   atomic.Bool
	doomed   atomic.Pointer[error] // set from any goroutine: closed with this reason at the next wake

	unauthElem *list.Element // in p.unauth (under p.umu)
	listGone   bool          // closed: never listed in p.unauth again (under p.umu)
	deauthAt   atomic.Int64  // unix ns of the last UnauthedAsync: AuthTimeout counts from it
	spoke      bool          // a port without RequireAuth: it sent a byte (on the loop)
	evicting   bool          // evicted at MaxConns, not closed yet (under p.umu)

	in       int64 // input counted in the InputBudget (under its mu)
	inSeen   int64 // in as this loop last reported it
	taken    int   // input the handler holds out of gnet's buffer (Taken)
	grewAt   int64 // unix ns: in last grew by growStep (under the InputBudget's mu)
	grewFrom int64 // in then
	shed     bool  // chosen by the InputBudget, or closed (under its mu)

	holder      bool         // counted in the output budget's holders (Evict; on the loop)
	chosen      int64        // its output when chosen for eviction (under the holders' mu)
	activeAt    atomic.Int64 // unix ns: a holder since, or its output last seen draining
	reader      atomic.Bool  // its client read again after a pause (sampleAcked)
	acked       uint64       // bytes its client's kernel acknowledged, last sample
	ackedAt     int64        // unix ns: acked last seen growing
	ackedSeen   int64        // unix ns: acked last sampled
	resumedFrom uint64       // acked when its last pause ended
	resumed     bool         // a pause ended in this episode

	out             int64        // queued output last seen (counted in the budget)
	outSeen         atomic.Int64 // out, for other goroutines (OutputFull)
	paused          bool         // requests left undecoded for a limit
	gated           bool         // paused by HoldBack
	gatedSize       int64        // the answer that waits
	budgetHeld      bool         // paused (also) for the Inflight budget
	holding         bool         // the handler left input unread for its own reasons (Hold)
	watched         bool         // in its loop's watch list
	woken           bool         // the next OnTraffic is the sweeper's wake, not a read
	gone            bool         // closed (OnClose ran)
	killed          bool         // closed for a limit
	overSince       int64        // unix ns: over the soft limit since (0: not)
	heldSince       int64        // unix ns: over BudgetFloor, the budget spent, not draining, since (0: not)
	partialSince    int64        // unix ns: an incomplete frame held since (0: none)
	lastRead        int64        // unix ns (coarse)
	opened          int64        // unix ns: enrolled
	pausedAt        int64        // unix ns: paused since
	drainedAt       int64        // unix ns: queued output last seen shrinking
	kernelDrainedAt int64        // unix ns: the kernel's send queue last seen shrinking (the budget hold only)
	sendQ           int          // the kernel's send queue at the last sample (sampleSendQueue)
	sendQAt         int64        // unix ns: when it was sampled
	shapeAt         int64        // unix ns: the pause whose input fewRequests describes (mayRead)
	fewRequests     bool         // that input begins with few requests
	ls              *loopSet     // its loop's (set at OnOpen)
	readsOff        bool         // its input is not polled (readoff.go)
	inputHeld       bool         // paused: an incomplete frame waits for the input budget (holdBack)
	holdSpent       bool         // its incomplete input waited inputHoldMax already: not held again
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
func Decode(c gnet.Conn, fn frameio.Handler) gnet.Action { return DecodeAhead(c, nil, fn) }

// DecodeAhead is Decode that shows ahead each window of buffered bytes
// before its frames are decoded (frameio.Decoder.Ahead).
func DecodeAhead(c gnet.Conn, ahead func(buf []byte), fn frameio.Handler) gnet.Action {
	if st := Of(c); st != nil {
		st.dec.Ahead = ahead
		defer func() { st.dec.Ahead = nil }()
		return st.dec.Decode(c, fn)
	}
	d := frameio.Decoder{Ahead: ahead}
	return d.Decode(c, fn)
}

// Hello answers f, a frame of a connection not authenticated yet, into
// out: a HELLO carrying secret authenticates the connection (OK), anything
// else is refused (BAD_REQUEST, logged with the port's name) and closes it.
// The secret is compared in constant time.
func (st *State) Hello(f *wire.Frame, secret string, out []byte) ([]byte, gnet.Action) {
	ans := wire.Frame{Op: f.Op, ID: f.ID}
	if f.Op != wire.OpHello || subtle.ConstantTimeCompare(f.Value, []byte(secret)) != 1 {
		st.p.cfg.Log.Warn().Str("remote", st.c.RemoteAddr().String()).
			Msgf("unauthenticated connection on the %s port refused", st.p.cfg.Name)
		ans.Status, ans.Value = wire.StatusBadRequest, []byte("authentication required")
		return wire.Append(out, &ans), gnet.Close
	}
	st.Authed() // frames beyond HELLO's size are accepted from now on
	return wire.Append(out, &ans), gnet.None
}

// Authed lifts the pre-authentication frame size limit (it applies to
// the next frame already).
func (st *State) Authed() {
	if st.authed.Load() {
		return
	}
	st.authed.Store(true)
	st.dec.Max = st.p.cfg.MaxFrame
	st.p.unlist(st)
}

// AuthedAsync is Authed for a port that decodes no frames (the
// gateway's RESP; PreAuthMaxFrame is not lifted), from any goroutine: the
// connection is no longer closed by AuthTimeout nor evicted for a newer
// one at MaxConns.
func (st *State) AuthedAsync() {
	if st.authed.Swap(true) || !st.p.cfg.RequireAuth {
		return
	}
	st.p.umu.Lock()
	if st.unauthElem != nil {
		st.p.unauth.Remove(st.unauthElem)
		st.unauthElem = nil
	}
	st.p.umu.Unlock()
}

// UnauthedAsync undoes AuthedAsync, from any goroutine (the gateway's
// RESET logged the connection out): it is closed by AuthTimeout again,
// counted from now, and at MaxConns evicted as a connection not
// authenticated is. (Left authenticated, a connection logged out stayed
// open for good and was never evicted: a review.)
func (st *State) UnauthedAsync() {
	if !st.p.cfg.RequireAuth || !st.authed.Load() {
		return
	}
	st.deauthAt.Store(time.Now().UnixNano())
	st.p.umu.Lock()
	if st.authed.Swap(false) && st.unauthElem == nil && !st.listGone {
		st.unauthElem = st.p.unauth.PushBack(st)
	}
	st.p.umu.Unlock()
}

// link reports whether the connection is an authenticated cluster link
// (a RequireAuth port that does not Evict: a server's peer and control
// ports, the coordinator's servers port), which the input budget never
// closes. Clients that logged in (a port with users) are closed as
// clients of a port without users are.
func (st *State) link() bool {
	return st.p.cfg.RequireAuth && !st.p.cfg.Evict && st.authed.Load()
}

// IsAuthed reports whether Authed was called.
func (st *State) IsAuthed() bool { return st.authed.Load() }

// Begin counts a request of size bytes read on c whose answer will be
// written later: in MaxInflight, and its bytes in the Inflight budget.
// It returns c's State (nil for a connection not accepted by a Port),
// whose Done, with the same size, counts the answer. Only on c's event
// loop.
func Begin(c gnet.Conn, size int) *State {
	st := Of(c)
	if st != nil {
		st.inflight.Add(1)
		st.p.cfg.Inflight.add(int64(size))
	}
	return st
}

// Hold says that c's handler left input unread on purpose in this
// OnTraffic (the gateway's session holds as many commands as it may, and
// reads on once it ran them): what is left is not a slow sender's
// incomplete frame, and FrameTimeout does not apply until the handler
// reads again. The unread input still counts in the InputBudget. The
// connection is not read until the handler has it woken (c.Wake) and
// reads again. Only on c's event loop, within OnTraffic.
func Hold(c gnet.Conn) {
	if st := Of(c); st != nil {
		st.holding = true
	}
}

// Taken says that c's handler holds n bytes of c's input itself, out of
// gnet's buffer: an incomplete frame it assembles (n = 0 once the frame
// is complete or given up). They count as unread input: in the
// InputBudget, the inbound cap and frame_timeout, as they did in gnet's
// buffer. (A frame of 1 MiB waiting in gnet's buffer grows it to 2 MiB,
// by copies, and it stays that large while any input follows the
// frame: 100 connections sending 1 MiB SETs to the gateway held 364 MB
// of such buffers for a budget of 64 MiB.) Only on c's event loop,
// within OnTraffic.
func Taken(c gnet.Conn, n int) {
	if st := Of(c); st != nil {
		st.taken = n
	}
}

// inbound is the connection's unread input: in gnet's buffer, and what
// its handler took out of it (Taken).
func (st *State) inbound() int { return st.c.InboundBuffered() + st.taken }

// Done counts an answer to a request of size bytes counted by Begin on
// st's connection (st nil: nothing). Any goroutine, and also once the
// connection is closed: its requests hold their bytes in the Inflight
// budget until answered. (Looked up from the connection, a closed one's
// State is gone: gnet clears it. A flood whose connections the input
// budget closed left 4,236,056 bytes counted for good, over the 4 MiB
// budget, a review.)
func (st *State) Done(size int) {
	if st != nil {
		st.inflight.Add(-1)
		st.p.cfg.Inflight.add(-int64(size))
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
		st.pause()
		return false
	}
	return true
}

// pause marks the connection paused. (The exact time: the coarse clock
// may be a slow sweep old when the port was quiet.)
func (st *State) pause() {
	if !st.paused {
		st.paused = true
		st.pausedAt = time.Now().UnixNano()
		st.sendQAt = 0 // (a sample of an earlier pause is no drain of this one)
	}
}

// doom has the connection closed with why on its loop (any goroutine).
func (st *State) doom(why error) bool {
	if st.doomed.CompareAndSwap(nil, &why) {
		_ = st.c.Wake(nil)
		return true
	}
	return false
}

// holdInput counts the connection's unread input in the InputBudget;
// beyond the budget the connection holding the most is closed.
func (st *State) holdInput() gnet.Action {
	b := st.p.cfg.InputBudget
	if b == nil {
		return gnet.None
	}
	n := int64(st.inbound())
	if n == st.inSeen {
		return gnet.None
	}
	st.inSeen = n
	v := b.hold(st, n)
	switch {
	case v == nil:
	case v == st:
		return st.kill(errInputBudget)
	default:
		v.doom(errInputBudget)
	}
	return gnet.None
}

// blocked reports whether reading must pause, with extra bytes of answers
// about to be written.
func (st *State) blocked(extra int) bool {
	cfg := &st.p.cfg
	if st.inputHeld && time.Duration(time.Now().UnixNano()-st.pausedAt) < inputHoldMax && cfg.InputBudget.waits(st) {
		// (Not merely while the budget is over soft: once the one
		// holding the most completed its frame, those waiting could
		// still be over it together, and none was woken until each
		// had waited inputHoldMax: a review.)
		return true
	}
	n := st.inflight.Load()
	if cfg.MaxInflight > 0 && n >= int64(cfg.MaxInflight) {
		return true
	}
	if n > 0 && cfg.Inflight.over() {
		// (Over the Inflight budget, a connection with nothing in flight
		// still reads a request: no connection waits for others' work.)
		st.budgetHeld = true
		return true
	}
	o := st.c.OutboundBuffered() + extra
	if cfg.OutputSoft > 0 && o >= cfg.OutputSoft {
		return true
	}
	// (The output written since note counted it is counted here too: one
	// read's answers, several of 1 MiB, went over the budget unseen.)
	pending := int64(o) - st.out
	if st.gated && cfg.Budget.aboveWith(3, 2, pending+st.gatedSize) {
		return true // (see evict.go)
	}
	return o > BudgetFloor && cfg.Budget.overWith(pending)
}

// HoldBack reports whether an answer of size bytes to c must wait: on a
// Gate port, while the output budget is over one and a half times its
// limit, an answer larger than BudgetFloor waits, and the connection
// pauses until the budget is under that again (the handler leaves the
// request unread: frameio.NotNow). Only on c's event loop.
func HoldBack(c gnet.Conn, size int) bool {
	st := Of(c)
	if st == nil || !st.p.cfg.Gate || size <= BudgetFloor ||
		!st.p.cfg.Budget.aboveWith(3, 2, int64(c.OutboundBuffered()+size)-st.out) {
		return false
	}
	st.gated, st.gatedSize = true, int64(size) // (woken once it fits)
	st.pause()
	return true
}

// OutputFull reports whether the connection's queued output, as its loop
// last saw it, plus extra (output written since, not seen yet) is at the
// limit where its reading pauses: over OutputSoft, or over BudgetFloor
// with the shared budget spent. Any goroutine. A handler that answers
// from other goroutines (the gateway's workers) asks it before producing
// more: pausing the reading alone bounds nothing when the requests were
// read before the answers piled up.
func (st *State) OutputFull(extra int64) bool {
	cfg := &st.p.cfg
	o := st.outSeen.Load() + extra
	if cfg.OutputSoft > 0 && o >= int64(cfg.OutputSoft) {
		return true
	}
	return o > BudgetFloor && cfg.Budget.over()
}

// sendQueueEvery is how often a paused connection's kernel send queue
// is sampled at most. timing: exception — local socket bookkeeping.
const sendQueueEvery = 20 * time.Millisecond

// sampleSendQueue notes a read the queued output does not show yet: the
// kernel's send queue (unacknowledged bytes) shrinking. gnet writes out
// its queue only when the kernel's buffer has room for a third of it
// again, so a slow reader shows no visible drain for longer than the
// grace. It counts for the budget hold only (note): a client that reads
// nothing shrinks the queue too, once, while its receive buffer fills,
// and as a read for the input cap that let four such connections hold
// half the input budget each (TestHostileSlowReader in CI).
func (st *State) sampleSendQueue(now int64) {
	if time.Duration(now-st.sendQAt) < sendQueueEvery {
		return
	}
	n, err := unix.IoctlGetInt(st.c.Fd(), unix.SIOCOUTQ)
	if err != nil {
		return
	}
	if st.sendQAt != 0 && n < st.sendQ {
		st.kernelDrainedAt = time.Now().UnixNano() // (the exact time: now may lag)
	}
	st.sendQ, st.sendQAt = n, now
}

// inboundOver returns why a paused connection holds too much unread
// input (nil: it does not): over the cap, or over half the InputBudget
// while the client reads or may read yet (see drainWindow, firstDrain
// and mayRead), beyond its first frame (counted up to the longest frame the
// port takes: a length prefix is not checked before the frame is decoded,
// and the gateway's RESP is no frame at all); below that it is slowed, not
// closed; a connection with no queued output is paused for the server's
// sake (max_inflight, the output budget), not its own.
func (st *State) inboundOver() error {
	have := st.inbound()
	if have <= st.p.cfg.InboundCap || st.c.OutboundBuffered() == 0 {
		return nil
	}
	limit, why := st.p.cfg.InboundCap, errInboundCap
	now := time.Now().UnixNano()
	reading := time.Duration(now-st.drainedAt) < drainWindow
	if reading || time.Duration(now-st.pausedAt) < st.p.cfg.firstDrain() {
		pc := st.p.cfg.InputBudget.perConn() // it reads, or may read yet
		if !reading && !st.mayRead() {
			pc = min(pc, freshMax)
		}
		if pc > limit {
			limit, why = pc, errReadingCap
		}
	}
	if have <= limit {
		return nil
	}
	maxFrame := st.dec.Max
	if maxFrame <= 0 || maxFrame > wire.MaxFrame {
		maxFrame = wire.MaxFrame
	}
	first := st.dec.Gathering() // (its header no longer buffered)
	if first == 0 {
		hdr, err := st.c.Peek(4)
		switch {
		case err == nil:
			first = wire.FrameLen(hdr)
		case st.taken > 0:
			first = maxFrame + 4 // (a frame of its handler's own: a gateway's command)
		default:
			return why
		}
	}
	if have > min(first, maxFrame+4)+limit {
		return why
	}
	return nil
}

// manyRequests is the count of requests beginning in a paused
// connection's first InboundCap bytes of unread input above which a
// connection that has never read is taken for one that never will (see
// mayRead): an average under 4 KiB a request.
const manyRequests = 64

// mayRead reports whether a connection paused less than firstDrain ago
// may be a client that reads its answers yet, to be allowed half the
// input budget for its first read: it read before (its queued output
// drained, or it is a reader: sampleAcked), or its unread input is a few
// large requests (writes sent behind the reads that paused it,
// TestHonestPipelinedWriter), not many small ones. Otherwise it is
// allowed freshMax: gnet reads a connection's input whether or not it is
// consumed, growing its buffer by copies into fresh memory, and 1,000
// clients pipelining small GETs of large values, reading none and
// reconnecting whenever closed, spent 40 % of a server's time there with
// half the input budget allowed each (TestFreshNonReaderInputCapped).
// Not InboundCap: an honest client that pipelines many small writes
// behind its reads and starts reading a little late is judged before it
// could read (TestFreshReaderOfManySmallWrites). The first InboundCap
// bytes do not change while the connection is paused: counted once a
// pause.
func (st *State) mayRead() bool {
	if st.drainedAt != 0 || st.reader.Load() || st.p.cfg.Requests == nil {
		return true
	}
	if st.shapeAt != st.pausedAt {
		st.shapeAt, st.fewRequests = st.pausedAt, st.fewRequestsAhead()
	}
	return st.fewRequests
}

// fewRequestsAhead reports whether at most manyRequests requests begin
// in the connection's first InboundCap bytes of unread input.
func (st *State) fewRequestsAhead() bool {
	buf, err := st.c.Peek(min(st.c.InboundBuffered(), st.p.cfg.InboundCap))
	if err != nil {
		return true
	}
	return st.p.cfg.Requests(buf, manyRequests+1) <= manyRequests
}

// note records the connection's queued output: in the budget, against the
// hard limit (Close) and the soft limit's grace; a connection holding
// output or paused is watched by the sweeper.
func (st *State) note(now int64) gnet.Action {
	if st.gone {
		// (Closed inside the handler: a TLS port may still count
		// output, which must not make it a holder again.)
		return gnet.None
	}
	cfg := &st.p.cfg
	o := int64(st.c.OutboundBuffered())
	drained := o < st.out
	if drained {
		// The exact time: the coarse clock lagged up to 124 ms on a
		// loaded machine, a half of drainWindow lost for a reading client.
		st.drainedAt = time.Now().UnixNano()
	}
	cfg.Budget.add(o - st.out)
	st.out = o
	st.outSeen.Store(o)
	if cfg.Evict {
		st.track(o, drained)
	}
	if cfg.OutputHard > 0 && o > int64(cfg.OutputHard) {
		return st.kill(fmt.Errorf("queued output %d bytes over the hard limit %d", o, cfg.OutputHard))
	}
	// Held back by the spent budget (over BudgetFloor, below the soft
	// limit): a client that reads nothing there must meet the grace too,
	// or many of them keep the budget spent for good and slow every
	// other connection (a review: 30 such clients open for as long as
	// they liked).
	// heldSince is when it last read (or went over BudgetFloor): the
	// budget dipping under its limit as others are closed does not
	// restart it (30 such clients took turns being held, and some were
	// still open after 8 s with a grace of 1 s).
	switch {
	case o <= BudgetFloor || cfg.Budget == nil:
		st.heldSince = 0
	case st.heldSince == 0 || drained || st.drainedAt > st.heldSince || st.kernelDrainedAt > st.heldSince:
		// (drainedAt: also the kernel's send queue shrinking, which is
		// all a slow reader shows for longer than the grace.)
		st.heldSince = time.Now().UnixNano()
	case cfg.Budget.over() && cfg.OutputGrace > 0 && time.Duration(now-st.heldSince) > cfg.OutputGrace:
		return st.kill(fmt.Errorf("queued output %d bytes not read for longer than %s while the output budget is spent", o, cfg.OutputGrace))
	}
	if cfg.OutputSoft > 0 && o >= int64(cfg.OutputSoft) {
		if st.overSince == 0 {
			// The exact time: the coarse clock may be up to slowSweep
			// old when the connection was not watched, and the grace
			// would start that much early (TestSlowReaderPausedThen-
			// ClosedAfterGrace saw a close 347 ms into a 500 ms grace).
			st.overSince = time.Now().UnixNano()
		} else if cfg.OutputGrace > 0 && time.Duration(now-st.overSince) > cfg.OutputGrace {
			return st.kill(fmt.Errorf("queued output over the soft limit %d for longer than %s", cfg.OutputSoft, cfg.OutputGrace))
		}
	} else {
		st.overSince = 0
	}
	if o > 0 || st.paused {
		if o > 0 && cfg.Evict {
			st.sampleAcked(now)
		}
		st.p.watch(st)
	}
	return gnet.None
}

// readerProof is the bytes a client's kernel must acknowledge after a
// pause to prove that it reads: more than the receive buffer of a socket
// nobody has read from (tcp_rmem's default, 128 KiB), whose window opens
// in steps at first (32,768 bytes acknowledged, then 128,000 some 50-70
// ms later).
const readerProof = 256 << 10

// readVolume is the bytes a client's kernel must have acknowledged on a
// connection, over its life, for it to count as a reader in every
// episode of holding output: far more than a socket nobody reads from
// takes (its window grows only as its application reads: tcp_rmem's
// default, 128 KiB, or SO_RCVBUF up to rmem_max, 416 KiB by default). A
// client that read that much is a reader whose pauses (a collector's, a
// scheduler's) are not taken for a client that never reads: honest bench
// connections (16 pipelined 1 MiB GETs each) paused longer than
// staleAfter now and then, before their episode's proof (below) was
// made, and 19-29 were closed in 10 s (TestHeavyReaderSpared). A client
// that never reads cannot get there: one that reconnects whenever it is
// closed, and would keep the budget spent if connections were spared
// for their age alone (a review, session 36: honest 1 MiB GETs on that
// server fell from thousands to a few dozen in 12 s), must read that
// much on every connection first.
const readVolume = 8 << 20

// sampleAcked marks the connection a reader once its client's kernel,
// having acknowledged nothing for staleAfter or more while answers
// waited in this episode of holding output, acknowledges readerProof
// more: the client read (a client that never reads has its window shut
// for good once its buffer is full); or once it acknowledged readVolume
// over the connection's life. Eviction spares readers longer
// (evict.go), and a connection whose client acknowledged more since the
// last sample when it is about to be closed (spare). At most every
// sendQueueEvery; on c's loop.
func (st *State) sampleAcked(now int64) {
	if time.Duration(now-st.ackedSeen) < sendQueueEvery {
		return
	}
	st.ackedSeen = now
	info, err := unix.GetsockoptTCPInfo(st.c.Fd(), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil || info.Bytes_acked <= st.acked {
		return
	}
	if !st.reader.Load() {
		if info.Bytes_acked >= readVolume {
			st.reader.Store(true)
		}
		if st.ackedAt != 0 && time.Duration(now-st.ackedAt) >= st.p.cfg.stale() {
			st.resumedFrom, st.resumed = st.acked, true // a pause ended
		}
		if st.resumed && info.Bytes_acked-st.resumedFrom >= readerProof {
			st.reader.Store(true)
		}
	}
	st.acked, st.ackedAt = info.Bytes_acked, now // (also for spare)
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

var (
	errFrameTimeout = errors.New("an incomplete frame was held longer than the frame timeout")
	errIdleTimeout  = errors.New("idle longer than the idle timeout")
	errInboundCap   = errors.New("unread input over its cap while reading is paused and answers are not read")
	errReadingCap   = errors.New("unread input over half the input budget while reading is paused")
	errInputBudget  = errors.New("holds the most input while the server's input budget is exceeded")
	errAuthTimeout  = errors.New("not authenticated within the authentication timeout")
	errEvicted      = errors.New("not authenticated, evicted to make room at the connection maximum")
	errSilent       = errors.New("never sent a byte, evicted to make room at the connection maximum")
)

// InputBudget bounds the input held by the connections of several ports
// together: bytes of incomplete frames and unread input of paused
// connections (gnet keeps reading a socket, and grows its buffer by
// copies). Beyond it the connection holding the most is closed; an
// authenticated cluster link (State.link) is counted but never chosen.
type InputBudget struct {
	limit    int64
	mu       sync.Mutex
	used     int64
	holders  map[*State]struct{}
	leader   *State // leaderLocked's answer, kept leaderEvery
	leaderAt int64  // unix ns
}

// NewInputBudget returns a budget of limit bytes (<= 0: unlimited).
func NewInputBudget(limit int64) *InputBudget {
	return &InputBudget{limit: limit, holders: make(map[*State]struct{})}
}

// perConn is the most unread input a paused connection that reads its
// answers may hold: half the budget, so that no one connection takes it
// all (gnet's buffer holding it is rounded up to a power of two and grown
// by copies); readingMax without a budget.
func (b *InputBudget) perConn() int {
	if b == nil || b.limit <= 0 {
		return readingMax
	}
	return int(b.limit / 2)
}

// inputHoldMax is the longest a connection waits for the input budget
// (holdBack) with the same incomplete input: those holding more may be
// slow senders that never complete theirs (they meet frame_timeout, 10 s
// by default), and a connection that waited this long reads again; the
// budget then closes the one holding the most, as it did before it held.
// timing: exception — local buffer bookkeeping, unrelated to the failure
// timeout.
const inputHoldMax = time.Second

// soft is the input held beyond which a connection holding an incomplete
// frame waits (holdBack): half the budget, so that the other half holds
// the frame the one holding the most completes, plus one read (64 KiB)
// of each connection held after it (a budget of 4 MiB and 12 writers of
// 1 MiB frames: at three quarters, 2 of them were closed). Under b.mu.
func (b *InputBudget) soft() int64 { return b.limit / 2 }

// holdBack reports whether st, holding an incomplete frame, must wait
// before it is read again (waits), unless it waited inputHoldMax for this
// input already or is a cluster link. Without the wait every connection
// read on until the budget closed the one nearest to completing its
// frame, whose client sent it again (a load of 1 MiB writes on 400
// connections: hundreds closed, a few writes a second completed, and the
// CPU spent on bytes thrown away starved the servers' heartbeats).
func (b *InputBudget) holdBack(st *State) bool {
	if b == nil || b.limit <= 0 || st.link() || st.holdSpent {
		return false
	}
	return b.waits(st)
}

// progressWindow and growStep: a connection holding more input counts
// for waits only if its input grew by growStep (one of gnet's reads)
// within progressWindow. timing: exception — local buffer bookkeeping,
// unrelated to the failure timeout.
const (
	progressWindow = 100 * time.Millisecond
	growStep       = 64 << 10
)

// waits reports whether st must wait for the input budget: it is over
// soft, and another connection (not a cluster link) holds more input (or
// as much, and is older) and is completing its frame (its input grew by
// growStep within progressWindow), which then completes it first. One
// that holds more and sends nothing, or a byte now and then (a slow
// sender, under frame_timeout), holds nobody back: one such held every
// honest writer of 1 MiB a second per write (two reviews: a sender that
// stopped, then one that sent a byte every 50 ms). Beyond the budget
// itself the connection holding the most is closed (hold), as before.
func (b *InputBudget) waits(st *State) bool {
	if b == nil || b.limit <= 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used <= b.soft() {
		return false
	}
	l := b.leaderLocked()
	return l != nil && l != st && ahead(l, st)
}

// ahead reports whether h holds more input than st, or as much and is
// older (under the budget's mu).
func ahead(h, st *State) bool { return h.in > st.in || h.in == st.in && h.opened < st.opened }

// leaderLocked is the connection (not a cluster link) that is completing
// a frame (grewAt within progressWindow) and holds the most input, found
// at most every leaderEvery: the sweeper asks for each connection waiting
// (every 2 ms), and a walk of every holder for each cost 2 ms a sweep
// with 400 of them waiting (a review). Under b.mu.
func (b *InputBudget) leaderLocked() *State {
	now := time.Now().UnixNano()
	if now-b.leaderAt < int64(leaderEvery) {
		return b.leader
	}
	recent := now - int64(progressWindow)
	var l *State
	for h := range b.holders {
		if h.grewAt > recent && !h.link() && (l == nil || ahead(h, l)) {
			l = h
		}
	}
	b.leader, b.leaderAt = l, now
	return l
}

// leaderEvery: how long leaderLocked's answer is kept. timing: exception
// — as progressWindow.
const leaderEvery = time.Millisecond

// Used is the input counted against the budget.
func (b *InputBudget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// hold records that st holds n bytes of input and returns the connection
// to close when the budget is exceeded (nil: none). The chosen one is
// no longer counted.
func (b *InputBudget) hold(st *State, n int64) *State {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st.shed {
		return nil
	}
	b.used += n - st.in
	switch {
	case n < st.grewFrom:
		st.grewFrom = n // (read: it grows from here)
	case n >= st.grewFrom+growStep:
		st.grewAt, st.grewFrom = time.Now().UnixNano(), n
	}
	st.in = n
	if n > 0 {
		b.holders[st] = struct{}{}
	} else {
		delete(b.holders, st)
	}
	if b.limit <= 0 || b.used <= b.limit {
		return nil
	}
	var v *State
	for h := range b.holders {
		if (v == nil || h.in > v.in) && !h.link() {
			v = h
		}
	}
	if v != nil {
		v.shed = true
		b.used -= v.in
		v.in = 0
		delete(b.holders, v)
	}
	return v
}

// release uncounts a closed connection.
func (b *InputBudget) release(st *State) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !st.shed {
		b.used -= st.in
		st.in = 0
		st.shed = true
		delete(b.holders, st)
	}
	if b.leader == st {
		b.leader = nil
	}
}
